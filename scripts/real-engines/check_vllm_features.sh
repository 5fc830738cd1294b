#!/usr/bin/env bash
# The workloads that tell engines apart (issue 6), against a real vLLM (CPU build, tiny local
# model, automatic prefix caching and xgrammar structured outputs on, as vLLM ships them):
#   1. shared prefix: an unshared baseline and a shared-prefix run with the same token counts;
#      the server's /metrics counters must show prefix-cache hits during the shared run, and
#      servebench's reported hit rate must be there and agree with them;
#   2. structured output: JSON-schema-constrained runs in the OpenAI dialect (`response_format`)
#      and vLLM's own (`structured_outputs`), every answer re-validated here with python
#      `jsonschema`: servebench's count of valid answers must be exact and above zero; then the
#      same run in vLLM's older
#      `guided_json` dialect, which this vLLM silently ignores: servebench must report 0 % valid;
#   3. multi-turn: conversations on /v1/chat/completions whose history (replies included) is
#      sent back each turn; the server's usage must show each turn's prompt longer than the
#      previous prompt plus its reply, and its prefix cache must hit on the history.
# vLLM is always stopped at the end. Output: results/vllm-features-check/.
# The last line is `vllm-features-check: N passed, M failed`; exit status 0 only when none failed.
#
#   bash scripts/real-engines/check_vllm_features.sh     (scripts/test.sh runs every check_*.sh)
#
# env SERVEBENCH_BIN      use this binary instead of building one
#     SERVEBENCH_PROFILE  cargo profile to build (default: dev, what `cargo test` built)
#     VLLM_FEATURES_DIR   where outputs go (default: results/vllm-features-check; emptied)
#     VLLM_VENV, VLLM_START_TIMEOUT   see start_vllm.sh
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
engines=$root/scripts/real-engines
work=${VLLM_FEATURES_DIR:-$root/results/vllm-features-check}
# shellcheck source=common.sh
source "$engines/common.sh"
check_init vllm-features-check "$work" "$root"

vllm_pidfile=$work/vllm.log.pid
cleanup() { "$engines/stop_vllm.sh" "$vllm_pidfile"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servebench -------------------------------------------------------------------------------
build_servebench dev

# ---- the checker checks itself first: it must fail on the mistakes it is there to catch -------
checker_selftest "$engines/test_check_features.py"

# ---- vLLM ---------------------------------------------------------------------------------------
start_tiny_vllm
scrape() { curl -fsS "$base/metrics" >"$work/$1.prom" || tally_add fail "scrape /metrics ($1)"; }
common=(--base-url "$base" --model "$model" --tokenizer "$work/tokenizer.json"
    --request-timeout 120 --no-progress --result-dir "$work" --telemetry-interval-ms 200)
run() { # NAME ARGS…
    log "servebench run: $1"
    servebench_run "$1" "${common[@]}" "${@:2}"
}

# ---- 1. shared prefix ---------------------------------------------------------------------------
# vLLM on CPU caches 128-token blocks: a 512-token system prompt is four whole blocks to share.
t=$(date +%s)
scrape before-prefix
run unshared --dataset-name random --random-input-len 528 --random-output-len 8 \
    --num-prompts 16 --max-concurrency 2 --seed 21
scrape mid-prefix
run shared-prefix --dataset-name generated-shared-prefix --gsp-num-groups 2 \
    --gsp-prompts-per-group 8 --gsp-system-prompt-len 512 --gsp-question-len 16 \
    --gsp-output-len 8 --max-concurrency 2 --seed 22
scrape after-prefix
python3 "$engines/check_features.py" prefix --baseline "$work/unshared.json" \
    --shared "$work/shared-prefix.json" --before "$work/before-prefix.prom" \
    --mid "$work/mid-prefix.prom" --after "$work/after-prefix.prom" --tally "$tally"
phase_done "shared prefix" "$t"

# ---- 2. structured output -----------------------------------------------------------------------
# A random-weight model under a JSON grammar wanders in the whitespace the grammar allows, so
# answers get room (max 256 tokens); a real model finishes this schema in about 20 tokens.
t=$(date +%s)
cat >"$work/schema.json" <<'EOF'
{"type": "object",
 "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                "score": {"type": "integer", "minimum": 1, "maximum": 5},
                "urgent": {"type": "boolean"}},
 "required": ["sentiment", "score", "urgent"],
 "additionalProperties": false}
EOF
structured=(--endpoint /v1/chat/completions --dataset-name random --random-input-len 32
    --random-output-len 256 --num-prompts 12 --max-concurrency 2 --seed 31 --save-detailed
    --structured-output json-schema --json-schema "$work/schema.json")
for dialect in openai vllm; do
    run "structured-$dialect" "${structured[@]}" --structured-dialect "$dialect"
    "$venv/bin/python" "$engines/check_features.py" structured \
        --summary "$work/structured-$dialect.json" --schema "$work/schema.json" --expect-valid \
        --tally "$tally"
done
run structured-guided "${structured[@]}" --structured-dialect vllm-guided
"$venv/bin/python" "$engines/check_features.py" structured \
    --summary "$work/structured-guided.json" --schema "$work/schema.json" --expect-ignored \
    --tally "$tally"
phase_done "structured output" "$t"

# ---- 3. multi-turn ------------------------------------------------------------------------------
t=$(date +%s)
scrape before-multiturn
run multi-turn --endpoint /v1/chat/completions --dataset-name multi-turn \
    --conversation-num 4 --conversation-turn-mean 3 --conversation-turn-delay-mean 50 \
    --conversation-first-input-len 160 --conversation-input-len 24 --conversation-output-len 16 \
    --max-concurrency 2 --seed 41
scrape after-multiturn
python3 "$engines/check_features.py" multiturn --journal "$work/multi-turn.journal.jsonl" \
    --before "$work/before-multiturn.prom" --after "$work/after-multiturn.prom" --tally "$tally"
phase_done "multi-turn" "$t"

if ! kill -0 "$(cat "$vllm_pidfile" 2>/dev/null || echo 0)" 2>/dev/null; then
    tally_add fail "vLLM still running at the end"
    tail -n 40 "$work/vllm.log"
fi
finish
