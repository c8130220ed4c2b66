#!/usr/bin/env bash
# A release build of `lethe` (and `lethe-bench`) optimized with a profile of Lethe's own hot paths
# (profile-guided optimization): the binary to install as /usr/local/bin/lethe.
#
#   deploy/pgo-build.sh            # → target/pgo/release/lethe and target/pgo/release/lethe-bench
#
# 1. builds lethe-bench instrumented (target/pgo-gen), 2. runs its decision benchmark (/v1/decide on
# loopback, with receipts in the log and the feature views following it) and its collection benchmark
# (/v1/track, /v1/batch) for a few seconds each, 3. merges the counts they wrote, 4. builds both
# binaries again with them. Code that the two workloads never run (erasure, exports, the admin API)
# is laid out as cold: it works the same, a little slower. On this project's 2-core machine the
# two release builds take 30 to 45 minutes. Needs the Rust toolchain's `llvm-tools` component
# (installed here when missing, with rustup).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_CELL=${SECONDS_PER_CELL:-4}
root=$PWD/target
data=$root/pgo-data
rm -rf "$data"
mkdir -p "$data"
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [[ ! -x $profdata ]]; then
  rustup component add llvm-tools
fi
echo "1/4 instrumented build" >&2
RUSTFLAGS="-Cprofile-generate=$data/raw" CARGO_TARGET_DIR=$root/pgo-gen cargo build --release -q -p lethe-bench
echo "2/4 the workloads" >&2
# Each run writes its counts when it exits; its data directory is its own, removed after.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
TMPDIR=$work "$root/pgo-gen/release/lethe-bench" decide --seconds "$SECONDS_PER_CELL" >&2
TMPDIR=$work "$root/pgo-gen/release/lethe-bench" http --seconds "$SECONDS_PER_CELL" >&2
echo "3/4 merge" >&2
"$profdata" merge -o "$data/merged.profdata" "$data/raw"
echo "4/4 optimized build" >&2
RUSTFLAGS="-Cprofile-use=$data/merged.profdata" CARGO_TARGET_DIR=$root/pgo cargo build --release -q \
  -p lethe -p lethe-bench
echo "$root/pgo/release/lethe"
echo "$root/pgo/release/lethe-bench"
