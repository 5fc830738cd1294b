# shellcheck shell=bash
# Shared by the real-engine checks (sourced, not run): the output folder, the pass/fail tally,
# per-phase timings, and the closing line `NAME: N passed, M failed` that CI reads.
#
#   source "$engines/common.sh"
#   check_init NAME WORKDIR ROOT    # empties WORKDIR (never /, ROOT or $HOME)
#   log …; tally_add ok|fail WHAT; phase_done PHASE START; abort WHAT; finish
#   build_servebench DEFAULT_PROFILE    # sets bin
#   servebench_run NAME ARGS…           # one run, output kept, status tallied
#   start_tiny_vllm                     # vLLM + tiny model on a free port; sets base, model
#   stop_group PID SECONDS              # stop a setsid process group: TERM, then KILL
#   checker_selftest SCRIPT.py          # the checker's unittest self-test, tallied (or abort)

check_init() {
    check_name=$1
    work=$2
    case $work in
    / | "$3" | "$HOME" | "") echo "refusing to use $work as the output folder (it is emptied)" >&2; exit 2 ;;
    esac
    rm -rf "$work"
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
    tally=$work/tally
    echo "0 0" >"$tally"
    t0=$(date +%s)
    timings=()
}

log() { printf '[%s] %s\n' "$check_name" "$*" >&2; }
phase_done() { timings+=("$(printf '%-28s %4d s' "$1" $(($(date +%s) - $2)))"); }
tally_add() { # ok|fail WHAT
    local p f
    read -r p f <"$tally"
    if [[ $1 == ok ]]; then p=$((p + 1)); echo "  ok   $2"; else f=$((f + 1)); echo "  FAIL $2"; fi
    echo "$p $f" >"$tally"
}
finish() {
    local p f
    read -r p f <"$tally"
    echo
    echo "timings:"
    printf '  %s\n' "${timings[@]}"
    printf '  %-28s %4d s\n' "total" $(($(date +%s) - t0))
    echo "outputs: $work"
    echo "$check_name: $p passed, $f failed"
    [[ $f -eq 0 && $p -gt 0 ]]
}
# The servebench binary a check drives: $SERVEBENCH_BIN when set, else a cargo build of
# $SERVEBENCH_PROFILE (default: DEFAULT_PROFILE). Sets `bin`; uses the caller's `root`.
#   build_servebench DEFAULT_PROFILE
# shellcheck disable=SC2154 # the caller sets root
build_servebench() {
    local t profile dir
    t=$(date +%s)
    profile=${SERVEBENCH_PROFILE:-$1}
    if [[ -n ${SERVEBENCH_BIN:-} ]]; then
        bin=$SERVEBENCH_BIN
    else
        log "building servebench (cargo build --profile $profile)"
        timeout 1800 cargo build --profile "$profile" --bin servebench --quiet \
            || abort "cargo build --profile $profile"
        dir=$profile
        [[ $profile == dev ]] && dir=debug
        bin=${CARGO_TARGET_DIR:-$root/target}/$dir/servebench
    fi
    [[ -x $bin ]] || abort "servebench binary at $bin"
    phase_done "build servebench" "$t"
}
# One `servebench run ARGS… --result-filename NAME.json` (the caller's $bin), its output shown
# and kept in $work/NAME.out, its exit status tallied. Returns that status.
#   servebench_run NAME ARGS…
# shellcheck disable=SC2154 # the caller sets bin
servebench_run() {
    local name=$1 rc
    shift
    timeout 300 "$bin" run "$@" --result-filename "$name.json" >"$work/$name.out" 2>&1
    rc=$?
    cat "$work/$name.out"
    if [[ $rc -eq 0 ]]; then tally_add ok "servebench run $name exited 0"
    else tally_add fail "servebench run $name exited $rc"; fi
    return "$rc"
}
# vLLM for CPU (installed or reused), the tiny model and its tokenizer in $work, and vLLM
# serving it on a free loopback port; each a timed phase. Sets venv, model, port and base;
# stops nothing (the caller's trap runs stop_vllm.sh on $work/vllm.log.pid).
# shellcheck disable=SC2034 # venv, model and base are the caller's
start_tiny_vllm() {
    local t
    t=$(date +%s)
    timeout 1800 "$engines/install_vllm_cpu.sh" || abort "install vLLM for CPU"
    phase_done "install vLLM (cached)" "$t"
    venv=${VLLM_VENV:-$root/.venv-vllm}
    t=$(date +%s)
    timeout 300 "$venv/bin/python" "$engines/make_tiny_model.py" "$work/model" --seed 0 \
        --tokenizer-out "$work/tokenizer.json" || abort "make the tiny model"
    phase_done "make tiny model" "$t"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    model=tiny-llama
    t=$(date +%s)
    "$engines/start_vllm.sh" "$work/model" "$port" "$work/vllm.log" "$model" || abort "start vLLM"
    phase_done "start vLLM" "$t"
    base=http://127.0.0.1:$port
}
abort() { # a step without which nothing else can be checked
    tally_add fail "$1"
    finish
    exit 1
}

