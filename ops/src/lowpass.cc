// Lowpass: first-order exponential filter y_t = (1 - a) x_t + a y_{t-1}, a = exp(-dt/tau).
#include <algorithm>
#include <vector>

#include "kernel_common.h"
#include "op_factory.h"
#include "spiking_math.h"

namespace spikeonnx {
namespace {

constexpr const char* kOp = "Lowpass";

struct LowpassKernel {
  static constexpr size_t kInputs = 3;  // x, tau, initial_level
  static constexpr size_t kRequiredInputs = 2;
  static constexpr size_t kOutputs = 2;  // y, final_level
  static constexpr size_t kRequiredOutputs = 1;
  static constexpr int64_t kStateStack = 0;  // state output is (B, *S)

  LowpassKernel(const OrtApi* api, const OrtKernelInfo* info)
      : attrs_(read_common_attributes(api, info, kOp)) {}

  Ort::Status Compute(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const InputView x = get_input(ctx, 0);
      const InputView tau = get_input(ctx, 1);
      const InputView initial = get_input(ctx, 2);
      const SeqGeometry g = check_filter_inputs(kOp, attrs_.node, attrs_.time_major, x, tau, initial);
      const size_t element_size = x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? sizeof(float) : sizeof(double);
      void* y = allocate_output(ctx, 0, g.shape, true, element_size, {kOp, attrs_.node, "y", "x", x.shape});
      void* final_level =
          attrs_.state_output ? allocate_output(ctx, 1, g.state_shape(), false, element_size,
                                                {kOp, attrs_.node, "final_level", "x", x.shape})
                              : nullptr;
      if (x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        run<float>(ctx, g, x, tau, initial, static_cast<float*>(y), static_cast<float*>(final_level));
      } else {
        run<double>(ctx, g, x, tau, initial, static_cast<double*>(y), static_cast<double*>(final_level));
      }
    } catch (const std::exception& e) {
      return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }

 private:
  template <typename T>
  void run(const Ort::KernelContext& ctx, const SeqGeometry& g, const InputView& x_in,
           const InputView& tau_in, const InputView& initial_in, T* y, T* final_level) const {
    if (g.empty()) {
      // No step to compute, so no per-unit buffer either: with T = 0 the final level is the
      // initial one (written straight into the output), otherwise it is empty too.
      if (final_level != nullptr && g.time == 0) {
        const std::vector<int64_t> state_shape = g.state_shape();
        if (initial_in.present) {
          broadcast_into<T>(initial_in, state_shape, final_level);
        } else {
          std::fill(final_level, final_level + checked_count(state_shape), static_cast<T>(0));
        }
      }
      return;
    }
    const T* x = static_cast<const T*>(x_in.data);
    const T dt = static_cast<T>(attrs_.dt);
    // Per-unit coefficients, computed once instead of at every step.
    const std::vector<T> tau = broadcast_to<T>(tau_in, g.unit_param_shape());
    std::vector<T> keep(tau.size()), gain(tau.size());
    for (size_t u = 0; u < tau.size(); ++u) {
      const LowpassCoeff<T> c = lowpass_coeff(dt, tau[u]);
      keep[u] = c.keep;
      gain[u] = c.gain;
    }
    std::vector<T> initial;
    if (initial_in.present) initial = broadcast_to<T>(initial_in, g.state_shape());
    const int64_t block = block_units(g.batch, g.units);
    const bool stream = stream_output(g.batch * g.time * g.units, static_cast<int64_t>(sizeof(T)));
    const int64_t blocks = (g.units + block - 1) / block;
    auto work = [&](size_t item) {
      const int64_t b = static_cast<int64_t>(item) / blocks;
      const int64_t u0 = (static_cast<int64_t>(item) % blocks) * block;
      const int64_t n = std::min(block, g.units - u0);
      const int64_t state_at = b * g.units + u0;
      const int64_t at = b * g.batch_stride() + u0;
      // State and coefficients 2, 1 and 3 KiB after the output row modulo 4 KiB: no load
      // of the loop then aliases a recent store (see PlacedBuffer).
      PlacedBuffer<T> level_room, keep_room, gain_room;
      T* level = level_room.at(y + at, 2048);
      T* keep_here = keep_room.at(y + at, 1024);
      T* gain_here = gain_room.at(y + at, 3072);
      std::copy(keep.data() + u0, keep.data() + u0 + n, keep_here);
      std::copy(gain.data() + u0, gain.data() + u0 + n, gain_here);
      if (initial.empty()) {
        std::fill(level, level + n, static_cast<T>(0));
      } else {
        std::copy(initial.data() + state_at, initial.data() + state_at + n, level);
      }
      lowpass_loop(x + at, y + at, level, keep_here, gain_here, n, g.time, g.step(), stream);
      if (final_level != nullptr) std::copy(level, level + n, final_level + state_at);
    };
    parallel_for(ctx, static_cast<size_t>(g.batch * blocks), work);
  }

  CommonAttributes attrs_;
};

}  // namespace

const OrtCustomOp* lowpass_op() {
  static const DynamicTypedOp<LowpassKernel> op(kOp);
  return &op;
}

}  // namespace spikeonnx
