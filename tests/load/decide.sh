#!/usr/bin/env bash
# /v1/decide under wrk, beside a bare actix-web handler in the same run: the most requests/s at a fixed
# concurrency, then a paced run at RATE requests/s (default 5000) for the latency percentiles.
#
#   tests/load/decide.sh [SUBJECTS] [RATE]
#   PIN=1 tests/load/decide.sh …   # servers on CPU 0 (one worker each), wrk on CPU 1 (one thread)
#   REPEAT=5 tests/load/decide.sh … # five rounds of both pairs, alternating (the host's speed and the tail move
#                                   # from round to round; the median share of the bare handler is printed last)
#   BIN=/path/to/lethe-bench tests/load/decide.sh … # a build of your own (A/B of two builds), not rebuilt
#                                   # (target/pgo/release/lethe-bench: the build of deploy/pgo-build.sh)
#   ARGS="--receipt-linger-ms 20" tests/load/decide.sh … # more arguments for `lethe-bench decide`
#
# Unpinned, the servers and wrk share both cores and the scheduler's preemptions show in the tail;
# pinned, each side has a core of its own. Both servers run under the same conditions either way.
# Each round also prints how idle the host's cores were and its steal time (a round where the bare
# handler's own tail is long was the host's), and for Lethe the p99 inside the engine, read from its
# `lethe_decide_duration_seconds` histogram: what the rest of the tail spent in the host's queues.
# The most-requests round also prints how many answers a second did not fall back because the log was
# behind (`receipt_backlog`): a fallback costs less than a decision, so that is the figure to compare.
# The most-requests rounds also print where a request's CPU went, in µs: the server's threads by role (HTTP
# workers, the log, the feature views) and the load generator (what the host spent beyond the server), with
# the host's context switches per request: what a share of the bare handler is made of. Between the two
# servers' most-requests rows, Lethe's own HTTP stack answers a slot that is not declared (a coded 404):
# how much of the gap is the stack and how much the decision.
# Needs `wrk` and `curl` (apt-get install wrk curl). Builds lethe-bench in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUBJECTS=${1:-100000}
RATE=${2:-5000}
CONNECTIONS=${CONNECTIONS:-10} # of the paced run: a CMS's connection pool
for tool in wrk curl; do command -v $tool >/dev/null || { echo "$tool is required: apt-get install $tool" >&2; exit 1; }; done
BIN=${BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release -q -p lethe-bench
  BIN=./target/release/lethe-bench
fi
out=$(mktemp)
# The server's data directory goes under a directory of this run's own, removed on exit: it is killed,
# not stopped, so it cannot remove its data itself (with receipts of 50 candidates it grows by gigabytes).
export TMPDIR=$(mktemp -d)
if [[ ${PIN:-0} == 1 ]]; then
  server=(taskset -c 0 "$BIN" decide --workers 1)
  client=(taskset -c 1 wrk)
  THREADS=1
else
  server=("$BIN" decide ${WORKERS:+--workers $WORKERS})
  client=(wrk)
  THREADS=2
fi
# shellcheck disable=SC2086 # ARGS is split into arguments on purpose
"${server[@]}" --subjects "$SUBJECTS" --hold 600 ${ARGS:-} >"$out" 2>&1 &
pid=$!
trap 'kill -KILL $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$out" "$out.b0" "$out.b1" "$out.t0" "$out.t1" "$out.row" "$out.fb" "$out.ratio" "$TMPDIR"' EXIT # SIGTERM stops the servers but not the hold
for _ in $(seq 1 600); do grep -q '^TOKEN=' "$out" && break; sleep 1; done
grep -v '^TOKEN=' "$out"
eval "$(grep -E '^(LETHE_PORT|BARE_PORT|SUBJECTS|TOKEN)=' "$out")"
export TOKEN SUBJECTS
cpu() { head -1 /proc/stat; } # aggregate jiffies: user nice system idle iowait irq softirq steal
# The server's CPU time in jiffies by thread (`role:tid jiffies`, the role from the thread's name), then the
# host's busy jiffies and context switches. Roles: http (actix-web's workers, both servers'), log (the log's writer and
# flusher, sled's flusher, the decision receipts' writer), views (the feature views' reader and applier),
# other. What the host spent beyond the server is the load generator's (nothing else runs).
# Interrupt work (the loopback's delivery of packets) is charged by tick to the thread it interrupted, as
# well as to the host's softirq total: it is within these figures, not beside them, and not subtracted.
threads() {
  local t stat
  for t in /proc/$pid/task/*; do
    stat=$(<"$t/stat") 2>/dev/null || continue
    stat=${stat##*) } # past the name, which may hold spaces: state is then field 1, utime 12, stime 13
    echo "$(<"$t/comm") ${t##*/} $(awk '{print $12 + $13}' <<<"$stat")"
  done | awk '{role = "other"} /^actix-rt/ {role = "http"} /^(lethe-log|log_flusher|decision-receip)/ {role = "log"}
    /^lethe-views/ {role = "views"} {print role ":" $(NF - 1), $NF}'
  awk '/^cpu / {print "busy", $2 + $3 + $4 + $7 + $8 + $9} /^ctxt/ {print "ctxt", $2}' /proc/stat
}
# The buckets of Lethe's in-engine latency histogram (slot `bench`), cumulative, one `le count` a line.
# Last: the decisions that fell back because the log was behind (reason receipt_backlog).
buckets() {
  curl -fsS "http://127.0.0.1:$LETHE_PORT/metrics" |
    awk -F'[{}" ]+' '/^lethe_decide_duration_seconds_bucket\{slot="bench"/ {print $5, $NF}
      /^lethe_decision_reasons_total\{reason="receipt_backlog"/ {backlog = $NF} END {print "backlog", backlog + 0}'
}
run() { # name port connections rate [threads]
  local name=$1 port=$2 c=$3 rate=$4 t=${5:-$THREADS} before after lethe=0
  # Decisions: the in-engine histogram and the fallbacks are read around the round (not for the
  # undeclared slot's row, which makes none).
  [[ $port == "$LETHE_PORT" && ${SLOT:-bench} == bench ]] && lethe=1
  if ((lethe)); then buckets >"$out.b0"; fi
  before=$(cpu)
  threads >"$out.t0"
  RATE=$rate THREADS=$t SLOT=${SLOT:-bench} "${client[@]}" -t"$t" -c"$c" -d10s --latency -s tests/load/decide.lua "http://127.0.0.1:$port" \
    | awk -v name="$name" '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {err=$NF}
        END {printf "%-40s %10s req/s  p50 %8s  p99 %8s  non-2xx %s", name, rps, p50, p99, (err==""?0:err)}' \
    | tee "$out.row"
  last_rps=$(awk '{print $(NF - 7)}' "$out.row")
  after=$(cpu)
  threads >"$out.t1"
  # The host: how idle both cores were, and how much time the hypervisor took (steal).
  printf '%s\n%s\n' "$before" "$after" | awk '{for (i = 2; i <= 9; i++) v[NR, i] = $i}
    END {for (i = 2; i <= 9; i++) {d[i] = v[2, i] - v[1, i]; t += d[i]}; printf "  idle %2d%%  steal %d%%", 100 * d[5] / t, 100 * d[9] / t}'
  # Lethe's rounds: the bound of the first bucket that holds 99 % of this round's decisions, as timed
  # inside the engine (no HTTP, no wait for a worker thread).
  if ((lethe)); then
    buckets >"$out.b1"
    paste -d' ' "$out.b0" "$out.b1" | awk '{le[NR] = $1; n[NR] = $4 - $2} END {
      if (n[NR - 1] > 0) for (i = 1; i < NR; i++) if (n[i] >= 0.99 * n[NR - 1]) {printf "  in-engine p99 <= %s s", le[i]; break}
      printf "  receipt_backlog fallbacks %d", n[NR]}' | tee "$out.fb"
    last_fallbacks=$(awk '{print $NF}' "$out.fb")
  fi
  echo
  # At full load: where a request's CPU went, in µs (the times are in clock ticks, CLK_TCK a second), and
  # the host's context switches.
  if ((rate == 0)); then
    awk -v rps="$last_rps" -v hz="$(getconf CLK_TCK)" 'NR == FNR {a[$1] = $2; next} {d[$1] = $2 - a[$1]}
      END {us = 1e6 / hz / (10 * rps); server = 0
        # A thread that ended during the round took its time with it: the load generator is charged.
        for (t in d) if (t != "busy" && t != "ctxt") {split(t, r, ":"); role[r[1]] += d[t]; server += d[t]}
        printf "  cpu µs/request: http %.1f  log %.1f  views %.1f  other %.1f  load generator %.1f  (context switches/request %.2f)\n",
          role["http"] * us, role["log"] * us, role["views"] * us, role["other"] * us, (d["busy"] - server) * us, d["ctxt"] / (10 * rps)}' \
      "$out.t0" "$out.t1"
  fi
}
for _ in $(seq 1 "${REPEAT:-1}"); do
  run "bare actix, constant (max, 64 conn)" "$BARE_PORT" 64 0
  bare_rps=$last_rps
  # Lethe's HTTP stack alone, on the same server: its middleware, the token's check, the body's parse
  # and a coded 404 for a slot that is not declared. What Lethe's rate lacks beside this row is the
  # decision's own work (the engine, its receipt in the log, the views reading the receipt back).
  SLOT=undeclared run "lethe, undeclared slot (max, 64 conn)" "$LETHE_PORT" 64 0
  run "lethe /v1/decide (max, 64 conn)" "$LETHE_PORT" 64 0
  # A decision that fell back because its receipt could not be queued (`receipt_backlog`) costs less
  # than a personalized one: the honest throughput counts only the answers the policy gave.
  awk -v rps="$last_rps" -v fb="$last_fallbacks" -v bare="$bare_rps" 'BEGIN {
    ok = rps - fb / 10; printf "%-40s %10.0f req/s  (%.0f %% of the bare handler)\n", "  of which not fallen back", ok, 100 * ok / bare}' \
    | tee -a "$out.ratio"
  run "bare actix, constant @ ${RATE}/s" "$BARE_PORT" "$CONNECTIONS" "$RATE"
  run "lethe /v1/decide @ ${RATE}/s" "$LETHE_PORT" "$CONNECTIONS" "$RATE"
done
# The host's speed moves from round to round (the bare handler's own rate with it): the median of
# the rounds' shares is the figure to quote.
sort -t'(' -k2 -n "$out.ratio" | awk '{line[NR] = $0} END {m = line[int((NR + 1) / 2)]; sub(/.*\(/, "", m); sub(/ of.*/, "", m)
  printf "median share of the bare handler over %d round(s): %s\n", NR, m}'
