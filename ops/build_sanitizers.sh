#!/bin/sh
# Build libspikeonnx_ops.so with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# op tests (tests/test_ops_kernels.py, tests/test_ops_errors.py, the hostile-input cases of
# tests/test_robustness_ops.py - empty inputs with huge unit axes, sizes overflowing
# int64, unallocatable outputs, wrongly typed attributes - and the fuzz test
# tests/test_ops_fuzz.py) against that build.
#
# Usage (from anywhere):  ops/build_sanitizers.sh [extra pytest arguments]
#
# Environment: PYTHON (default: <repo>/.venv/bin/python, needs numpy, onnx, onnxruntime,
# pytest; tensorflow for the seed test), BUILD_DIR (default: <repo>/build/sanitize), CXX.
# The Python interpreter is not instrumented, so the sanitizer runtimes are preloaded;
# leak detection is off because CPython and its extension modules keep memory until exit
# on purpose.  Any ASan/UBSan report aborts the run with a non-zero exit status.
# allocator_may_return_null: a failed malloc (e.g. NumPy's MemoryError path) returns null as
# it does without ASan.  ASan still aborts when a throwing operator new fails, and
# onnxruntime allocates outputs that way, so the one test of an output too large to allocate
# (2**60 bytes, a failure inside onnxruntime itself) is deselected here; every other
# huge-shape case (empty inputs, sizes overflowing int64) runs.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build/sanitize}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
CXX=${CXX:-c++}
export CXX

extra=""
# Reuse headers an earlier dev build fetched, instead of downloading them again.
if [ -z "${ONNXRUNTIME_INCLUDE_DIR:-}" ] && [ -f "$ROOT/build/dev/onnxruntime-headers/root/usr/include/onnxruntime/onnxruntime_lite_custom_op.h" ]; then
    extra="-DONNXRUNTIME_INCLUDE_DIR=$ROOT/build/dev/onnxruntime-headers/root/usr/include/onnxruntime"
fi

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSPIKEONNX_SANITIZE=address,undefined $extra
cmake --build "$BUILD"

LIBASAN=$("$CXX" -print-file-name=libasan.so)
LIBUBSAN=$("$CXX" -print-file-name=libubsan.so)
for lib in "$LIBASAN" "$LIBUBSAN"; do
    if [ ! -f "$lib" ]; then
        echo "build_sanitizers.sh: sanitizer runtime $lib not found (install libasan/libubsan)" >&2
        exit 1
    fi
done

cd "$ROOT"
LD_PRELOAD="$LIBASAN $LIBUBSAN" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:alloc_dealloc_mismatch=0:allocator_may_return_null=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
SPIKEONNX_OPS_LIBRARY="$BUILD/ops/libspikeonnx_ops.so" \
PYTHONPATH="$ROOT" \
    "$PYTHON" -m pytest tests/test_ops_kernels.py tests/test_ops_errors.py tests/test_robustness_ops.py \
        tests/test_ops_fuzz.py -q -p no:cacheprovider -k "not too_large_to_allocate" "$@"
echo "build_sanitizers.sh: op tests passed under address,undefined sanitizers"
