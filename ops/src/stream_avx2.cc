// Streaming-store time loops for AVX2 CPUs; compiled with -mavx2 (and deliberately not
// -mfma: a fused multiply-add would round differently from TensorFlow).
#define SPIKEONNX_STREAM_NAMESPACE stream_avx2
#define SPIKEONNX_STREAM_AVX2 1
#include "stream_loops.inc"
