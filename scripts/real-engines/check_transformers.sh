#!/usr/bin/env bash
# A third real engine: Hugging Face `transformers serve` (transformers 5.25.0, continuous
# batching, CPU) serving the tiny Llama the project builds. scripts/test.sh runs it after
# `cargo test`, like check_vllm.sh.
#
#   bash scripts/real-engines/check_transformers.sh
#
# transformers serve speaks its own strict dialect of the OpenAI API: it answers 422
# "Unexpected fields in the request" to `ignore_eos` and `min_tokens`, and ends every stream
# after the finish and usage chunks without `data: [DONE]`. Installs transformers[serving] and
# torch into .venv-transformers (install_pyenv.sh; uv's cache is shared with vLLM's venv, so
# torch is hardlinked, not downloaded twice), writes the tiny model, starts the server on
# 127.0.0.1 on a free port in its own process group, and:
#   1. keeps one raw SSE stream per endpoint (curl, byte for byte) and the 422 answer to
#      ignore_eos in the output folder, and checks the dialect's premises on them;
#   2. runs `servebench run --ignore-eos` against /v1/completions and /v1/chat/completions
#      (24 prompts, 4 in flight, 32 in / 16 out): every request must succeed without [DONE],
#      tokens must be the server's usage, the summary must be the journal's; the preflight
#      must have found ignore_eos refused and dropped it, and said so once with exact counts;
#   3. audits one small run per endpoint made through sse_proxy.py, which records what the
#      server really streamed and holds each chat stream 250 ms after its role chunk: the
#      journal must see exactly the server's text chunks and final usage, a first token after
#      the hold, and no served request may carry ignore_eos.
# The server is always stopped at the end. Output: results/transformers-check/.
# The last line is `transformers-check: N passed, M failed`; exit status 0 only when none failed.
#
# env SERVEBENCH_BIN            use this binary instead of building one
#     SERVEBENCH_PROFILE        cargo profile to build (default: dev, what `cargo test` built)
#     TRANSFORMERS_CHECK_DIR    where outputs go (default: results/transformers-check; emptied)
#     TRANSFORMERS_VENV         the environment (default: .venv-transformers)
#     TRANSFORMERS_START_TIMEOUT  seconds to wait for /health (default: 300)
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
engines=$root/scripts/real-engines
work=${TRANSFORMERS_CHECK_DIR:-$root/results/transformers-check}
# shellcheck source=common.sh
source "$engines/common.sh"
check_init transformers-check "$work" "$root"

# Pinned: the newest transformers on PyPI (2026-12-04) with `transformers serve
# --continuous-batching`; torch as vLLM's venv has it (vllm-overrides.txt), so uv links it from
# its cache instead of fetching a second copy.
transformers_version=5.25.0
torch_version=2.13.0
venv=${TRANSFORMERS_VENV:-$root/.venv-transformers}

