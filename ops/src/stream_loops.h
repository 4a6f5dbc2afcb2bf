// Time loops that write their sequence output with non-temporal (streaming) stores.
//
// A big output is written once and not read again soon, so fetching each of its cache
// lines before overwriting it (write-allocate) only wastes memory bandwidth.  Streaming
// stores skip that read.  The loops are compiled once per x86 instruction set, each in its
// own translation unit with its own -m flags (stream_avx2.cc, stream_sse41.cc); this
// header only declares them, so no inline code compiled for a newer instruction set can
// leak into the rest of the library.  Every loop performs the same IEEE operations in the
// same order as the plain loops of spiking_math.h (no FMA), so results are bit-identical;
// only the kind of store differs.  Each call ends with a store fence, so its output is
// visible to other threads once it returns.
#pragma once

#include <cstdint>

namespace spikeonnx {

#define SPIKEONNX_DECLARE_STREAM_LOOPS                                                            \
  void spiking_loop(const float* rates, float* spikes, float* voltage, int64_t n, int64_t steps,  \
                    int64_t step, float dt);                                                      \
  void spiking_loop(const double* rates, double* spikes, double* voltage, int64_t n,              \
                    int64_t steps, int64_t step, double dt);                                      \
  /* the rates through a Relu first (see spiking_block) */                                      \
  void spiking_relu_loop(const float* rates, float* spikes, float* voltage, int64_t n,           \
                         int64_t steps, int64_t step, float dt);                                  \
  void spiking_relu_loop(const double* rates, double* spikes, double* voltage, int64_t n,        \
                         int64_t steps, int64_t step, double dt);                                 \
  void lowpass_loop(const float* x, float* y, float* level, const float* keep, const float* gain, \
                    int64_t n, int64_t steps, int64_t step);                                      \
  void lowpass_loop(const double* x, double* y, double* level, const double* keep,                \
                    const double* gain, int64_t n, int64_t steps, int64_t step);                  \
  void alpha_loop(const float* x, float* y, float* s1, float* s2, const float* a,                 \
                  const float* one_a, const float* ra, const float* input2, int64_t n,            \
                  int64_t steps, int64_t step);                                                   \
  void alpha_loop(const double* x, double* y, double* s1, double* s2, const double* a,            \
                  const double* one_a, const double* ra, const double* input2, int64_t n,         \
                  int64_t steps, int64_t step);

// AVX2 (256-bit) versions: only call them when the CPU supports AVX2.
namespace stream_avx2 {
SPIKEONNX_DECLARE_STREAM_LOOPS
}  // namespace stream_avx2

// SSE4.1 (128-bit) versions: only call them when the CPU supports SSE4.1.
namespace stream_sse41 {
SPIKEONNX_DECLARE_STREAM_LOOPS
}  // namespace stream_sse41

#undef SPIKEONNX_DECLARE_STREAM_LOOPS

}  // namespace spikeonnx
