#!/usr/bin/env bash
# The real-engine check: servebench against a real vLLM (CPU build, tiny local model).
#
#   bash scripts/ci/vllm_check.sh
#
# Builds servebench (release), installs vLLM for CPU into .venv-vllm (cached), writes a tiny
# Llama model, starts vLLM on 127.0.0.1 on a free port, and then:
#   1. runs `servebench run` against /v1/completions and /v1/chat/completions (40 prompts,
#      4 in flight, 64 in / 32 out, --ignore-eos) and checks each run's summary and journal;
#   2. checks vLLM's own /metrics counter of generated tokens against the journals;
#   3. audits one small run per endpoint made through sse_proxy.py, which records what vLLM
#      really streamed and holds each chat stream 250 ms after its role-only chunk: the journal
#      must see exactly the server's text chunks and usage, and a first token after the hold.
# vLLM is always stopped at the end. Output: results/vllm-check/ (logs, journals, captures).
# The last line is `vllm-check: N passed, M failed`; exit status 0 only when nothing failed.
#
# env SERVEBENCH_BIN      use this binary instead of building one
#     SERVEBENCH_PROFILE  cargo profile to build (default: release; `dev` reuses a debug build
#                         that the tests already made, and saves the release build's minutes)
#     VLLM_CHECK_DIR    where outputs go (default: results/vllm-check)
#     VLLM_VENV, VLLM_START_TIMEOUT   see scripts/real-engines/
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
engines=$root/scripts/real-engines
work=${VLLM_CHECK_DIR:-$root/results/vllm-check}
# shellcheck source=../real-engines/common.sh
source "$engines/common.sh"
check_init vllm-check "$work" "$root"

vllm_pidfile=$work/vllm.log.pid
proxy_pid=
cleanup() {
    [[ -n $proxy_pid ]] && kill "$proxy_pid" 2>/dev/null
    "$engines/stop_vllm.sh" "$vllm_pidfile"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servebench -------------------------------------------------------------------------------
build_servebench release

# ---- the checker checks itself first: it must fail on the mistakes it is there to catch -------
t=$(date +%s)
if python3 "$engines/test_check_vllm_run.py" >"$work/checker-selftest.log" 2>&1; then
    tally_add ok "checker self-test ($(grep "^Ran" "$work/checker-selftest.log"), all OK)"
else
    cat "$work/checker-selftest.log"
    abort "checker self-test"
fi
phase_done "checker self-test" "$t"

# ---- vLLM ---------------------------------------------------------------------------------------
start_tiny_vllm

# ---- 1. the runs ----------------------------------------------------------------------------------
num_prompts=40
out_len=32
common=(--model "$model" --tokenizer "$work/tokenizer.json" --num-prompts "$num_prompts"
    --max-concurrency 4 --random-input-len 64 --random-output-len "$out_len" --ignore-eos
    --seed 1 --request-timeout 120 --no-progress --result-dir "$work")

curl -fsS "$base/metrics" >"$work/metrics-before.txt" || tally_add fail "scrape /metrics"
t=$(date +%s)
for ep in completions chat; do
    path=/v1/completions
    [[ $ep == chat ]] && path=/v1/chat/completions
    log "servebench run $path ($num_prompts prompts, 4 in flight)"
    servebench_run "$ep" --base-url "$base" --endpoint "$path" "${common[@]}"
done
phase_done "servebench runs" "$t"
sleep 1 # vLLM records stats beside streaming the last token; let the counter settle
curl -fsS "$base/metrics" >"$work/metrics-after.txt" || tally_add fail "scrape /metrics"

for ep in completions chat; do
    path=/v1/completions
    [[ $ep == chat ]] && path=/v1/chat/completions
    python3 "$engines/check_vllm_run.py" run --summary "$work/$ep.json" \
        --journal "$work/$ep.journal.jsonl" --endpoint "$path" --num-prompts "$num_prompts" \
        --expect-output-len "$out_len" --tally "$tally"
done

# ---- 2. the server's own count ------------------------------------------------------------------
# Exactly the journals' tokens, plus servebench's preflight probes (max_tokens 2, one per run):
# the 16-token allowance is less than one request's 32, so an unrecorded request still fails.
python3 "$engines/check_vllm_run.py" metrics --before "$work/metrics-before.txt" \
    --after "$work/metrics-after.txt" --journal "$work/completions.journal.jsonl" \
    --journal "$work/chat.journal.jsonl" --allow-extra 16 --tally "$tally"

# ---- 3. the audit through the recording proxy ----------------------------------------------------
proxy_audit 64 "$out_len" audit

if ! kill -0 "$(cat "$vllm_pidfile" 2>/dev/null || echo 0)" 2>/dev/null; then
    tally_add fail "vLLM still running at the end"
    tail -n 40 "$work/vllm.log"
fi
finish
