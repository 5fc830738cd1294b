#!/usr/bin/env bash
# Start vLLM (CPU) in the background on 127.0.0.1 and wait until /health answers.
#
# Usage: scripts/real-engines/start_vllm.sh MODEL_DIR PORT LOGFILE [SERVED_NAME]
#   Writes the server's process-group id to LOGFILE.pid; stop it with stop_vllm.sh LOGFILE.pid.
#   env VLLM_VENV            the environment from install_vllm_cpu.sh (default: .venv-vllm)
#       VLLM_START_TIMEOUT   seconds to wait for /health (default: 300)
#       VLLM_EXTRA_ARGS      more arguments for the api_server, split on spaces
# Exit status 0 once healthy; 1 with the log's last lines when it died or did not come up.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 MODEL_DIR PORT LOGFILE [SERVED_NAME]" >&2
    exit 2
fi
model_dir=$(cd "$1" && pwd)
port=$2
logfile=$3
name=${4:-tiny-llama}
pidfile=$logfile.pid

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${VLLM_VENV:-$root/.venv-vllm}
timeout=${VLLM_START_TIMEOUT:-300}

log() { printf '[start-vllm] %s\n' "$*" >&2; }

if [[ ! -x $venv/bin/python ]]; then
    log "error: no environment at $venv; run scripts/real-engines/install_vllm_cpu.sh first"
    exit 1
fi

# VLLM_HOST_IP: otherwise vLLM's internal messaging binds the host's external address.
# VLLM_CPU_KVCACHE_SPACE: the KV cache in GiB; the tiny model needs very little.
# HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE: nothing may be fetched from a hub.
export VLLM_HOST_IP=127.0.0.1
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

# The distribution is named vllm-cpu, so the `vllm` console script fails; the module works.
# --enforce-eager: no graph capture (nothing to gain on CPU, slower start).
args=(
    -m vllm.entrypoints.openai.api_server
    --model "$model_dir"
    --served-model-name "$name"
    --host 127.0.0.1
    --port "$port"
    --dtype float32
    --max-model-len 2048
    --enforce-eager
)
# shellcheck disable=SC2206 # splitting on spaces is the documented contract
[[ -n ${VLLM_EXTRA_ARGS:-} ]] && args+=($VLLM_EXTRA_ARGS)

mkdir -p "$(dirname "$logfile")"
log "starting vLLM: $name from $model_dir on 127.0.0.1:$port (log: $logfile)"
start=$(date +%s)
# setsid: the server and the engine processes it spawns share one new process group, which
# stop_vllm.sh ends as a whole. The pid is written from inside so it is the group's leader.
# shellcheck disable=SC2016 # $$ and $1 are for the inner shell
setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$venv/bin/python" "${args[@]}" \
    >"$logfile" 2>&1 </dev/null &
launcher=$!

for _ in $(seq 50); do [[ -s $pidfile ]] && break; sleep 0.1; done
pid=$(cat "$pidfile" 2>/dev/null || echo "$launcher")

fail() {
    log "error: $1"
    log "last lines of $logfile:"
    tail -n 40 "$logfile" >&2 || true
    "$here/stop_vllm.sh" "$pidfile" || true
    exit 1
}

deadline=$((start + timeout))
while true; do
    if curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        fail "vLLM exited during startup after $(($(date +%s) - start)) s"
    fi
    if (($(date +%s) >= deadline)); then
        fail "vLLM was not healthy within ${timeout} s (raise VLLM_START_TIMEOUT on a slow machine)"
    fi
    sleep 1
done
log "healthy after $(($(date +%s) - start)) s (pid $pid)"
