#!/usr/bin/env bash
# Runs Lethe's whole test suite on a fresh machine, installing what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# A real browser for the consent SDK's tests (services/lethe/tests/browser.rs).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust 1.85 or newer) is required: https://rustup.rs" >&2; exit 1; }

# Segment's official Node library, for the client-compatibility test.
if [ ! -d tests/segment/node_modules/@segment/analytics-node ]; then
  (cd tests/segment && npm ci --no-audit --no-fund)
fi

# playwright-core, which drives Chromium in the browser tests.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

cargo test --workspace --no-fail-fast
