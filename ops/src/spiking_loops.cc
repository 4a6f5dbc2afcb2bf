// Instantiations of the time loops of spiking_math.h, one function per op and dtype, and
// the choice between them and the streaming-store loops of stream_loops.h.
//
// On x86-64 with GCC or Clang every plain loop is cloned for AVX2, SSE4.1 and the baseline
// (target_clones), and the dynamic loader picks the best clone for the CPU.  The clones
// only differ in vector width: none enables FMA, and the build uses -ffp-contract=off,
// so each computes exactly the same float32/float64 results.
#include "spiking_math.h"
#include "stream_loops.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(SPIKEONNX_NO_CLONES)
#define SPIKEONNX_CLONES __attribute__((target_clones("avx2", "sse4.1", "default")))
#else
#define SPIKEONNX_CLONES
#endif

namespace spikeonnx {
namespace plain {

SPIKEONNX_CLONES void stateless_uniform(const Philox4x32& state, uint64_t begin, uint64_t end, float* out) {
  tf_stateless_uniform_float(state, begin, end, out);
}

SPIKEONNX_CLONES void spiking_loop(const float* rates, float* spikes, float* voltage, int64_t n,
                                   int64_t steps, int64_t step, float dt) {
  spiking_block<float>(rates, spikes, voltage, n, steps, step, dt);
}

SPIKEONNX_CLONES void spiking_loop(const double* rates, double* spikes, double* voltage, int64_t n,
                                   int64_t steps, int64_t step, double dt) {
  spiking_block<double>(rates, spikes, voltage, n, steps, step, dt);
}

SPIKEONNX_CLONES void spiking_relu_loop(const float* rates, float* spikes, float* voltage, int64_t n,
                                        int64_t steps, int64_t step, float dt) {
  spiking_block<float, true>(rates, spikes, voltage, n, steps, step, dt);
}

SPIKEONNX_CLONES void spiking_relu_loop(const double* rates, double* spikes, double* voltage, int64_t n,
                                        int64_t steps, int64_t step, double dt) {
  spiking_block<double, true>(rates, spikes, voltage, n, steps, step, dt);
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

}  // namespace plain

#if defined(SPIKEONNX_STREAM_STORES)
namespace {

// Which streaming-store loops this CPU can run.
enum class StreamIsa { kNone, kSse41, kAvx2 };

StreamIsa detect_stream_isa() {
  __builtin_cpu_init();
  // SPIKEONNX_STREAM_NO_AVX2: a checking build that runs the SSE4.1 loops on an AVX2 CPU.
#if !defined(SPIKEONNX_STREAM_NO_AVX2)
  if (__builtin_cpu_supports("avx2")) return StreamIsa::kAvx2;
#endif
  if (__builtin_cpu_supports("sse4.1")) return StreamIsa::kSse41;
  return StreamIsa::kNone;
}

// Detected once (thread-safe static initialisation), constant afterwards.
StreamIsa stream_isa() {
  static const StreamIsa isa = detect_stream_isa();
  return isa;
}

}  // namespace
#endif

// Each entry point: the streaming loop of the best instruction set when asked for and
// available, else the plain (cloned) loop.  Builds without the streaming loops (not
// x86-64) always take the plain loop.
#if defined(SPIKEONNX_STREAM_STORES)
#define SPIKEONNX_DISPATCH(loop, ...)                                  \
  if (stream) {                                                        \
    switch (stream_isa()) {                                            \
      case StreamIsa::kAvx2: return stream_avx2::loop(__VA_ARGS__);    \
      case StreamIsa::kSse41: return stream_sse41::loop(__VA_ARGS__);  \
      case StreamIsa::kNone: break;                                    \
    }                                                                  \
  }                                                                    \
  plain::loop(__VA_ARGS__)
#else
#define SPIKEONNX_DISPATCH(loop, ...) \
  static_cast<void>(stream);          \
  plain::loop(__VA_ARGS__)
#endif

void spiking_loop(const float* rates, float* spikes, float* voltage, int64_t n, int64_t steps,
                  int64_t step, float dt, bool stream, bool relu) {
  if (relu) {
    SPIKEONNX_DISPATCH(spiking_relu_loop, rates, spikes, voltage, n, steps, step, dt);
    return;
  }
  SPIKEONNX_DISPATCH(spiking_loop, rates, spikes, voltage, n, steps, step, dt);
}

void spiking_loop(const double* rates, double* spikes, double* voltage, int64_t n, int64_t steps,
                  int64_t step, double dt, bool stream, bool relu) {
  if (relu) {
    SPIKEONNX_DISPATCH(spiking_relu_loop, rates, spikes, voltage, n, steps, step, dt);
    return;
  }
  SPIKEONNX_DISPATCH(spiking_loop, rates, spikes, voltage, n, steps, step, dt);
}

void lowpass_loop(const float* x, float* y, float* level, const float* keep, const float* gain,
                  int64_t n, int64_t steps, int64_t step, bool stream) {
  SPIKEONNX_DISPATCH(lowpass_loop, x, y, level, keep, gain, n, steps, step);
}

void lowpass_loop(const double* x, double* y, double* level, const double* keep, const double* gain,
                  int64_t n, int64_t steps, int64_t step, bool stream) {
  SPIKEONNX_DISPATCH(lowpass_loop, x, y, level, keep, gain, n, steps, step);
}

void alpha_loop(const float* x, float* y, float* s1, float* s2, const float* a, const float* one_a,
                const float* ra, const float* input2, int64_t n, int64_t steps, int64_t step,
                bool stream) {
  SPIKEONNX_DISPATCH(alpha_loop, x, y, s1, s2, a, one_a, ra, input2, n, steps, step);
}

void alpha_loop(const double* x, double* y, double* s1, double* s2, const double* a,
                const double* one_a, const double* ra, const double* input2, int64_t n,
                int64_t steps, int64_t step, bool stream) {
  SPIKEONNX_DISPATCH(alpha_loop, x, y, s1, s2, a, one_a, ra, input2, n, steps, step);
}

#undef SPIKEONNX_DISPATCH

void stateless_uniform(const Philox4x32& state, uint64_t begin, uint64_t end, float* out) {
  plain::stateless_uniform(state, begin, end, out);
}

}  // namespace spikeonnx
