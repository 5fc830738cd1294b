#!/usr/bin/env bash
# The second real-engine check: servebench against llama.cpp's `llama-server` (built from the
# source the llama-cpp-python sdist carries, tiny GGUF model made locally). scripts/test.sh runs
# it after `cargo test`, like check_vllm.sh.
#
#   bash scripts/real-engines/check_llamacpp.sh
#
# Builds llama-server once (install_llamacpp.sh; 6-10 min on 2 cores, then cached), writes a tiny
# Llama GGUF, starts llama-server on 127.0.0.1 on a free port in its own process group, and:
#   1. runs `servebench run` against /v1/completions and /v1/chat/completions (24 prompts,
#      4 in flight, 32 in / 24 out, --ignore-eos) and checks each run's summary and journal;
#   2. checks llama.cpp's own /metrics counter of predicted tokens against the journals;
#   3. audits one small run per endpoint made through sse_proxy.py, which records what
#      llama.cpp really streamed and holds each chat stream 250 ms after its role chunk: the
#      journal must see exactly the server's text chunks (not the `content: null` role chunk,
#      not the separate finish chunk with empty text, not the usage chunk) and the usage of
#      the finish chunk, and a first token after the hold;
#   4. runs 64 chat requests one at a time: llama-server closes the connection after every
#      stream while offering keep-alive, so each request goes out on a connection being closed;
#      every one must still succeed (notes from `check_vllm_run.py llamacpp-keepalive` show it);
#   5. keeps one raw SSE stream per endpoint (curl) in the output folder, for the record.
# llama-server is always stopped at the end. Output: results/llamacpp-check/.
# The last line is `llamacpp-check: N passed, M failed`; exit status 0 only when nothing failed.
#
# env SERVEBENCH_BIN        use this binary instead of building one
#     SERVEBENCH_PROFILE    cargo profile to build (default: dev, which reuses the debug build
#                           that `cargo test` just made; the checks judge correctness, not speed)
#     LLAMACPP_CHECK_DIR    where outputs go (default: results/llamacpp-check)
#     LLAMACPP_BUILD_TIMEOUT  seconds the first build may take (default: 2400)
#     LLAMACPP_HOME, LLAMACPP_VENV  see install_llamacpp.sh
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
engines=$root/scripts/real-engines
work=${LLAMACPP_CHECK_DIR:-$root/results/llamacpp-check}
# shellcheck source=common.sh
source "$engines/common.sh"
check_init llamacpp-check "$work" "$root"

server_pid=
proxy_pid=
stop_server() { # llama-server runs in its own process group (setsid)
    stop_group "$server_pid" 10
    server_pid=
}
cleanup() {
    if [[ -n $proxy_pid ]]; then kill "$proxy_pid" 2>/dev/null; wait "$proxy_pid" 2>/dev/null; fi
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servebench (the same lookup as check_vllm.sh: the debug build cargo test just made) --------
build_servebench dev

# ---- the checker checks itself first: it must fail on the mistakes it is there to catch -------
t=$(date +%s)
if timeout 120 python3 "$engines/check_vllm_run.py" llamacpp-selftest >"$work/checker-selftest.log" 2>&1; then
    tally_add ok "llama.cpp checker self-test ($(tail -n1 "$work/checker-selftest.log" | sed 's/^ *-> //'))"
else
    cat "$work/checker-selftest.log"
    abort "llama.cpp checker self-test"
fi
phase_done "checker self-test" "$t"

# ---- llama-server -----------------------------------------------------------------------------------
t=$(date +%s)
timeout "${LLAMACPP_BUILD_TIMEOUT:-2400}" "$engines/install_llamacpp.sh" || abort "build llama-server (install_llamacpp.sh)"
phase_done "install llama.cpp (cached)" "$t"
venv=${LLAMACPP_VENV:-$root/.venv-llamacpp}
server=${LLAMACPP_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/servebench/llamacpp}/bin/llama-server
timeout 10 "$server" --version >"$work/llama-server-version.txt" 2>&1
log "llama-server: $(grep -m1 -i version "$work/llama-server-version.txt")"

t=$(date +%s)
timeout 300 "$venv/bin/python" "$engines/make_tiny_gguf.py" "$work/tiny.gguf" --seed 0 \
    --tokenizer-out "$work/tokenizer.json" || abort "make the tiny GGUF model"
phase_done "make tiny GGUF" "$t"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
model=tiny-llama
base=http://127.0.0.1:$port
t=$(date +%s)
log "starting llama-server on 127.0.0.1:$port"
# -t 1: with 2 threads on a busy 2-core machine ggml's spinning workers stall batches for seconds.
# The server's pid is its session's and process group's id; it is written by the process itself
# (setsid forks when the caller leads a process group, so $! may not be the server).
# shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
setsid bash -c 'echo $$ >"$0"; exec "$@"' "$work/llama-server.pid" \
    "$server" -m "$work/tiny.gguf" --host 127.0.0.1 --port "$port" -a "$model" \
    -c 16384 -np 8 -t 1 --metrics >"$work/llama-server.log" 2>&1 </dev/null &
for _ in $(seq 50); do [[ -s $work/llama-server.pid ]] && break; sleep 0.1; done
server_pid=$(cat "$work/llama-server.pid" 2>/dev/null)
[[ -n $server_pid ]] || abort "llama-server started (no pid written)"
healthy=
for _ in $(seq 600); do # 60 s
    if curl -fsS -m 2 "$base/health" >/dev/null 2>&1; then healthy=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z $healthy ]]; then
    tail -n 40 "$work/llama-server.log"
    abort "llama-server healthy within 60 s"
