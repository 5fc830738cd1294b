#!/usr/bin/env bash
# Prepare an EC2 GPU instance (AWS Deep Learning AMI, Ubuntu 22.04 or 20.04) for the seed study
# with real engines: NVIDIA driver, Docker, the NVIDIA container toolkit, a Rust toolchain,
# servebench itself, the pinned vLLM and SGLang images and the Hugging Face cache. See docs/aws.md.
#
# Usage: scripts/setup_instance.sh [--dry-run] [--config FILE] [--prefix DIR] [--skip-build]
#                                  [--skip-pull] [--skip-gpu-check]
#   --dry-run         check everything, change nothing; print each command it would run
#   --config FILE     the suite file whose docker images to pull (default: configs/seed-aws-g5.toml)
#   --prefix DIR      where to install the servebench binary (default: ~/.local/bin)
#   --skip-build      do not build or install servebench
#   --skip-pull       do not pull images (and skip the in-container GPU checks)
#   --skip-gpu-check  do not start containers to check the GPU from inside the images
#
# Idempotent: every step checks first and acts only when something is missing, so running it a
# second time changes nothing. Each step says what it checked and why it matters; at the end a
# summary lists what was fine, what it changed and what is left for you to fix (exit status 1
# when anything is left).
#
# This script needs the internet (crates.io for the build, Docker Hub for the images, the
# official rustup installer when cargo is missing): it is meant for the cloud machine, which has
# it. It never prints HF_TOKEN's value.
#
# The images are kept in ONE place: the suite file names them (`image = ...` in its docker
# targets), so what is pulled here is exactly what `servebench suite` runs; a docker target
# without `image` gets the launch module's pinned default, read from src/launch/docker.rs
# (VLLM_IMAGE, SGLANG_IMAGE). scripts/run_benchmarks.sh sources this file for the same
# functions, so both scripts always agree.
set -euo pipefail

SB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SB_DEFAULT_CONFIG=configs/seed-aws-g5.toml
SB_LAUNCH_SOURCE=$SB_ROOT/src/launch/docker.rs
# servebench's declared minimum Rust (Cargo.toml rust-version).
SB_MIN_RUST=1.85
# The pinned images are CUDA 13 builds; CUDA 13 needs an NVIDIA driver of branch 580 or newer.
# CUDA 12 images (tags with -cu12x) run on older drivers.
SB_MIN_DRIVER_CUDA13=580
SB_MIN_DRIVER_CUDA12=525

# ---------------------------------------------------------------------------------------------
# Shared helpers (also used by run_benchmarks.sh)
# ---------------------------------------------------------------------------------------------

# The launch module's pinned default for VLLM_IMAGE or SGLANG_IMAGE, from the Rust source.
sb_default_image() {
    local const=$1
    [[ -r $SB_LAUNCH_SOURCE ]] || return 0
    sed -nE "s/^pub const ${const}: &str = \"([^\"]+)\";.*/\\1/p" "$SB_LAUNCH_SOURCE" | head -n 1
}

# The suite file to use when none is given: the seed study against real engines.
sb_resolve_config() {
    printf '%s\n' "${1:-$SB_ROOT/$SB_DEFAULT_CONFIG}"
}

