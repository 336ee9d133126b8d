#!/usr/bin/env bash
# Build ik_llama.cpp's own tools (llama-bench, llama-batched-bench, llama-perplexity, llama-cli,
# llama-simple, llama-quantize, rpc-server) from the vendored tree with the same backend flags as
# the Python package. Golden tests and scripts/bench.py compare against them.
#
# When the package's own CMake tree exists (build/{wheel_tag}, left by `pip install .` with the same
# IKLLAMA_BACKEND), the tools are added to that tree and link its libllama/libggml: ik_llama.cpp is compiled
# once on a fresh machine. Otherwise a separate tree (IKLLAMA_TOOLS_BUILD) is configured.
#
#   IKLLAMA_TOOLS_DIR    where the binaries go                                   [build/tools/bin]
#   IKLLAMA_TOOLS_BUILD  a CMake build directory to use instead of the wheel's   [the wheel's, else build/tools]
#   IKLLAMA_BACKEND      as for pip install (native, cpu, cuda, ...)             [native]
#   IKLLAMA_TOOLS_TARGET ikllama_tools (all), or ikllama_test_tools (what the tests run: no llama-server)
#                                                                                [ikllama_tools]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${IKLLAMA_TOOLS_DIR:-$root/build/tools/bin}"
backend="${IKLLAMA_BACKEND:-native}"
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

# The core wheel's tree: build/cp310-abi3-<platform> (plugins use build/<tag>-<variant>), same backend.
wheel_tree() {
    local cache
    for cache in "$root"/build/cp3*-abi3-*/CMakeCache.txt; do
        [ -f "$cache" ] || continue
        case "$(dirname "$cache")" in *-vulkan|*-cuda12|*-cuda13) continue ;; esac
        grep -qx "IKLLAMA_BACKEND:STRING=$backend" "$cache" || continue
        [ -z "$(sed -n 's/^IKLLAMA_VARIANT:[A-Z]*=//p' "$cache")" ] || continue
        dirname "$cache"
        return
    done
}

build="${IKLLAMA_TOOLS_BUILD:-$(wheel_tree)}"
if [ -n "$build" ] && [ -z "${IKLLAMA_TOOLS_BUILD:-}" ]; then
    echo "build_tools.sh: adding the tools to the package's build tree $build"
    # Only the tools are added (EXCLUDE_FROM_ALL): pip's next build of this tree still builds the package alone.
    cmake -S "$root" -B "$build" \
        -DPython_EXECUTABLE="$python" \
        -DIKLLAMA_BUILD_TOOLS=ON \
        -DIKLLAMA_TOOLS_OUTPUT_DIR="$out" >/dev/null
else
    build="${build:-$root/build/tools}"
    cmake -S "$root" -B "$build" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release \
        -DPython_EXECUTABLE="$python" \
        -DIKLLAMA_BUILD_EXTENSION=OFF \
        -DIKLLAMA_BUILD_TOOLS=ON \
        -DIKLLAMA_BACKEND="$backend" \
        -DIKLLAMA_TOOLS_OUTPUT_DIR="$out" >/dev/null
fi
cmake --build "$build" --target "${IKLLAMA_TOOLS_TARGET:-ikllama_tools}"
echo "ik tools in $out:"
ls "$out"
