#!/usr/bin/env bash
# Stop a server started by start_vllm.sh: TERM to its process group, KILL after a grace period.
#
# Usage: scripts/real-engines/stop_vllm.sh PIDFILE   (LOGFILE.pid as written by start_vllm.sh)
#   env VLLM_STOP_GRACE  seconds to wait after TERM (default: 20)
# Succeeds when nothing is running (already stopped, or no pid file), so it is safe in a trap.
set -uo pipefail

pidfile=${1:?usage: $0 PIDFILE}
grace=${VLLM_STOP_GRACE:-20}
log() { printf '[stop-vllm] %s\n' "$*" >&2; }

[[ -s $pidfile ]] || exit 0
pgid=$(cat "$pidfile")
if ! [[ $pgid =~ ^[0-9]+$ ]] || ((pgid <= 1)); then
    log "ignoring $pidfile: '$pgid' is not a process id"
    exit 0
fi

# Only the group this pid file names: the server and the engine processes it spawned.
alive() { kill -0 -- "-$pgid" 2>/dev/null; }
if alive; then
    log "stopping process group $pgid"
    kill -TERM -- "-$pgid" 2>/dev/null
    for _ in $(seq $((grace * 10))); do
        alive || break
        sleep 0.1
    done
    if alive; then
        log "still running after ${grace} s; killing group $pgid"
        kill -KILL -- "-$pgid" 2>/dev/null
    fi
fi
rm -f "$pidfile"
