// Instantiations of the time loops of spiking_math.h, one function per op and dtype.
//
// On x86-64 with GCC or Clang every function is cloned for AVX2, SSE4.1 and the baseline
// (target_clones), and the dynamic loader picks the best clone for the CPU.  The clones
// only differ in vector width: none enables FMA, and the build uses -ffp-contract=off,
// so each computes exactly the same float32/float64 results.
#include "spiking_math.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(SPIKEONNX_NO_CLONES)
#define SPIKEONNX_CLONES __attribute__((target_clones("avx2", "sse4.1", "default")))
#else
#define SPIKEONNX_CLONES
#endif

namespace spikeonnx {

SPIKEONNX_CLONES void spiking_loop(const float* rates, float* spikes, float* voltage, int64_t n,
                                   int64_t steps, int64_t step, float dt) {
  spiking_block<float>(rates, spikes, voltage, n, steps, step, dt);
}

SPIKEONNX_CLONES void spiking_loop(const double* rates, double* spikes, double* voltage, int64_t n,
                                   int64_t steps, int64_t step, double dt) {
  spiking_block<double>(rates, spikes, voltage, n, steps, step, dt);
}

SPIKEONNX_CLONES void lowpass_loop(const float* x, float* y, float* level, const float* keep,
                                   const float* gain, int64_t n, int64_t steps, int64_t step) {
  lowpass_block<float>(x, y, level, keep, gain, n, steps, step);
}

SPIKEONNX_CLONES void lowpass_loop(const double* x, double* y, double* level, const double* keep,
                                   const double* gain, int64_t n, int64_t steps, int64_t step) {
  lowpass_block<double>(x, y, level, keep, gain, n, steps, step);
}

SPIKEONNX_CLONES void alpha_loop(const float* x, float* y, float* s1, float* s2, const float* a,
                                 const float* one_a, const float* ra, const float* input2, int64_t n,
                                 int64_t steps, int64_t step) {
  alpha_block<float>(x, y, s1, s2, a, one_a, ra, input2, n, steps, step);
}

SPIKEONNX_CLONES void alpha_loop(const double* x, double* y, double* s1, double* s2, const double* a,
                                 const double* one_a, const double* ra, const double* input2,
                                 int64_t n, int64_t steps, int64_t step) {
  alpha_block<double>(x, y, s1, s2, a, one_a, ra, input2, n, steps, step);
}

}  // namespace spikeonnx
