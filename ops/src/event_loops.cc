// Portable event loops (SSE2 on x86-64) and the run-time choice of instruction set.
#define SPIKEONNX_EVENT_NAMESPACE event_generic
#define SPIKEONNX_EVENT_VECTOR_BYTES 16
#define SPIKEONNX_EVENT_TILE_BYTES 128
#define SPIKEONNX_GEMM_ROWS 4
#define SPIKEONNX_GEMM_VECTORS 2
#include "event_loops.inc"

namespace spikeonnx {
namespace {

#define SPIKEONNX_EVENT_TABLE(ns)                                                                   \
  EventLoops {                                                                                      \
    &ns::tile_width_float, &ns::tile_width_double,                                                  \
        static_cast<int64_t (*)(const float*, int64_t)>(&ns::count_nonzero),                        \
        static_cast<int64_t (*)(const double*, int64_t)>(&ns::count_nonzero),                       \
        static_cast<int64_t (*)(const float*, int64_t, int32_t*, float*)>(&ns::nonzeros),            \
        static_cast<int64_t (*)(const double*, int64_t, int32_t*, double*)>(&ns::nonzeros),          \
        static_cast<void (*)(const int32_t*, const float*, int64_t, const float*, int64_t, int64_t, \
                             float*)>(&ns::tile_sum),                                               \
        static_cast<void (*)(const int32_t*, const double*, int64_t, const double*, int64_t,        \
                             int64_t, double*)>(&ns::tile_sum),                                     \
        static_cast<void (*)(float, const float*, float*, int64_t)>(&ns::axpy),                     \
        static_cast<void (*)(double, const double*, double*, int64_t)>(&ns::axpy),                  \
        static_cast<void (*)(const ConvScatter<float>&, const float*, float*, int32_t*, float*)>(   \
            &ns::conv_image),                                                                       \
        static_cast<void (*)(const ConvScatter<double>&, const double*, double*, int32_t*,         \
                             double*)>(&ns::conv_image),                                            \
        &ns::gather_lanes_float, &ns::gather_lanes_double,                                          \
        static_cast<void (*)(const ConvScatter<float>&, const float*, float*,                      \
                             const GatherScratch<float>&)>(&ns::conv_gather),                       \
        static_cast<void (*)(const ConvScatter<double>&, const double*, double*,                   \
                             const GatherScratch<double>&)>(&ns::conv_gather),                      \
        static_cast<void (*)(const ConvChannels<float>&, const float*)>(&ns::conv_channels),      \
        static_cast<void (*)(const ConvChannels<double>&, const double*)>(&ns::conv_channels),    \
        static_cast<void (*)(const ConvDirect<float>&, const float*, float*)>(&ns::conv_direct),   \
        static_cast<void (*)(const ConvDirect<double>&, const double*, double*)>(&ns::conv_direct), \
        static_cast<void (*)(const float*, int64_t, int64_t, float*, int64_t, bool, bool)>(&ns::transpose),   \
        static_cast<void (*)(const double*, int64_t, int64_t, double*, int64_t, bool, bool)>(&ns::transpose), \
        &ns::gemm_panel_width, &ns::gemm_rows, &ns::gemm_tile                                       \
  }

struct Chosen {
  EventLoops loops;
  const char* isa;
};

Chosen choose() {
#ifdef SPIKEONNX_EVENT_SIMD
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma")) {
    return {SPIKEONNX_EVENT_TABLE(event_avx512), "avx512"};
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return {SPIKEONNX_EVENT_TABLE(event_avx2), "avx2"};
  }
#endif
  return {SPIKEONNX_EVENT_TABLE(event_generic), "generic"};
}

const Chosen& chosen() {
  static const Chosen c = choose();  // immutable after the first call
  return c;
}

}  // namespace

const EventLoops& event_loops() { return chosen().loops; }
const char* event_loops_isa() { return chosen().isa; }

}  // namespace spikeonnx
