#!/usr/bin/env bash
# Build ik_llama.cpp's own tools (llama-bench, llama-batched-bench, llama-perplexity, llama-cli,
# llama-simple, llama-quantize, rpc-server) from the vendored tree with the same backend flags as
# the Python package. Golden tests and scripts/bench.py compare against them.
#
#   IKLLAMA_TOOLS_DIR    where the binaries (and their libllama/libggml) go  [build/tools/bin]
#   IKLLAMA_TOOLS_BUILD  the CMake build directory (kept for incremental builds) [build/tools]
#   IKLLAMA_BACKEND      as for pip install (native, cpu, cuda, ...)          [native]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${IKLLAMA_TOOLS_DIR:-$root/build/tools/bin}"
# Same depth as the wheel's build/{wheel_tag}: with CCACHE_BASEDIR both hit the same ccache entries.
build="${IKLLAMA_TOOLS_BUILD:-$root/build/tools}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python="$(command -v python3 || command -v python)"

cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DPython_EXECUTABLE="$python" \
    -DIKLLAMA_BUILD_EXTENSION=OFF \
    -DIKLLAMA_BUILD_TOOLS=ON \
    -DIKLLAMA_BACKEND="${IKLLAMA_BACKEND:-native}" \
    -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$out" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$out" \
    -DCMAKE_BUILD_RPATH='$ORIGIN' >/dev/null
cmake --build "$build" --target ikllama_tools
echo "ik tools in $out:"
ls "$out"