# The audit through the recording proxy (sse_proxy.py): servebench sends 8 requests per
# endpoint, one at a time, through a proxy that logs every SSE event the engine sends and holds
# each chat stream after its role chunk; AUDIT (a check_vllm_run.py subcommand) then holds the
# journal against that capture. Uses $bin $model $port $work $engines $tally; sets proxy_pid
# (the caller's cleanup stops it).
#   proxy_audit INPUT_LEN OUTPUT_LEN AUDIT
# shellcheck disable=SC2154,SC2034 # the caller sets bin, model, port, engines and reads proxy_pid
proxy_audit() {
    local input_len=$1 out_len=$2 audit=$3 t role_delay_ms=250 proxy ep path rc
    t=$(date +%s)
    python3 "$engines/sse_proxy.py" --upstream "127.0.0.1:$port" --capture "$work/capture.jsonl" \
        --port-file "$work/proxy.port" --role-delay-ms "$role_delay_ms" 2>"$work/proxy.log" &
    proxy_pid=$!
    for _ in $(seq 50); do [[ -s $work/proxy.port ]] && break; sleep 0.1; done
    if [[ -s $work/proxy.port ]]; then
        proxy=http://127.0.0.1:$(cat "$work/proxy.port")
        for ep in completions chat; do
            path=/v1/completions
            [[ $ep == chat ]] && path=/v1/chat/completions
            : >"$work/capture.jsonl"
            log "servebench run $path through the recording proxy (8 prompts, one at a time)"
            timeout 120 "$bin" run --base-url "$proxy" --endpoint "$path" --model "$model" \
                --tokenizer "$work/tokenizer.json" --num-prompts 8 --max-concurrency 1 \
                --random-input-len "$input_len" --random-output-len "$out_len" --ignore-eos --seed 2 \
                --request-timeout 60 --no-progress --result-dir "$work" \
                --result-filename "audit-$ep.json" >"$work/audit-$ep.out" 2>&1
            rc=$?
            if [[ $rc -eq 0 ]]; then tally_add ok "servebench run $path via the proxy exited 0"
            else cat "$work/audit-$ep.out"; tally_add fail "servebench run $path via the proxy exited $rc"; fi
            cp "$work/capture.jsonl" "$work/capture-$ep.jsonl"
            timeout 60 python3 "$engines/check_vllm_run.py" "$audit" \
                --journal "$work/audit-$ep.journal.jsonl" --capture "$work/capture-$ep.jsonl" \
                --endpoint "$path" --role-delay-ms "$role_delay_ms" --tally "$tally"
        done
    else
        cat "$work/proxy.log"
        tally_add fail "start the recording proxy"
    fi
    phase_done "audit via proxy" "$t"
}
# Stops the process group a server was started in with setsid (PID leads it): TERM, then KILL
# after SECONDS, then reaps it. Safe in a trap: an empty or finished PID is fine.
#   stop_group PID SECONDS
stop_group() {
    local pid=$1 secs=$2
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null
        for _ in $(seq $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    return 0
}
# The checker checks itself first: its unittest self-test must pass (it fails on the mistakes
# the checker is there to catch) before its verdicts on a real engine mean anything.
#   checker_selftest SCRIPT.py
# shellcheck disable=SC2154 # the caller sets work (check_init)
checker_selftest() {
    local t
    t=$(date +%s)
    if timeout 120 python3 "$1" >"$work/checker-selftest.log" 2>&1; then
        tally_add ok "checker self-test ($(grep "^Ran" "$work/checker-selftest.log"), all OK)"
    else
        cat "$work/checker-selftest.log"
        abort "checker self-test"
    fi
    phase_done "checker self-test" "$t"
}