fi
tally_add ok "llama-server healthy after $(($(date +%s) - t)) s"
phase_done "start llama-server" "$t"

# ---- raw SSE, one stream per endpoint, for the record (what the dialect looks like) ------------
for ep in completions chat; do
    if [[ $ep == chat ]]; then
        path=/v1/chat/completions
        body='{"model":"'$model'","messages":[{"role":"user","content":"Say something."}],"max_tokens":6,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true}}'
    else
        path=/v1/completions
        body='{"model":"'$model'","prompt":"The quick brown fox","max_tokens":6,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true}}'
    fi
    curl -sS -N -m 30 -D "$work/raw-$ep.headers" -H 'Content-Type: application/json' \
        -d "$body" "$base$path" >"$work/raw-$ep.sse" 2>&1 || log "raw capture of $path failed"
done

# llama-server closes the connection right after every streamed response although its headers
# offer keep-alive (cpp-httplib ends the connection when the stream's content provider returns
# false after sink.done()); these notes show it, for whoever reads a failure below.
timeout 60 python3 "$engines/check_vllm_run.py" llamacpp-keepalive --port "$port" --model "$model"

# ---- 1. the runs --------------------------------------------------------------------------------------
num_prompts=24
out_len=24
common=(--model "$model" --tokenizer "$work/tokenizer.json" --num-prompts "$num_prompts"
    --max-concurrency 4 --random-input-len 32 --random-output-len "$out_len" --ignore-eos
    --seed 1 --request-timeout 60 --no-progress --result-dir "$work")

curl -fsS -m 10 "$base/metrics" >"$work/metrics-before.txt" || tally_add fail "scrape /metrics"
t=$(date +%s)
for ep in completions chat; do
    path=/v1/completions
    [[ $ep == chat ]] && path=/v1/chat/completions
    log "servebench run $path ($num_prompts prompts, 4 in flight)"
    servebench_run "$ep" --base-url "$base" --endpoint "$path" "${common[@]}"
done
phase_done "servebench runs" "$t"
sleep 1 # llama.cpp counts a request's tokens when its slot is released; let the counter settle
curl -fsS -m 10 "$base/metrics" >"$work/metrics-after.txt" || tally_add fail "scrape /metrics"

for ep in completions chat; do
    path=/v1/completions
    [[ $ep == chat ]] && path=/v1/chat/completions
    timeout 60 python3 "$engines/check_vllm_run.py" run --summary "$work/$ep.json" \
        --journal "$work/$ep.journal.jsonl" --endpoint "$path" --num-prompts "$num_prompts" \
        --expect-output-len "$out_len" --tally "$tally"
    timeout 60 python3 "$engines/check_vllm_run.py" llamacpp-run --journal "$work/$ep.journal.jsonl" \
        --endpoint "$path" --tally "$tally"
done

# ---- 2. the server's own count ------------------------------------------------------------------
# Exactly the journals' tokens, plus servebench's preflight probes (max_tokens 2, one per run):
# the 16-token allowance is less than one request's 24, so an unrecorded request still fails.
timeout 60 python3 "$engines/check_vllm_run.py" metrics --before "$work/metrics-before.txt" \
    --after "$work/metrics-after.txt" --journal "$work/completions.journal.jsonl" \
    --journal "$work/chat.journal.jsonl" --name llamacpp:tokens_predicted_total \
    --allow-extra 16 --tally "$tally"

# ---- 2b. connection reuse: one request at a time, each on the connection the last stream used --
# A closed loop of one sends each request the moment the previous stream ended, on the pooled
# connection that llama-server is closing (see the keep-alive notes): every request must still
# succeed, and count.
t=$(date +%s)
reuse_n=64
log "servebench run /v1/chat/completions ($reuse_n prompts, one at a time: connection reuse)"
timeout 300 "$bin" run --base-url "$base" --endpoint /v1/chat/completions --model "$model" \
    --tokenizer "$work/tokenizer.json" --num-prompts "$reuse_n" --max-concurrency 1 \
    --random-input-len 32 --random-output-len 8 --ignore-eos --seed 3 --request-timeout 60 \
    --no-progress --result-dir "$work" --result-filename reuse-chat.json >"$work/reuse-chat.out" 2>&1
rc=$?
if [[ $rc -eq 0 ]]; then tally_add ok "servebench run (connection reuse) exited 0"
else cat "$work/reuse-chat.out"; tally_add fail "servebench run (connection reuse) exited $rc"; fi
timeout 60 python3 "$engines/check_vllm_run.py" run --summary "$work/reuse-chat.json" \
    --journal "$work/reuse-chat.journal.jsonl" --endpoint /v1/chat/completions \
    --num-prompts "$reuse_n" --expect-output-len 8 --tally "$tally"
phase_done "connection reuse run" "$t"

# ---- 3. the audit through the recording proxy ----------------------------------------------------
proxy_audit 32 "$out_len" audit-llamacpp

if kill -0 "$server_pid" 2>/dev/null; then
    tally_add ok "llama-server still running at the end (it survived the load)"
else
    tally_add fail "llama-server still running at the end"
    tail -n 40 "$work/llama-server.log"
fi
cleanup
if pgrep -f -- "--port $port " >/dev/null 2>&1 || curl -fsS -m 2 "$base/health" >/dev/null 2>&1; then
    tally_add fail "llama-server stopped (nothing left on port $port)"
else
    tally_add ok "llama-server stopped (nothing left on port $port)"
fi
finish
