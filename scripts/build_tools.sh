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
export CCACHE_BASEDIR="${CCACHE_BASEDIR-$root}"
# The compiler and epoch scikit-build-core uses for the wheel, so that ccache serves both builds.
python="$(command -v python3 || command -v python)"
eval "$("$python" -c 'import sysconfig
for var, name in (("CC", "CC"), ("CXX", "CXX")):
    value = (sysconfig.get_config_var(name) or "").split()
    if value: print(f"export {var}=\"${{{var}:-{value[0]}}}\"")')"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1667997441}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

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
