#!/usr/bin/env bash
# Build llama.cpp's `llama-server` from source, from PyPI alone.
#
# Usage: scripts/real-engines/install_llamacpp.sh
#   env LLAMACPP_HOME   where the build and the binary go (default: ~/.cache/servebench/llamacpp,
#                       or $XDG_CACHE_HOME/servebench/llamacpp); the binary is $LLAMACPP_HOME/bin/llama-server
#       LLAMACPP_VENV   the small venv with CMake, Ninja and the GGUF writer (default: .venv-llamacpp)
#       LLAMACPP_JOBS   parallel compile jobs (default: 2; the machine has 2 cores)
#       PYTHON          the interpreter to build the venv from (default: python3)
#
# llama.cpp is not packaged for this Debian release and no download beyond the registries works,
# but the sdist of `llama-cpp-python` on PyPI carries the whole llama.cpp tree under
# vendor/llama.cpp. CMake and Ninja come from PyPI too. The build is Release, the one target
# `llama-server`, statically linked (one self-contained binary), without the prebuilt web UI
# (its default ON downloads web assets and fails here) and without OpenSSL. 6-10 min on 2 cores.
#
# Idempotent: a finished build leaves a marker holding a fingerprint of what was asked for
# (versions, flags, this CPU's instruction sets since the build is -march=native); a later run
# with the same fingerprint and a working binary returns at once. The binary lives outside the
# work tree by default so that a fresh clone on the same machine (CI) reuses it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
home_dir=${LLAMACPP_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/servebench/llamacpp}
venv=${LLAMACPP_VENV:-$root/.venv-llamacpp}
python=${PYTHON:-python3}
jobs=${LLAMACPP_JOBS:-2}

# Pinned so CI builds the same thing every time; bump together and re-run the check.
llama_cpp_python_version=0.3.36
cmake_version=4.1.2
ninja_version=1.13.0
# The venv also carries what make_tiny_gguf.py needs (the GGUF writer, the tokenizer trainer).
gguf_version=0.19.0
py_packages=("cmake==$cmake_version" "ninja==$ninja_version" "gguf==$gguf_version" tokenizers numpy)
cmake_flags=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_CURL=OFF
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_SERVER=ON
    -DGGML_BUILD_TESTS=OFF
    -DGGML_BUILD_EXAMPLES=OFF
)

log() { printf '[install-llamacpp] %s\n' "$*" >&2; }

cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | grep -E '^(avx|fma|f16c|sse4|amx)' | sort | tr '\n' ' ' || true)
fingerprint=$(
    {
        echo "llama-cpp-python=$llama_cpp_python_version"
        echo "cmake=$cmake_version ninja=$ninja_version"
        echo "flags=${cmake_flags[*]}"
        echo "cpu=$cpu_flags"
        echo "cc=$(cc --version 2>/dev/null | head -n1)"
    } | sha256sum | cut -d' ' -f1
)
bin=$home_dir/bin/llama-server
marker=$home_dir/.servebench-install-complete
venv_marker=$venv/.servebench-install-complete
venv_fingerprint=$(echo "${py_packages[*]}" | sha256sum | cut -d' ' -f1)

# ---- the venv (CMake, Ninja, gguf, tokenizers, numpy): seconds from pip's cache ---------------
if [[ -f $venv_marker && $(cat "$venv_marker") == "$venv_fingerprint" && -x $venv/bin/python ]]; then
    log "reusing $venv"
else
    if ! { [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import sys' 2>/dev/null; }; then
        log "creating $venv with $("$python" --version 2>&1)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    rm -f "$venv_marker"
    log "installing ${py_packages[*]} from PyPI"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${py_packages[@]}"
    echo "$venv_fingerprint" >"$venv_marker"
fi

# ---- llama-server ---------------------------------------------------------------------------------
if [[ -f $marker && $(cat "$marker") == "$fingerprint" && -x $bin ]] && "$bin" --version >/dev/null 2>&1; then
    log "reusing $bin (complete, fingerprint ${fingerprint:0:12})"
    exit 0
fi

start=$(date +%s)
rm -f "$marker"
mkdir -p "$home_dir/bin"
src_parent=$home_dir/src-$llama_cpp_python_version
src=$src_parent/llama_cpp_python-$llama_cpp_python_version/vendor/llama.cpp
if [[ ! -f $src/CMakeLists.txt ]]; then
    log "downloading the llama-cpp-python $llama_cpp_python_version sdist from PyPI"
    dl=$home_dir/download
    rm -rf "$dl" "$src_parent"
    mkdir -p "$dl" "$src_parent"
    "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary llama-cpp-python --dest "$dl" "llama-cpp-python==$llama_cpp_python_version"
    sdist=$(find "$dl" -maxdepth 1 -name 'llama_cpp_python-*.tar.gz' | head -n1)
    [[ -n $sdist ]] || { log "error: pip downloaded no sdist into $dl"; exit 1; }
    tar -xzf "$sdist" -C "$src_parent"
    rm -rf "$dl"
    [[ -f $src/CMakeLists.txt ]] || { log "error: the sdist has no vendor/llama.cpp/CMakeLists.txt"; exit 1; }
fi

build=$home_dir/build
export PATH=$venv/bin:$PATH
if [[ ! -f $build/.servebench-configured || $(cat "$build/.servebench-configured") != "$fingerprint" ]]; then
    log "configuring ($(cmake --version | head -n1), ninja $(ninja --version))"
    rm -rf "$build"
    cmake -S "$src" -B "$build" -G Ninja "${cmake_flags[@]}" >"$home_dir/configure.log" 2>&1 \
        || { tail -n 40 "$home_dir/configure.log" >&2; log "error: cmake configure failed (log: $home_dir/configure.log)"; exit 1; }
    echo "$fingerprint" >"$build/.servebench-configured"
fi
log "building llama-server with $jobs jobs (6-10 min on 2 cores; log: $home_dir/build.log)"
# nice: others compile on the same 2 cores; an interrupted build resumes where it stopped.
nice -n 10 cmake --build "$build" --target llama-server -j "$jobs" >"$home_dir/build.log" 2>&1 \
    || { tail -n 40 "$home_dir/build.log" >&2; log "error: the build failed (log: $home_dir/build.log)"; exit 1; }

built=$(find "$build" -type f -name llama-server -perm -u+x | head -n1)
[[ -n $built ]] || { log "error: the build made no llama-server binary"; exit 1; }
cp "$built" "$bin.tmp"
mv "$bin.tmp" "$bin"
"$bin" --version >"$home_dir/version.txt" 2>&1 || { cat "$home_dir/version.txt" >&2; log "error: $bin --version failed"; exit 1; }
echo "$fingerprint" >"$marker"
log "done in $(($(date +%s) - start)) s: $bin ($(du -h "$bin" | cut -f1)), $(grep -m1 -i version "$home_dir/version.txt" || true)"
