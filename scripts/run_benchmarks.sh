#!/usr/bin/env bash
# Run the seed study against the real engines on this GPU instance: a preflight (GPU visible,
# Docker usable, images present, disk space), then `servebench suite <config>`, with the whole
# console output kept in <result_dir>/logs/. At the end it prints where report.md, report.html
# and the combined CSV are, and what the instance has cost so far. See docs/aws.md.
#
# Usage: scripts/run_benchmarks.sh [--config FILE] [--result-dir DIR] [--force] [--dry-run]
#                                  [--min-free-gb N] [-- EXTRA SUITE ARGS]
#   --config FILE     suite file (default: configs/seed-aws-g5.toml)
#   --result-dir DIR  write results there instead of the file's result_dir
#   --force           rerun cells whose results already exist (default: an interrupted study
#                     resumes where it stopped)
#   --dry-run         run the preflight and print the command, run nothing
#   --min-free-gb N   free space the model cache needs (default 10; opt-125m is ~0.25 GB, an
#                     8B model in bf16 ~16 GB)
#
# Exit status: the suite's own (0 success, 1 failed, 2 bad usage, 130 interrupted); 1 when the
# preflight finds a problem. The images and the catalog lookups come from the same helpers as
# scripts/setup_instance.sh, so the two scripts always agree on what runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/setup_instance.sh disable=SC1091
. "$here/setup_instance.sh"

config_arg=
result_dir_arg=
force=0
dry_run=0
min_free_gb=10
extra=()
problems=()

say() { printf '[run] %s\n' "$*"; }
problem() {
    say "PROBLEM: $*"
    problems+=("$*")
}

usage() { sed -n '7,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        --config | --result-dir | --min-free-gb)
            if [[ $# -lt 2 ]]; then
                say "$1 needs a value"
                exit 2
            fi
            case $1 in
                --config) config_arg=$2 ;;
                --result-dir) result_dir_arg=$2 ;;
                --min-free-gb) min_free_gb=$2 ;;
            esac
            shift
            ;;
        --force) force=1 ;;
        --dry-run) dry_run=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        --)
            shift
            extra=("$@")
            break
            ;;
        *)
            say "unknown argument: $1"
            usage
            exit 2
            ;;
    esac
    shift
done
if ! [[ $min_free_gb =~ ^[0-9]+$ ]]; then
    say "--min-free-gb wants a whole number of GB, not '$min_free_gb'"
    exit 2
fi

