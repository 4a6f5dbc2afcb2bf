// Event loops for AVX-512 CPUs (compiled with -mavx512f -mavx512vl -mfma): 8 of the 32
// zmm registers hold accumulators.
#define SPIKEONNX_EVENT_NAMESPACE event_avx512
#define SPIKEONNX_EVENT_VECTOR_BYTES 64
#define SPIKEONNX_EVENT_TILE_BYTES 512
#define SPIKEONNX_GEMM_ROWS 12  // 12 x 32 floats of GEMM accumulators (24 registers)
#define SPIKEONNX_GEMM_VECTORS 2
#include "event_loops.inc"
