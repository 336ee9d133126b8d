#!/usr/bin/env bash
# Compile-check the CUDA plugin (IKLLAMA_VARIANT=cuda<major of this nvcc>) without a GPU or a driver.
#
#   bash scripts/check_cuda_build.sh          # smoke: representative CUDA objects + a link check (CI)
#   bash scripts/check_cuda_build.sh full     # every CUDA object and the plugin's cffi module (hours on 2 cores)
#
# nvcc is this machine's (CUDACXX or PATH); cuBLAS and a recent cmake come from PyPI into a private venv
# (nothing is installed into the system Python). GGML_CUDA_NO_VMM=ON drops the link against the driver's
# libcuda.so, which only a driver (or a toolkit's stubs) provides; release wheels keep VMM and link the stub.
#
#   IKLLAMA_CUDA_ARCHS        CUDA architectures [90-real]
#   IKLLAMA_CUDA_CHECK_DIR    work directory (venv + CMake tree) [build/cuda-check]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-smoke}"
work="${IKLLAMA_CUDA_CHECK_DIR:-$root/build/cuda-check}"
nvcc="${CUDACXX:-$(command -v nvcc || true)}"
[ -n "$nvcc" ] || { echo "check_cuda_build.sh: no nvcc (set CUDACXX or put nvcc on PATH)" >&2; exit 2; }
major="$("$nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
nvcc_real="$("$nvcc" -v --dryrun -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)"
cuda_root="${CUDAToolkit_ROOT:-${nvcc_real:-$(dirname "$(dirname "$(readlink -f "$nvcc")")")}}"
variant="cuda$major"
case "$major" in
    13) cublas_req="nvidia-cublas>=13.0,<14"; cublas_dir=cu13 ;;
    12) cublas_req="nvidia-cublas-cu12>=12.4,<13"; cublas_dir=cublas ;;
    *) echo "check_cuda_build.sh: CUDA $major is not a plugin variant (12 or 13)" >&2; exit 2 ;;
esac
export CCACHE_BASEDIR="${CCACHE_BASEDIR-$root}"
start=$(date +%s)

if [ ! -x "$work/venv/bin/cmake" ] || ! "$work/venv/bin/python" -c "import nvidia, cffi" 2>/dev/null; then
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q "cmake>=3.28" ninja "cffi>=1.17" "$cublas_req"
fi
py="$work/venv/bin/python"
nvlib="$("$py" -c "import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], '$cublas_dir', 'lib'))")"
echo "check_cuda_build.sh: nvcc $("$nvcc" --version | tail -1) at $cuda_root; cuBLAS $nvlib; $("$work/venv/bin/cmake" --version | head -1)"

"$work/venv/bin/cmake" -S "$root" -B "$work/tree" -G Ninja -DCMAKE_MAKE_PROGRAM="$work/venv/bin/ninja" \
    -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$py" \
    -DIKLLAMA_BACKEND=cuda -DIKLLAMA_VARIANT="$variant" \
    -DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$cuda_root" \
    -DCMAKE_CUDA_ARCHITECTURES="${IKLLAMA_CUDA_ARCHS:-90-real}" \
    -DGGML_CUDA_NO_VMM=ON -DGGML_NCCL=OFF -DGGML_CUDA_FA_ALL_QUANTS=OFF -DGGML_CUDA_COMPRESSION_MODE=none \
    >"$work/configure.log" || { cat "$work/configure.log"; exit 1; }
grep "ikllama:" "$work/configure.log"

if [ "$mode" = full ]; then
    "$work/venv/bin/cmake" --build "$work/tree" --target _ikllama_cffi
    readelf -d "$work/tree"/ik_llama.cpp/ggml/src/libggml-ikl-"$variant".so | grep -E "NEEDED|RUNPATH"
else
    # The core CUDA TU, one of each heavy template family (quantized matmul, mma / vec flash attention,
    # mat-vec) and ik's own kernels (IQ4_K matmul, iqk mat-vec, the new mma flash attention).
    # (Only ggml's own objects: an object of the cffi module would first build all of libggml, its link input.)
    obj=ik_llama.cpp/ggml/src/CMakeFiles/ggml.dir
    ti="$obj/ggml-cuda/template-instances"
    objs=("$obj/ggml-cuda.cu.o"
          "$ti/mmq-instance-q4_0.cu.o"
          "$ti/mmq-instance-iq4_k.cu.o"
          "$ti/fattn-mma-f16-instance-ncols1_8-ncols2_4.cu.o"
          "$ti/fattn-vec-f16-instance-hs128-q8_0-q8_0.cu.o"
          "$ti/mmvq-instance-q4_0.cu.o"
          "$obj/ggml-cuda/iqk_mmvq.cu.o"
          "$obj/ggml-cuda/fattn-new-mma.cu.o")
    # Our C++ probe against ggml-cuda.h, as the cffi module compiles it (GGML_USE_CUDA is a PUBLIC define of ggml).
    g++ -std=c++17 -fsyntax-only -DGGML_USE_CUDA -I"$root/vendor/ik_llama.cpp/ggml/include" \
        "$root/src/ikllama/_csrc/ikl_devices.cpp"
    for o in "${objs[@]}"; do
        [ -n "$("$work/venv/bin/ninja" -C "$work/tree" -t query "$o" 2>/dev/null | head -1)" ] || \
            { echo "check_cuda_build.sh: $o is not a target of this tree (did the vendored tree change?)" >&2; exit 1; }
    done
    "$work/venv/bin/ninja" -C "$work/tree" "${objs[@]}"
    # Link check: every CUDA runtime / cuBLAS symbol these objects use resolves against the wheel's libraries.
    (cd "$work/tree" && g++ -shared -o "$work/smoke.so" "${objs[@]}" \
        -L"$cuda_root/lib64" -L"$cuda_root/lib" -lcudart -L"$nvlib" -l:libcublas.so."$major" -l:libcublasLt.so."$major" \
        -Wl,-rpath,"$nvlib" -Wl,-rpath,"$cuda_root/lib64" -Wl,-rpath,"$cuda_root/lib")
    missing="$(ldd -r "$work/smoke.so" 2>&1 | grep -E "undefined symbol: (cuda|cublas|__cuda)" || true)"
    if [ -n "$missing" ]; then
        echo "check_cuda_build.sh: unresolved CUDA symbols:" >&2; echo "$missing" >&2; exit 1
    fi
    echo "check_cuda_build.sh: $(ldd -r "$work/smoke.so" 2>&1 | grep -c "undefined symbol") undefined symbols," \
         "all from the TUs not in the smoke set; cudart and cuBLAS resolve"
fi
echo "check_cuda_build.sh: $mode check of ikllama-$variant passed in $(( $(date +%s) - start )) s"
