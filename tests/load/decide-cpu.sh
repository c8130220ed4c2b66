#!/usr/bin/env bash
# Where /v1/decide's CPU goes under a sustained paced load, and how it changes as the log grows: one
# server, windows of WINDOW seconds (default 20) at RATE requests/s (default 5000), each printing the
# requests served, wrk's p99, the data directory's size, the process's RSS and, per thread group, the
# CPU time per request (from /proc/PID/task/*/stat). With BARE=1 every other window goes to the bare
# actix-web handler of the same process, the baseline: what HTTP on loopback costs on this host.
#
#   tests/load/decide-cpu.sh [SUBJECTS] [RATE]
#   WINDOWS=9 WINDOW=30 tests/load/decide-cpu.sh   # a 4.5-minute soak
#   BARE=1 WINDOWS=4 tests/load/decide-cpu.sh      # bare, Lethe, bare, Lethe
#   BIN=/path/to/lethe-bench tests/load/decide-cpu.sh # a build of your own (A/B of two builds), not rebuilt
#   ARGS="--receipt-linger-ms 20" tests/load/decide-cpu.sh # more arguments for `lethe-bench decide`
#
# Thread groups: `actix-rt|system` (the HTTP workers: parsing, the handler, the socket calls),
# `lethe-log-write` (the log's writer: sealing and sled), `lethe-log-flush` (its fsyncs),
# `decision-receipts` (batching receipts for the log), `log flusher` (sled's own), `lethe-views-rea[d]` and
# `lethe-views` (the feature views following the log: reading at nice 19, applying). Needs `wrk`.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUBJECTS=${1:-100000}
RATE=${2:-5000}
CONNECTIONS=${CONNECTIONS:-10}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
BIN=${BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release -q -p lethe-bench
  BIN=./target/release/lethe-bench
fi
out=$(mktemp)
export TMPDIR=$(mktemp -d) # the server's data directory: killed, not stopped, so removed here
# shellcheck disable=SC2086 # ARGS is split into arguments on purpose
"$BIN" decide --subjects "$SUBJECTS" --hold 3600 ${ARGS:-} >"$out" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$out" "$out.0" "$out.1" "$out.w" "$TMPDIR"' EXIT
for _ in $(seq 1 600); do grep -q '^TOKEN=' "$out" && break; sleep 1; done
grep -v '^TOKEN=' "$out"
eval "$(grep -E '^(LETHE_PORT|BARE_PORT|SUBJECTS|TOKEN)=' "$out")"
export TOKEN SUBJECTS
# CPU ticks per thread group. The name is between the first "(" and the last ")" and may hold spaces;
# utime and stime are the 12th and 13th fields after it.
ticks() {
  for t in /proc/$pid/task/*; do
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    name=${stat#*(}; name=${name%)*}
    printf '%s\t%s\n' "${name// /_}" "$(awk '{print $12 + $13}' <<<"${stat##*) }")"
  done | awk -F'\t' '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
hz=$(getconf CLK_TCK)
for w in $(seq 1 "${WINDOWS:-6}"); do
  if [[ ${BARE:-0} == 1 ]] && ((w % 2 == 1)); then name=bare; port=$BARE_PORT; else name=lethe; port=$LETHE_PORT; fi
  ticks >"$out.0"
  RATE=$RATE THREADS=2 wrk -t2 -c"$CONNECTIONS" -d"${WINDOW:-20}s" --latency -s tests/load/decide.lua \
    "http://127.0.0.1:$port" >"$out.w"
  ticks >"$out.1"
  requests=$(awk '/requests in/ {print $1}' "$out.w")
  p99=$(awk '/^ +99%/ {print $2}' "$out.w")
  printf 'window %2d %-5s %7s requests  p99 %7s  data %5s MB  rss %5s MB |' "$w" "$name" "$requests" "$p99" \
    "$(du -sm "$TMPDIR" | cut -f1)" "$(($(awk '/VmRSS/ {print $2}' "/proc/$pid/status") / 1024))"
  join "$out.0" "$out.1" | awk -v n="$requests" -v hz="$hz" \
    '{d = $3 - $2; if (d > 0) printf "  %s %.1f us", $1, d * 1e6 / hz / n}'
  echo
done