# One line per docker target of a suite file: "<engine> <image>". A target is `[[targets]]` with
# its launch spec in `[targets.launch]` (kind, engine, image, ...). A simple line reader for the
# TOML this project writes (`key = "value"`, one per line), not a general TOML parser.
sb_config_images() {
    local config=$1
    awk -v vdef="$(sb_default_image VLLM_IMAGE)" -v sdef="$(sb_default_image SGLANG_IMAGE)" '
        function val(line) { sub(/^[^=]*=[[:space:]]*"/, "", line); sub(/".*$/, "", line); return line }
        function key(line) { sub(/^[[:space:]]*/, "", line); sub(/[[:space:]]*=.*$/, "", line); return line }
        function flush() {
            if (kind == "docker") {
                img = image
                if (img == "" && engine == "vllm") img = vdef
                if (img == "" && engine == "sglang") img = sdef
                if (img == "") img = "?"
                print engine, img
            }
            kind = ""; engine = ""; image = ""; in_target = 0; section = ""
        }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*\[\[targets\]\]/ { flush(); in_target = 1; section = "top"; next }
        /^[[:space:]]*\[targets\.launch\][[:space:]]*(#.*)?$/ { section = "launch"; next }
        /^[[:space:]]*\[targets\./ { section = "other"; next }
        /^[[:space:]]*\[/ { flush(); next }
        in_target && section == "launch" && /=/ {
            k = key($0)
            if (k == "kind") kind = val($0)
            else if (k == "engine") engine = val($0)
            else if (k == "image") image = val($0)
        }
        END { flush() }
    ' "$config"
}

# A top-level string value of a suite file (title, result_dir, instance).
sb_config_value() {
    local config=$1 want=$2
    awk -v want="$want" '
        /^[[:space:]]*\[/ { exit }
        /^[[:space:]]*#/ { next }
        /=/ {
            k = $0; sub(/^[[:space:]]*/, "", k); sub(/[[:space:]]*=.*$/, "", k)
            if (k == want) { v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*$/, "", v); print v; exit }
        }
    ' "$config"
}

# The hourly price of an instance type in catalogs/instances.toml, or nothing.
sb_catalog_price() {
    local instance=$1 catalog=${2:-$SB_ROOT/catalogs/instances.toml}
    [[ -r $catalog ]] || return 0
    awk -v want="$instance" '
        /^\[\[instance\]\]/ { name = "" }
        /^name[[:space:]]*=/ { name = $0; sub(/^[^"]*"/, "", name); sub(/".*$/, "", name) }
        /^usd_per_hour[[:space:]]*=/ && name == want { p = $0; sub(/^[^=]*=[[:space:]]*/, "", p); sub(/[[:space:]#].*$/, "", p); print p; exit }
    ' "$catalog"
}

# The `date` of an instance's catalog entry, or nothing.
sb_catalog_date() {
    local instance=$1 catalog=${2:-$SB_ROOT/catalogs/instances.toml}
    [[ -r $catalog ]] || return 0
    awk -v want="$instance" '
        /^\[\[instance\]\]/ { name = "" }
        /^name[[:space:]]*=/ { name = $0; sub(/^[^"]*"/, "", name); sub(/".*$/, "", name) }
        /^date[[:space:]]*=/ && name == want { d = $0; sub(/^[^"]*"/, "", d); sub(/".*$/, "", d); print d; exit }
    ' "$catalog"
}

# The smallest driver branch an image needs: CUDA 12 builds are tagged -cu12x; everything else
# the project pins is a CUDA 13 build.
sb_image_min_driver() {
    case $1 in
        *-cu12*) printf '%s\n' "$SB_MIN_DRIVER_CUDA12" ;;
        *) printf '%s\n' "$SB_MIN_DRIVER_CUDA13" ;;
    esac
}

# The NVIDIA driver version (e.g. 595.91.07), or nothing when nvidia-smi is missing or fails.
sb_driver_version() {
    command -v nvidia-smi >/dev/null 2>&1 || return 0
    nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ' || true
}

# Free gigabytes on the file system holding a path (its nearest existing parent).
sb_free_gb() {
    local path=$1
    while [[ ! -e $path && $path != / ]]; do path=$(dirname "$path"); done
    df -P -BG "$path" 2>/dev/null | awk 'NR == 2 { gsub(/G/, "", $4); print $4 }'
}

# The Hugging Face cache the launch module binds into the engine containers.
sb_hf_cache() {
    printf '%s\n' "${HF_HOME:-$HOME/.cache/huggingface}"
}

# ---------------------------------------------------------------------------------------------
# The setup itself
# ---------------------------------------------------------------------------------------------

dry_run=0
config_arg=
prefix=$HOME/.local/bin
skip_build=0
skip_pull=0
skip_gpu_check=0
docker_cmd=(docker)
oks=()
changes=()
problems=()

say() { printf '[setup] %s\n' "$*"; }
step() { printf '\n[setup] == %s\n' "$*"; }
ok() {
    say "ok: $*"
    oks+=("$*")
}
changed() { changes+=("$*"); }
problem() {
    say "PROBLEM: $*"
    problems+=("$*")
}

# Runs a command that changes the machine, or only prints it under --dry-run.
act() {
    if ((dry_run)); then
        say "would run: $*"
        return 0
    fi
    say "running: $*"
    "$@"
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        act "$@"
    else
        act sudo "$@"
    fi
}

usage() {
    sed -n '6,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

parse_args() {
    while (($#)); do
        case $1 in
            --dry-run) dry_run=1 ;;
            --config)
                [[ $# -ge 2 ]] || {
                    say "--config needs a file"
                    exit 2
                }
                config_arg=$2
                shift
                ;;
            --prefix)
                [[ $# -ge 2 ]] || {
                    say "--prefix needs a folder"
                    exit 2
                }
                prefix=$2
                shift
                ;;
            --skip-build) skip_build=1 ;;
            --skip-pull) skip_pull=1 ;;
            --skip-gpu-check) skip_gpu_check=1 ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                say "unknown argument: $1"
                usage
                exit 2
                ;;
        esac
        shift
    done
}

check_os() {
    step "1/9 operating system"
    if [[ -r /etc/os-release ]]; then
        local name version
        # shellcheck disable=SC1091
        name=$(. /etc/os-release && printf '%s' "${NAME:-?}")
        # shellcheck disable=SC1091
        version=$(. /etc/os-release && printf '%s' "${VERSION_ID:-?}")
        case "$name $version" in
            "Ubuntu 22.04" | "Ubuntu 24.04") ok "$name $version" ;;
            "Ubuntu 20.04") ok "$name $version (works; its standard support ended in May 2025, prefer the 22.04 Deep Learning AMI)" ;;
            *) say "note: $name $version is not the Deep Learning AMI's Ubuntu; the checks below still apply" ;;
        esac
    fi
    local arch
    arch=$(uname -m)
    if [[ $arch != x86_64 ]]; then
        say "note: $arch machine; g5/g6 instances are x86_64 and the steps here were written for them"
    fi
}

check_driver() {
    step "2/9 NVIDIA driver (the engines need it to see the GPU)"
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        problem "nvidia-smi not found: no NVIDIA driver. Launch the instance from the AWS Deep Learning Base (OSS Nvidia Driver) GPU AMI, which ships the driver, or install one (docs/aws.md, troubleshooting)"
        return
    fi
    local gpus
    if ! gpus=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1); then
        problem "nvidia-smi fails: $gpus. On a fresh instance a reboot after a kernel update usually fixes this (sudo reboot)"
        return
    fi
    local driver major
    driver=$(sb_driver_version)
    major=${driver%%.*}
    ok "GPU(s): $(printf '%s' "$gpus" | paste -sd';' -)"
    local engine image need
    while read -r engine image; do
        [[ -n $image ]] || continue
        need=$(sb_image_min_driver "$image")
        if [[ $major =~ ^[0-9]+$ ]] && ((major < need)); then
            problem "driver $driver is older than branch $need, which $image needs (CUDA 13). Use a newer Deep Learning AMI, or put CUDA 12 images in $(basename "$config"): vllm/vllm-openai:<tag>-cu129 and lmsysorg/sglang:v0.5.19-cu129 (SGLang's last CUDA 12 image)"
        fi
    done < <(sb_config_images "$config")
}

check_docker() {
    step "3/9 Docker (servebench starts the engines through the Docker Engine API)"
    if ! command -v docker >/dev/null 2>&1; then
        problem "docker not found. The Deep Learning AMI ships Docker; elsewhere install Docker Engine (https://docs.docker.com/engine/install/ubuntu/) and rerun"
        return 1
    fi
    if docker info >/dev/null 2>&1; then
        ok "docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?') answers for $(id -un)"
        return 0
    fi
    local started=0
    if command -v systemctl >/dev/null 2>&1 && ! systemctl is-active --quiet docker; then
        say "the Docker daemon is not running: starting it (and enabling it at boot)"
        if as_root systemctl enable --now docker; then
            changed "start the Docker daemon and enable it at boot"
            started=1
        else
            problem "could not start Docker (see the message above): sudo journalctl -u docker says why"
            return 1
        fi
    fi
    if ! ((dry_run)) && docker info >/dev/null 2>&1; then
        ok "docker answers for $(id -un)"
        return 0
    fi
    # The daemon runs but this user may not use its socket; servebench needs that socket.
    if [[ $(id -u) -ne 0 ]] && sudo -n docker info >/dev/null 2>&1; then
        say "$(id -un) may not use the Docker socket; servebench talks to it directly, so add $(id -un) to the docker group"
        as_root usermod -aG docker "$(id -un)" || {
            problem "could not add $(id -un) to the docker group (see above)"
            return 1
        }
        changed "add $(id -un) to the docker group (then log out and back in, or run 'newgrp docker', before scripts/run_benchmarks.sh)"
        docker_cmd=(sudo docker)
        return 0
    fi
    if ((dry_run && started)); then
        say "would check again once the daemon runs"
        return 1
    fi
    problem "docker does not answer: $(docker info 2>&1 | tail -n 1)"
    return 1
}

check_toolkit() {
    step "4/9 NVIDIA container toolkit (gives containers the GPU: docker run --gpus all)"
    local runtimes
    runtimes=$("${docker_cmd[@]}" info --format '{{json .Runtimes}}' 2>/dev/null || true)
    if [[ $runtimes == *nvidia* ]]; then
        ok "Docker lists the nvidia runtime"
        return
    fi
    if command -v nvidia-ctk >/dev/null 2>&1; then
        say "the toolkit is installed but not registered with Docker: registering it (restarts Docker)"
        if as_root nvidia-ctk runtime configure --runtime=docker && as_root systemctl restart docker; then
            changed "register the nvidia runtime with Docker (nvidia-ctk) and restart Docker"
        else
            problem "could not register the nvidia runtime with Docker (see above)"
        fi
    elif command -v nvidia-container-cli >/dev/null 2>&1; then
        say "note: nvidia-container-cli is present but nvidia-ctk is not; the GPU check after the pulls decides"
    else
        problem "the NVIDIA container toolkit is missing. The Deep Learning AMI ships it; elsewhere follow NVIDIA's guide (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html) and rerun"
    fi
}

rust_version_ok() {
    local have
    have=$(rustc --version 2>/dev/null | awk '{ print $2 }')
    [[ -n $have ]] || return 1
    [[ $(printf '%s\n%s\n' "$SB_MIN_RUST" "$have" | sort -V | head -n 1) == "$SB_MIN_RUST" ]]
}

check_rust() {
    step "5/9 Rust toolchain (to build servebench; Rust $SB_MIN_RUST or newer)"
    if [[ -f $HOME/.cargo/env ]] && ! command -v cargo >/dev/null 2>&1; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    if ! command -v cc >/dev/null 2>&1 || ! command -v c++ >/dev/null 2>&1; then
        say "a C/C++ compiler is missing (some dependencies compile C): installing build-essential"
        if as_root apt-get update && as_root apt-get install -y build-essential; then
            changed "install build-essential (C/C++ compilers)"
        else
            problem "could not install build-essential (see above); the build needs a C/C++ compiler"
        fi
    fi
    if command -v cargo >/dev/null 2>&1; then
        if rust_version_ok; then
            ok "$(cargo --version 2>/dev/null) / $(rustc --version 2>/dev/null)"
            return
        fi
        local have
        have=$(rustc --version 2>/dev/null || true)
        if command -v rustup >/dev/null 2>&1; then
            if [[ -z $have ]]; then
                say "rustup has no default toolchain: installing the stable one"
                act rustup default stable || problem "rustup default stable failed (see above)"
                changed "install the stable Rust toolchain (rustup default stable)"
            else
                say "$have is older than $SB_MIN_RUST: updating the stable toolchain"
                act rustup update stable || problem "rustup update stable failed (see above)"
                changed "update the stable Rust toolchain (rustup)"
            fi
            return
        fi
        problem "${have:-rustc} is not Rust $SB_MIN_RUST or newer and not managed by rustup; remove the distribution's cargo/rustc packages and rerun (rustup is then installed)"
        return
    fi
    # No cargo: the official installer (the cloud machine has internet; nothing else is fetched
    # from outside crates.io and Docker Hub).
    say "cargo not found: installing Rust with the official rustup installer (https://sh.rustup.rs)"
    if ((dry_run)); then
        say "would run: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal"
    elif curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    else
        problem "the rustup installer failed (see above); install Rust from https://rustup.rs and rerun"
        return
    fi
    changed "install Rust with rustup (~/.cargo; new shells get it from ~/.profile)"
}

build_servebench() {
    step "6/9 servebench (cargo build --release, then install to $prefix)"
    if ((skip_build)); then
        say "skipped (--skip-build)"
        return
    fi
    if ! ((dry_run)) && ! command -v cargo >/dev/null 2>&1; then
        problem "cannot build: cargo is not available (see step 5)"
        return
    fi
    local locked=()
    [[ -f $SB_ROOT/Cargo.lock ]] && locked=(--locked)
    # cargo itself is idempotent: an up-to-date build does nothing.
    if ! act cargo build --release "${locked[@]}" --manifest-path "$SB_ROOT/Cargo.toml"; then
        problem "cargo build --release failed (see the compiler's message above)"
        return
    fi
    local built=$SB_ROOT/target/release/servebench
    local dest=$prefix/servebench
    if ((dry_run)); then
        say "would install $built to $dest (when it differs)"
    elif [[ -f $dest ]] && cmp -s "$built" "$dest"; then
        ok "servebench $("$dest" --version 2>/dev/null | awk '{ print $2 }') already installed at $dest"
    else
        if act install -D -m 0755 "$built" "$dest"; then
            changed "install servebench at $dest"
        else
            problem "could not install $built to $dest; choose another --prefix"
        fi
    fi
    case ":$PATH:" in
        *":$prefix:"*) ;;
        *) say "note: $prefix is not on PATH in this shell; Ubuntu adds ~/.local/bin at the next login, or run: export PATH=\"$prefix:\$PATH\"" ;;
    esac
}

pull_images() {
    step "7/9 engine images (pinned in $(basename "$config"))"
    local engine image
    local -a images=()
    while read -r engine image; do
        [[ -n $image ]] || continue
        if [[ $image == "?" ]]; then
            problem "a docker target with engine '$engine' names no image and has no pinned default; add image = \"repo:tag\" to it"
            continue
        fi
        images+=("$image")
    done < <(sb_config_images "$config")
    if ((${#images[@]} == 0)); then
        problem "$config has no docker targets: nothing to pull (is it the right suite file?)"
        return
    fi
    if ((skip_pull)); then
        say "skipped (--skip-pull): ${images[*]}"
        return
    fi
    local root free missing=0
    for image in "${images[@]}"; do
        "${docker_cmd[@]}" image inspect "$image" >/dev/null 2>&1 || missing=$((missing + 1))
    done
    root=$("${docker_cmd[@]}" info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
    free=$(sb_free_gb "$root")
    if ((missing > 0)) && [[ -n $free ]] && ((free < 60)); then
        say "note: $free GB free on $root for $missing image(s) to pull; each engine image unpacks to many GB, so this may not be enough (100 GB root volume recommended; docs/aws.md)"
    fi
    for image in "${images[@]}"; do
        if "${docker_cmd[@]}" image inspect "$image" >/dev/null 2>&1; then
            ok "$image present ($("${docker_cmd[@]}" image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.1f GB", $1 / 1e9 }'))"
        else
            say "$image is not here: pull it (several GB; minutes)"
            if act "${docker_cmd[@]}" pull "$image"; then
                changed "pull $image"
            else
                problem "docker pull $image failed (tag gone, rate limit or disk full?); see the message above"
            fi
        fi
    done
}

# Python run inside each image: the CUDA runtime in the image must work with the host driver and
# the GPU (an A10G is sm_86), which `nvidia-smi` alone does not prove.
read -r -d '' SB_TORCH_CHECK <<'EOF' || true
import torch
assert torch.cuda.is_available(), "torch.cuda.is_available() is False (driver too old for this image's CUDA?)"
x = torch.ones(256, 256, device="cuda", dtype=torch.float16)
assert float((x @ x)[0, 0]) == 256.0
major, minor = torch.cuda.get_device_capability(0)
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) ran a matmul on {torch.cuda.get_device_name(0)} (sm_{major}{minor})")
EOF

# The line of a command's output that says what went wrong: the last that mentions an error (a
# Python traceback ends with the exception), else the last line.
last_error() {
    local line
    line=$(printf '%s\n' "$1" | grep -E 'Error|error:' | tail -n 1 || true)
    [[ -n $line ]] || line=$(printf '%s\n' "$1" | grep -v '^[[:space:]]*$' | tail -n 1)
    printf '%s' "$line"
}

gpu_container_check() {
    step "8/9 the GPU from inside the engine images"
    if ((skip_pull || skip_gpu_check)); then
        say "skipped (--skip-pull / --skip-gpu-check)"
        return
    fi
    local engine image out
    while read -r engine image; do
        [[ -n $image && $image != "?" ]] || continue
        if ! "${docker_cmd[@]}" image inspect "$image" >/dev/null 2>&1; then
            ((dry_run)) && say "would check the GPU inside $image once pulled"
            continue
        fi
        if [[ $engine == vllm ]]; then
            # The container toolkit check, with the vLLM image itself so nothing extra is pulled.
            if out=$("${docker_cmd[@]}" run --rm --gpus all --entrypoint nvidia-smi "$image" -L 2>&1); then
                ok "docker run --gpus all works: $(printf '%s' "$out" | head -n 1)"
            else
                problem "docker run --gpus all fails: $(last_error "$out"). Check the container toolkit (step 4): sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker"
                return
            fi
        fi
        local py=$SB_TORCH_CHECK
        # SGLang loads its compiled kernels (sgl_kernel) at start; a build without this GPU's
        # architecture fails here instead of minutes into the study.
        [[ $engine == sglang ]] && py=$'import sgl_kernel\n'"$py"
        if out=$("${docker_cmd[@]}" run --rm --gpus all --entrypoint python3 "$image" -c "$py" 2>&1); then
            ok "$engine: $(printf '%s' "$out" | tail -n 1)"
        else
            problem "$engine image $image cannot use the GPU: $(last_error "$out")"
        fi
    done < <(sb_config_images "$config")
}

check_hf() {
    step "9/9 Hugging Face cache and token"
    local cache
    cache=$(sb_hf_cache)
    if [[ -d $cache ]]; then
        ok "model cache $cache exists ($(sb_free_gb "$cache") GB free there)"
    else
        act mkdir -p "$cache" || problem "cannot create $cache"
        changed "create the model cache $cache (bound into the engine containers)"
    fi
    if [[ -n ${HF_TOKEN:-} ]]; then
        ok "HF_TOKEN is set (value not shown); servebench passes it to the engine containers and writes it nowhere"
    else
        say "HF_TOKEN is not set: fine for facebook/opt-125m (public). Gated models (Llama, Gemma, ...) need 'export HF_TOKEN=hf_...' in the shell that runs scripts/run_benchmarks.sh; never put it in a config file"
    fi
}

summary() {
    printf '\n[setup] == summary%s\n' "$( ((dry_run)) && echo ' (dry run: nothing was changed)')"
    local line
    for line in "${oks[@]}"; do printf '  ok       %s\n' "$line"; done
    local label="done"
    ((dry_run)) && label=would
    for line in "${changes[@]}"; do printf '  %-8s %s\n' "$label" "$line"; done
    for line in "${problems[@]}"; do printf '  PROBLEM  %s\n' "$line"; done
    if ((${#problems[@]})); then
        printf '\n[setup] %d problem(s) left: fix them and rerun this script (it only redoes what is missing).\n' "${#problems[@]}"
        return 1
    fi
    printf '\n[setup] ready. Next: scripts/run_benchmarks.sh --config %s\n' "${config#"$SB_ROOT"/}"
}

main() {
    parse_args "$@"
    config=$(sb_resolve_config "$config_arg")
    if [[ ! -f $config ]]; then
        say "suite file not found: $config"
        exit 2
    fi
    say "repository $SB_ROOT; suite file ${config#"$SB_ROOT"/}$( ((dry_run)) && echo '; DRY RUN: checks only, nothing is changed')"
    check_os
    check_driver
    local docker_ok=1
    check_docker || docker_ok=0
    if ((docker_ok)); then
        check_toolkit
    fi
    check_rust
    build_servebench
    if ((docker_ok)); then
        pull_images
        gpu_container_check
    else
        say "skipping the image pulls and GPU checks: Docker is not usable (step 3)"
    fi
    check_hf
    summary
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
