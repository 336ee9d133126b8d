#!/usr/bin/env bash
# Build ikllama's wheels into $DIST (default dist/):
#
#   bash scripts/build_wheels.sh core vulkan        # then: pip install --find-links dist "ikllama[vulkan]"
#
# Variants: core (the ikllama package; IKLLAMA_BACKEND as for pip install, `cpu` for a portable wheel),
# vulkan, cuda12, cuda13 (backends/<variant>/pyproject.toml: the same CMakeLists with IKLLAMA_VARIANT set,
# each in its own build dir build/{wheel_tag}-<variant>). CUDA plugins take cuBLAS from NVIDIA's PyPI wheels
# (a build requirement) and need nvcc of the same CUDA major; IKLLAMA_CUDA_ARCHS picks the architectures.
#
#   DIST                  output directory                                   [dist]
#   IKLLAMA_NO_ISOLATION  1: build with this Python's packages (pip --no-build-isolation) [0]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="${DIST:-$root/dist}"
python="${PYTHON:-$(command -v python3 || command -v python)}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR-$root}"
[ $# -gt 0 ] || { echo "usage: $0 core|vulkan|cuda12|cuda13 ..." >&2; exit 2; }
args=(--no-deps -w "$dist")
[ "${IKLLAMA_NO_ISOLATION:-0}" = 1 ] && args+=(--no-build-isolation)
mkdir -p "$dist"
for variant in "$@"; do
    case "$variant" in
        core) src="$root" ;;
        vulkan|cuda12|cuda13) src="$root/backends/$variant" ;;
        *) echo "build_wheels.sh: unknown variant '$variant' (core, vulkan, cuda12, cuda13)" >&2; exit 2 ;;
    esac
    start=$(date +%s)
    "$python" -m pip wheel "$src" "${args[@]}"
    echo "build_wheels.sh: $variant built in $(( $(date +%s) - start )) s"
done
ls -l "$dist"
