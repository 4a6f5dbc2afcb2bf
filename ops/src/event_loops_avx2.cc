// Event loops for AVX2 CPUs (compiled with -mavx2 -mfma): 8 of the 16 ymm registers hold
// accumulators.
#define SPIKEONNX_EVENT_NAMESPACE event_avx2
#define SPIKEONNX_EVENT_VECTOR_BYTES 32
#define SPIKEONNX_EVENT_TILE_BYTES 256
#define SPIKEONNX_GEMM_ROWS 6  // 6 x 16 floats of GEMM accumulators (12 registers)
#define SPIKEONNX_GEMM_VECTORS 2
#include "event_loops.inc"