server_pid=
proxy_pid=
stop_server() { # transformers serve runs in its own process group (setsid)
    stop_group "$server_pid" 20
    server_pid=
}
cleanup() {
    if [[ -n $proxy_pid ]]; then kill "$proxy_pid" 2>/dev/null; wait "$proxy_pid" 2>/dev/null; fi
    stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servebench -------------------------------------------------------------------------------
build_servebench dev

# ---- the checker checks itself first: it must fail on the mistakes it is there to catch -------
checker_selftest "$engines/test_check_vllm_run.py"

# ---- transformers serve ---------------------------------------------------------------------------
t=$(date +%s)
timeout 1800 "$engines/install_pyenv.sh" "$venv" "transformers[serving]==$transformers_version" \
    "torch==$torch_version" tokenizers safetensors numpy \
    || abort "install transformers[serving] (install_pyenv.sh)"
phase_done "install transformers (cached)" "$t"

t=$(date +%s)
timeout 300 "$venv/bin/python" "$engines/make_tiny_model.py" "$work/model" --seed 0 \
    --tokenizer-out "$work/tokenizer.json" || abort "make the tiny model"
phase_done "make tiny model" "$t"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
# transformers serve names a preloaded model by the path it was given.
model=$work/model
t=$(date +%s)
log "starting transformers serve on 127.0.0.1:$port"
# Nothing may be fetched from a hub, and nothing reported anywhere.
# The server's pid is its session's and process group's id, written by the process itself
# (setsid forks when the caller leads a process group, so $! may not be the server).
# shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 \
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$work/server.pid" \
    "$venv/bin/transformers" serve "$model" --continuous-batching --device cpu --dtype float32 \
    --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 </dev/null &
for _ in $(seq 50); do [[ -s $work/server.pid ]] && break; sleep 0.1; done
server_pid=$(cat "$work/server.pid" 2>/dev/null)
[[ -n $server_pid ]] || abort "transformers serve started (no pid written)"
healthy=
deadline=$(($(date +%s) + ${TRANSFORMERS_START_TIMEOUT:-300}))
while (($(date +%s) < deadline)); do
    if curl -fsS -m 2 "$base/health" >/dev/null 2>&1; then healthy=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.5
done
if [[ -z $healthy ]]; then
    tail -n 40 "$work/server.log"
    abort "transformers serve healthy within ${TRANSFORMERS_START_TIMEOUT:-300} s"
fi
tally_add ok "transformers serve healthy after $(($(date +%s) - t)) s"
phase_done "start transformers serve" "$t"
"$venv/bin/python" -c 'import transformers, torch; print(f"transformers {transformers.__version__}, torch {torch.__version__}")' \
    >"$work/versions.txt" 2>&1
log "$(cat "$work/versions.txt")"

# ---- 1. raw SSE, one stream per endpoint, byte for byte; the refusal ------------------------------
t=$(date +%s)
for ep in completions chat; do
    if [[ $ep == chat ]]; then
        path=/v1/chat/completions
        body='{"model":"'$model'","messages":[{"role":"user","content":"Say something."}],"max_tokens":6,"stream":true,"stream_options":{"include_usage":true}}'
    else
        path=/v1/completions
        body='{"model":"'$model'","prompt":"The quick brown fox","max_tokens":6,"stream":true,"stream_options":{"include_usage":true}}'
    fi
    curl -sS -N -m 60 -D "$work/raw-$ep.headers" -H 'Content-Type: application/json' \
        -d "$body" "$base$path" >"$work/raw-$ep.sse" 2>"$work/raw-$ep.err"
    # The dialect's premises: text chunks, a finish_reason, a usage, and no [DONE].
    if grep -q '"finish_reason"' "$work/raw-$ep.sse" && grep -q '"usage"' "$work/raw-$ep.sse" \
        && ! grep -q '\[DONE\]' "$work/raw-$ep.sse"; then
        tally_add ok "premise: $path streams a finish_reason and usage, then ends without [DONE]"
    else
        head -c 2000 "$work/raw-$ep.sse"
        tally_add fail "premise: $path streams a finish_reason and usage, then ends without [DONE]"
    fi
done
status=$(curl -sS -m 30 -o "$work/raw-refused.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model":"'$model'","prompt":"Hi","max_tokens":2,"stream":true,"ignore_eos":true}' \
    "$base/v1/completions")
if [[ $status == 422 ]] && grep -q "Unexpected fields in the request: {'ignore_eos'}" "$work/raw-refused.json"; then
    tally_add ok "premise: ignore_eos is answered 422 $(cat "$work/raw-refused.json")"
else
    tally_add fail "premise: ignore_eos is answered 422 (got $status: $(head -c 300 "$work/raw-refused.json"))"
fi
phase_done "raw streams" "$t"

# ---- 2. the runs --------------------------------------------------------------------------------------
num_prompts=24
common=(--model "$model" --tokenizer "$work/tokenizer.json" --num-prompts "$num_prompts"
    --max-concurrency 4 --random-input-len 32 --random-output-len 16 --ignore-eos
    --seed 1 --request-timeout 60 --no-progress --result-dir "$work")
t=$(date +%s)
for ep in completions chat; do
    path=/v1/completions
    [[ $ep == chat ]] && path=/v1/chat/completions
    log "servebench run $path ($num_prompts prompts, 4 in flight, --ignore-eos)"
    servebench_run "$ep" --base-url "$base" --endpoint "$path" "${common[@]}"
    # No --expect-output-len: the server never saw ignore_eos, so a request may stop at EOS.
    timeout 60 python3 "$engines/check_vllm_run.py" run --summary "$work/$ep.json" \
        --journal "$work/$ep.journal.jsonl" --endpoint "$path" --num-prompts "$num_prompts" \
        --tally "$tally"
    timeout 60 python3 "$engines/check_vllm_run.py" refused --summary "$work/$ep.json" \
        --journal "$work/$ep.journal.jsonl" --output "$work/$ep.out" --expect ignore_eos \
        --tally "$tally"
done
phase_done "servebench runs" "$t"

# ---- 3. the audit through the recording proxy ----------------------------------------------------
proxy_audit 32 16 audit
for ep in completions chat; do
    timeout 60 python3 "$engines/check_vllm_run.py" refused --summary "$work/audit-$ep.json" \
        --journal "$work/audit-$ep.journal.jsonl" --output "$work/audit-$ep.out" \
        --expect ignore_eos --capture "$work/capture-$ep.jsonl" --tally "$tally"
done

if kill -0 "$server_pid" 2>/dev/null; then
    tally_add ok "transformers serve still running at the end (it survived the load)"
else
    tally_add fail "transformers serve still running at the end"
    tail -n 40 "$work/server.log"
fi
cleanup
if curl -fsS -m 2 "$base/health" >/dev/null 2>&1; then
    tally_add fail "transformers serve stopped (nothing left on port $port)"
else
    tally_add ok "transformers serve stopped (nothing left on port $port)"
fi
finish