# Paths given on the command line are relative to where you are; relative paths in the suite
# file (result_dir) are relative to the repository root, where servebench runs.
[[ -z $config_arg || $config_arg == /* ]] || config_arg=$PWD/$config_arg
[[ -z $result_dir_arg || $result_dir_arg == /* ]] || result_dir_arg=$PWD/$result_dir_arg
cd "$SB_ROOT"
config=$(sb_resolve_config "$config_arg")
if [[ ! -f $config ]]; then
    say "suite file not found: $config"
    exit 2
fi
result_dir=${result_dir_arg:-$(sb_config_value "$config" result_dir)}
result_dir=${result_dir:-results}

# The instance type from the EC2 instance metadata service (IMDSv2, link-local; answers only on
# EC2), for the price; nothing elsewhere.
instance_type_from_imds() {
    command -v curl >/dev/null 2>&1 || return 0
    local token
    token=$(curl -sS --max-time 1 -X PUT http://169.254.169.254/latest/api/token \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' 2>/dev/null) || return 0
    curl -sS --max-time 1 -H "X-aws-ec2-metadata-token: $token" \
        http://169.254.169.254/latest/meta-data/instance-type 2>/dev/null || true
}

# "<type> <usd per hour> <price date>" for this machine: the type EC2 reports, else the suite's
# `instance`; the price from catalogs/instances.toml.
instance_price() {
    local type price
    type=$(instance_type_from_imds)
    [[ $type =~ ^[a-z0-9]+\.[a-z0-9]+$ ]] || type=$(sb_config_value "$config" instance)
    [[ -n $type ]] || return 0
    price=$(sb_catalog_price "$type")
    printf '%s %s %s\n' "$type" "${price:-?}" "$(sb_catalog_date "$type")"
}

# Seconds since boot (billing starts when the instance enters `running`, close to boot).
uptime_s() { awk '{ printf "%d", $1 }' /proc/uptime 2>/dev/null || echo 0; }

print_cost() {
    local run_s=${1:-0} type price date up
    read -r type price date < <(instance_price) || true
    if [[ -z ${type:-} || ${price:-?} == "?" ]]; then
        say "cost: unknown (instance type ${type:-unknown} is not in catalogs/instances.toml)"
        return
    fi
    up=$(uptime_s)
    awk -v up="$up" -v run="$run_s" -v p="$price" -v t="$type" -v d="$date" 'BEGIN {
        printf "[run] cost so far: up %.2f h x $%s/h (%s on-demand, catalog of %s) = $%.2f", up / 3600, p, t, d, up / 3600 * p
        if (run > 0) printf "; this study %.1f min = $%.2f", run / 60, run / 3600 * p
        printf "\n[run]   plus the EBS volume (billed per GB-month until it is deleted) and any data transfer\n"
    }'
}

preflight() {
    say "== preflight for ${config#"$SB_ROOT"/} (results to $result_dir)"
    if command -v servebench >/dev/null 2>&1; then
        servebench_bin=$(command -v servebench)
    elif [[ -x $SB_ROOT/target/release/servebench ]]; then
        servebench_bin=$SB_ROOT/target/release/servebench
    else
        servebench_bin=servebench
        problem "servebench not found on PATH or in target/release: run scripts/setup_instance.sh"
    fi
    if [[ -x $servebench_bin ]]; then
        say "servebench: $servebench_bin ($("$servebench_bin" --version 2>/dev/null || echo '?'))"
        if ! "$servebench_bin" suite --help >/dev/null 2>&1; then
            problem "$servebench_bin has no 'suite' command (an old build): rerun scripts/setup_instance.sh to rebuild and reinstall it"
        fi
    fi

    # The GPU: visible, and free (a leftover engine holds most of its memory).
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        problem "nvidia-smi not found: this machine has no NVIDIA driver (run it on the GPU instance; scripts/setup_instance.sh checks the rest)"
    elif ! gpu=$(nvidia-smi --query-gpu=name,memory.used,memory.total,driver_version --format=csv,noheader,nounits 2>&1); then
        problem "nvidia-smi fails: $gpu"
    else
        local name used total driver
        # "NVIDIA A10G, 0, 23028, 595.91.07": split at the commas (the name has spaces).
        IFS=',' read -r name used total driver <<<"$(printf '%s' "$gpu" | head -n 1)"
        used=${used// /}
        total=${total// /}
        driver=${driver// /}
        say "GPU: ${name# } (${used}/${total} MiB used, driver $driver)"
        if [[ $used =~ ^[0-9]+$ ]] && ((used > 2048)); then
            say "note: ${used} MiB of GPU memory are already in use; the engines need most of it. What holds it:"
            nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader 2>/dev/null | sed 's/^/[run]     /' || true
        fi
        local major=${driver%%.*} engine image need
        while read -r engine image; do
            need=$(sb_image_min_driver "$image")
            if [[ $major =~ ^[0-9]+$ ]] && ((major < need)); then
                problem "driver $driver is older than branch $need, which $image needs; see docs/aws.md (troubleshooting: driver)"
            fi
        done < <(sb_config_images "$config")
    fi

    # Docker: servebench talks to the daemon's socket itself, so this user must be able to.
    if ! command -v docker >/dev/null 2>&1; then
        problem "docker not found: run scripts/setup_instance.sh"
        return
    fi
    if ! docker info >/dev/null 2>&1; then
        problem "docker does not answer for $(id -un): $(docker info 2>&1 | tail -n 1). If setup just added you to the docker group, log out and back in (or run 'newgrp docker')"
        return
    fi
    local engine image digest
    while read -r engine image; do
        if [[ $image == "?" ]]; then
            problem "a docker target with engine '$engine' names no image; add image = \"repo:tag\""
        elif digest=$(docker image inspect --format '{{if .RepoDigests}}{{index .RepoDigests 0}}{{else}}{{.Id}}{{end}}' "$image" 2>/dev/null); then
            say "image $image present ($digest)"
        else
            problem "image $image is not here: run scripts/setup_instance.sh (or docker pull $image) first, so the study does not stop for a multi-GB download"
        fi
    done < <(sb_config_images "$config")
    local leftovers
    leftovers=$(docker ps -a --filter label=servebench=1 --format '{{.Names}} ({{.Status}})' 2>/dev/null || true)
    if [[ -n $leftovers ]]; then
        say "note: servebench containers from an earlier run are still here (they hold GPU memory and ports):"
        printf '%s\n' "$leftovers" | sed 's/^/[run]     /'
        say "      remove them with: docker rm -f \$(docker ps -aq --filter label=servebench=1)"
    fi

    # Disk: model weights go to the Hugging Face cache; engine logs and results are small.
    local cache free
    cache=$(sb_hf_cache)
    free=$(sb_free_gb "$cache")
    if [[ -n $free ]] && ((free < min_free_gb)); then
        problem "only $free GB free for the model cache $cache (need $min_free_gb; --min-free-gb changes this). Free space with 'docker system prune' or grow the volume"
    else
        say "model cache $cache: ${free:-?} GB free (need $min_free_gb)"
    fi
    local droot dfree
    droot=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
    dfree=$(sb_free_gb "$droot")
    if [[ -n $dfree ]] && ((dfree < 5)); then
        problem "only $dfree GB free under Docker's $droot; containers need some room for their logs and writable layers"
    fi

    if [[ -n ${HF_TOKEN:-} ]]; then
        say "HF_TOKEN is set (value not shown): passed to the engine containers only"
    else
        say "HF_TOKEN is not set: fine for public models such as facebook/opt-125m; gated ones need 'export HF_TOKEN=...'"
    fi
}

preflight
cmd=("${servebench_bin:-servebench}" suite "$config")
[[ -n $result_dir_arg ]] && cmd+=(--result-dir "$result_dir_arg")
((force)) && cmd+=(--force)
cmd+=("${extra[@]}")

if ((${#problems[@]})); then
    say "== preflight found ${#problems[@]} problem(s):"
    printf '[run]   - %s\n' "${problems[@]}"
    say "fix them (scripts/setup_instance.sh does most) and rerun"
    print_cost 0
    exit 1
fi

if ((dry_run)); then
    say "== dry run: preflight passed; would run: ${cmd[*]}"
    say "   with its output kept in $result_dir/logs/run_benchmarks_<time>.log"
    print_cost 0
    exit 0
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
log_dir=$result_dir/logs
mkdir -p "$log_dir"
log=$log_dir/run_benchmarks_$stamp.log
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
{
    echo "# scripts/run_benchmarks.sh on $(hostname) at $stamp"
    echo "# servebench: $("${cmd[0]}" --version 2>/dev/null || echo '?'); commit $(git -C "$SB_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "# instance: $(instance_price || true)"
    echo "# GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
    echo "# command: ${cmd[*]}"
} >"$log"
say "== running: ${cmd[*]}"
say "   console output also goes to $log"
# Containers servebench makes carry the label servebench=1 and their maker's pid. servebench
# tears them down itself; these lines are the safety net for when it cannot (killed, crashed).
containers_before=$(docker ps -aq --filter label=servebench=1 2>/dev/null | sort || true)
remove_leftovers() {
    local id pid name
    for id in $(docker ps -aq --filter label=servebench=1 2>/dev/null); do
        grep -qx "$id" <<<"$containers_before" && continue
        pid=$(docker inspect --format '{{index .Config.Labels "servebench.pid"}}' "$id" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            continue # its servebench still runs
        fi
        name=$(docker inspect --format '{{.Name}}' "$id" 2>/dev/null || echo "$id")
        say "removing container ${name#/}, left behind by this run (it holds GPU memory)"
        docker rm -f "$id" >/dev/null 2>&1 || say "could not remove $id: docker rm -f $id"
    done
}
start=$(date +%s)
# Ctrl-C reaches servebench too; this script waits for it, then cleans up and reports.
trap 'say "interrupted: waiting for servebench to stop"' INT
set +e
# tee ignores Ctrl-C so that servebench, which tears its containers down on Ctrl-C, can still
# write its last lines (and its partial summary) through it.
"${cmd[@]}" 2>&1 | (
    trap '' INT
    exec tee -a "$log"
)
rc=${PIPESTATUS[0]}
set -e
trap - INT
remove_leftovers
elapsed=$(($(date +%s) - start))

say "== servebench exited with status $rc after $((elapsed / 60)) min $((elapsed % 60)) s"
# The suite prints "report: …", "html: …", "csv: …"; fall back to the result folder's layout.
for kind in report html csv; do
    path=$(sed -nE "s/^${kind}:[[:space:]]+(.*)$/\\1/p" "$log" | tail -n 1)
    if [[ -z $path ]]; then
        case $kind in
            report) path=$result_dir/report.md ;;
            html) path=$result_dir/report.html ;;
            csv) path=$result_dir/benchmark_results_combined.csv ;;
        esac
    fi
    if [[ -f $path ]]; then
        say "$(printf '%-7s' "$kind:") $path"
    else
        say "$(printf '%-7s' "$kind:") (not written: $path)"
    fi
done
say "results: $result_dir/<framework>/benchmark_<workload>_<time>.json (+ .journal.jsonl)"
engine_logs=$(find "$result_dir" -name '*.log' -newer "$marker" ! -path "$log" 2>/dev/null | sort || true)
if [[ -n $engine_logs ]]; then
    say "engine logs:"
    printf '%s\n' "$engine_logs" | sed 's/^/[run]     /'
fi
say "this script's log: $log"
# The suite goes on past a target that cannot start (and notes it in the report): say so here
# too, since the exit status alone does not.
not_run=$(grep -cE 'could not be started|: skipped' "$log" || true)
if ((not_run > 0)); then
    say "WARNING: $not_run cell(s) did not run (an engine could not start or died); the engine logs"
    say "         and the report's notes say why. Fix it and rerun: finished cells are kept."
fi
if ((rc != 0)); then
    say "rerun the same command to resume: finished cells are kept (--force reruns them)"
fi
print_cost "$elapsed"
say "copy the results home and TERMINATE the instance when done (docs/aws.md, steps 8 and 9)"
exit "$rc"
