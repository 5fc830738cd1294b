#!/usr/bin/env bash
# The measurement core's figures (issue 2's "how it is judged"), rerunnable on any machine.
# Everything runs against servebench's embedded server on 127.0.0.1, bounded in count and
# time. Prints one line per figure and leaves every run's JSON/journal under $OUT.
#
#   scripts/bench/measurement-core.sh [BIN] [OUT]
#
# BIN defaults to target/release/servebench (built if missing); OUT to results/bench-core.
# Pinning: the capacity runs put the server on one CPU and the client on another with taskset
# when the machine has at least 2 CPUs, so "client limited to one core" is what is measured.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/servebench}
OUT=${2:-results/bench-core}
if [[ ! -x $BIN ]]; then cargo build --release; fi
mkdir -p "$OUT"
CPUS=$(nproc)
pin_client=() pin_server=()
if (( CPUS >= 2 )) && command -v taskset >/dev/null; then
  pin_client=(taskset -c 0) pin_server=(taskset -c 1)
fi
field() { # field KEY FILE -> value of a top-level key of a result JSON
  python3 -c "import json,sys; d=json.load(open(sys.argv[2])); v=d
for k in sys.argv[1].split('.'): v=v[k]
print(v)" "$1" "$2"
}
latest() { ls -t "$1"/*.json | grep -v telemetry | head -1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "machine: $(uname -m), $CPUS CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. Accuracy: TTFT 50 ms / ITL 10 ms, 256 streams, 2000 requests x 64 tokens.
for tpc in 1 4; do
  d=$OUT/accuracy-tpc$tpc
  "$BIN" run --num-prompts 2000 --max-concurrency 256 --random-input-len 32 --random-output-len 64 \
    --ignore-eos --ttft-ms 50 --itl-ms 10 --tokens-per-chunk "$tpc" --server-threads 2 \
    --no-progress --result-dir "$d" >/dev/null 2>&1
  f=$(latest "$d")
  printf 'accuracy (%s token/chunk): mean TTFT %.3f ms, mean ITL %.3f ms, mean ICL %.3f ms, failed %s\n' \
    "$tpc" "$(field mean_ttft_ms "$f")" "$(field mean_itl_ms "$f")" "$(field mean_icl_ms "$f")" "$(field failed "$f")"
done

# 2. Capacity: the server streams as fast as it can on its own CPU; the client gets one.
P=$(port)
"${pin_server[@]}" "$BIN" serve --port "$P" --ttft-ms 0 --itl-ms 0 --server-threads 1 >/dev/null 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$P/health" >/dev/null && break; sleep 0.1; done
d=$OUT/capacity-tokens
"${pin_client[@]}" "$BIN" run --base-url "http://127.0.0.1:$P" --num-prompts 1280 --max-concurrency 64 \
  --random-input-len 16 --random-output-len 1024 --ignore-eos --client-threads 1 --no-progress \
  --result-dir "$d" >/dev/null 2>&1
f=$(latest "$d")
printf 'capacity (64 streams x 1024 tokens, client on 1 core): %.0f output tokens/s, %s tokens, source %s\n' \
  "$(field output_throughput "$f")" "$(field total_output_tokens "$f")" "$(field token_source "$f")"
d=$OUT/capacity-requests
"${pin_client[@]}" "$BIN" run --base-url "http://127.0.0.1:$P" --num-prompts 60000 --max-concurrency 256 \
  --random-input-len 16 --random-output-len 1 --ignore-eos --client-threads 1 --no-progress \
  --result-dir "$d" >/dev/null 2>&1
f=$(latest "$d")
printf 'capacity (max_tokens 1, 256 in flight, client on 1 core): %.0f requests/s, failed %s\n' \
  "$(field request_throughput "$f")" "$(field failed "$f")"
kill $SRV 2>/dev/null || true

# 3. Open loop: Poisson at 1000 req/s for 10 s.
d=$OUT/open-loop
"$BIN" run --duration 10 --request-rate 1000 --random-input-len 16 --random-output-len 16 \
  --ttft-ms 1 --itl-ms 1 --no-progress --result-dir "$d" >/dev/null 2>&1
f=$(latest "$d")
printf 'open loop (Poisson 1000/s, 10 s): offered 1000, scheduled %.1f, achieved send rate %.1f req/s, dispatch lag P50 %.3f ms P99 %.3f ms, sent %s\n' \
  "$(field self_check.scheduled_rate "$f")" "$(field self_check.achieved_send_rate "$f")" \
  "$(field self_check.dispatch_lag_p50_ms "$f")" "$(field self_check.dispatch_lag_p99_ms "$f")" "$(field attempted "$f")"

# 4. Faults: 10 % HTTP 500 and 5 % disconnects, counted exactly.
d=$OUT/faults
"$BIN" run --num-prompts 2000 --max-concurrency 64 --random-input-len 16 --random-output-len 16 \
  --ignore-eos --ttft-ms 1 --itl-ms 1 --fault http_500=0.1 --fault disconnect=0.05 --fault-seed 1 \
  --no-progress --result-dir "$d" > "$d.log" 2>&1 || true
f=$(latest "$d")
printf 'faults: injected %s; counted %s\n' \
  "$(grep -o 'injected faults: .*' "$d.log" | cut -d: -f2- | xargs)" "$(field errors_by_kind "$f")"

# 5. Memory: 100k requests x 64 tokens, peak RSS of the whole process (client + embedded server).
d=$OUT/memory
if [[ ! -x /usr/bin/time ]]; then
  echo "memory: skipped, /usr/bin/time is missing (apt-get install time)"
  exit 0
fi
/usr/bin/time -v "$BIN" run --num-prompts 100000 --max-concurrency 256 --random-input-len 16 \
  --random-output-len 64 --ignore-eos --ttft-ms 0 --itl-ms 0 --no-progress --result-dir "$d" \
  > "$d.log" 2> "$d.time" || true
f=$(latest "$d")
printf 'memory (100k requests x 64 tokens): peak RSS %s MiB, completed %s, journal %s MiB\n' \
  "$(( $(grep 'Maximum resident' "$d.time" | awk '{print $NF}') / 1024 ))" "$(field completed "$f")" \
  "$(( $(stat -c %s "$(ls "$d"/*.journal.jsonl | head -1)") / 1048576 ))"
