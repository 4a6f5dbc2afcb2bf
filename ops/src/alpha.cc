// Alpha: second-order filter with impulse response (t / tau^2) exp(-t / tau), discretised
// exactly under a zero-order hold of the input (two cascaded lowpass stages).
#include <algorithm>
#include <string>
#include <vector>

#include "kernel_common.h"
#include "op_factory.h"
#include "spiking_math.h"

namespace spikeonnx {
namespace {

constexpr const char* kOp = "Alpha";

// The optional full state (s1, s2): (B, 2, *S) of the sequence's element type, or
// (1, 2, *S) shared by the whole batch.  Only the batch axis may broadcast; anything else
// is almost certainly a state from another layer or layout, so it is refused.
void check_initial_state(const std::string& node, const InputView& state, ONNXTensorElementDataType type,
                         const SeqGeometry& g) {
  const std::vector<int64_t> expected = g.state_shape(2);
  const std::string label = "(B, 2, *S) = " + shape_str(expected);
  if (state.type != type) {
    throw OpError(where(kOp, node) + ": input 'initial_state' must be a " + dtype_str(type) +
                  " tensor (the element type of the sequence input) of shape " + label + "; got " +
                  dtype_str(state.type) + " of shape " + shape_str(state.shape));
  }
  bool ok = state.shape.size() == expected.size() && (state.shape[0] == expected[0] || state.shape[0] == 1);
  for (size_t k = 1; ok && k < expected.size(); ++k) ok = state.shape[k] == expected[k];
  if (!ok) {
    throw OpError(where(kOp, node) + ": input 'initial_state' has shape " + shape_str(state.shape) +
                  "; expected shape " + label + " (or a batch of 1, shared by all entries)");
  }
}

struct AlphaKernel {
  static constexpr size_t kInputs = 4;  // x, tau, initial_level, initial_state (B, 2, *S)
  static constexpr size_t kRequiredInputs = 2;
  static constexpr size_t kOutputs = 2;  // y, final_state (B, 2, *S)
  static constexpr size_t kRequiredOutputs = 1;
  static constexpr int64_t kStateStack = 2;  // state output is (B, 2, *S)

  AlphaKernel(const OrtApi* api, const OrtKernelInfo* info)
      : attrs_(read_common_attributes(api, info, kOp)) {}

  Ort::Status Compute(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const InputView x = get_input(ctx, 0);
      const InputView tau = get_input(ctx, 1);
      const InputView initial = get_input(ctx, 2);
      const InputView state = get_input(ctx, 3);
      const SeqGeometry g = check_filter_inputs(kOp, attrs_.node, attrs_.time_major, x, tau, initial);
      if (state.present) check_initial_state(attrs_.node, state, x.type, g);
      // Every input is valid from here on: only now are the outputs allocated and written.
      const size_t element_size = x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? sizeof(float) : sizeof(double);
      void* y = allocate_output(ctx, 0, g.shape, true, element_size, {kOp, attrs_.node, "y", "x", x.shape});
      void* final_state =
          attrs_.state_output ? allocate_output(ctx, 1, g.state_shape(2), false, element_size,
                                                {kOp, attrs_.node, "final_state", "x", x.shape})
                              : nullptr;
      if (x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        run<float>(ctx, g, x, tau, initial, state, static_cast<float*>(y), static_cast<float*>(final_state));
      } else {
        run<double>(ctx, g, x, tau, initial, state, static_cast<double*>(y), static_cast<double*>(final_state));
      }
    } catch (const std::exception& e) {
      return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }

 private:
  template <typename T>
  void run(const Ort::KernelContext& ctx, const SeqGeometry& g, const InputView& x_in,
           const InputView& tau_in, const InputView& initial_in, const InputView& state_in, T* y,
           T* final_state) const {
    if (g.empty()) {
      if (final_state != nullptr && g.time == 0) write_start_state(g, initial_in, state_in, final_state);
      return;
    }
    const T* x = static_cast<const T*>(x_in.data);
    const T dt = static_cast<T>(attrs_.dt);
    const std::vector<T> tau = broadcast_to<T>(tau_in, g.unit_param_shape());
    std::vector<T> a(tau.size()), one_a(tau.size()), ra(tau.size()), input2(tau.size());
    for (size_t u = 0; u < tau.size(); ++u) {
      const AlphaCoeff<T> c = alpha_coeff(dt, tau[u]);
      a[u] = c.a;
      one_a[u] = c.one_a;
      ra[u] = c.ra;
      input2[u] = c.input2;
    }
    // Start state: the explicit (s1, s2) if given, else both stages at rest at the level.
    const T* state = state_in.present ? static_cast<const T*>(state_in.data) : nullptr;
    const bool shared_state = state != nullptr && state_in.shape[0] == 1;
    std::vector<T> initial;
    if (state == nullptr && initial_in.present) initial = broadcast_to<T>(initial_in, g.state_shape());
    const int64_t block = block_units(g.batch, g.units);
    const bool stream = stream_output(g.batch * g.time * g.units, static_cast<int64_t>(sizeof(T)));
    const int64_t blocks = (g.units + block - 1) / block;
    auto work = [&](size_t item) {
      const int64_t b = static_cast<int64_t>(item) / blocks;
      const int64_t u0 = (static_cast<int64_t>(item) % blocks) * block;
      const int64_t n = std::min(block, g.units - u0);
      const int64_t at = b * g.batch_stride() + u0;
      // State 1 and 2 KiB, coefficients 2.25 to 3 KiB after the output row modulo 4 KiB:
      // no load of the loop then aliases a recent store (see PlacedBuffer).
      PlacedBuffer<T> s1_room, s2_room, a_room, one_a_room, ra_room, input2_room;
      T* s1 = s1_room.at(y + at, 1024);
      T* s2 = s2_room.at(y + at, 2048);
      T* a_here = a_room.at(y + at, 2304);
      T* one_a_here = one_a_room.at(y + at, 2560);
      T* ra_here = ra_room.at(y + at, 2816);
      T* input2_here = input2_room.at(y + at, 3072);
      std::copy(a.data() + u0, a.data() + u0 + n, a_here);
      std::copy(one_a.data() + u0, one_a.data() + u0 + n, one_a_here);
      std::copy(ra.data() + u0, ra.data() + u0 + n, ra_here);
      std::copy(input2.data() + u0, input2.data() + u0 + n, input2_here);
      if (state != nullptr) {
        const T* from = state + 2 * (shared_state ? 0 : b) * g.units + u0;
        std::copy(from, from + n, s1);
        std::copy(from + g.units, from + g.units + n, s2);
      } else if (!initial.empty()) {
        const T* from = initial.data() + b * g.units + u0;
        std::copy(from, from + n, s1);
        std::copy(from, from + n, s2);
      } else {
        std::fill(s1, s1 + n, static_cast<T>(0));
        std::fill(s2, s2 + n, static_cast<T>(0));
      }
      alpha_loop(x + at, y + at, s1, s2, a_here, one_a_here, ra_here, input2_here, n, g.time, g.step(),
                 stream);
      if (final_state != nullptr) {
        T* out = final_state + 2 * b * g.units + u0;
        std::copy(s1, s1 + n, out);
        std::copy(s2, s2 + n, out + g.units);
      }
    };
    parallel_for(ctx, static_cast<size_t>(g.batch * blocks), work);
  }

  // T = 0: the final state is the start state, written straight into the output (no
  // per-unit buffer): (s1, s2) from initial_state (a batch of 1 repeated), else both stages
  // at the initial level, else zeros.
  template <typename T>
  static void write_start_state(const SeqGeometry& g, const InputView& initial_in, const InputView& state_in,
                                T* out) {
    const int64_t per_entry = 2 * g.units;  // one batch entry of (B, 2, *S)
    if (state_in.present) {
      const T* state = static_cast<const T*>(state_in.data);
      for (int64_t b = 0; b < g.batch; ++b) {
        const T* from = state + (state_in.shape[0] == 1 ? 0 : b) * per_entry;
        std::copy(from, from + per_entry, out + b * per_entry);
      }
    } else if (initial_in.present) {
      const std::vector<int64_t> unit_shape = g.state_shape();
      // Each stage gets the level: broadcast the level of entry b into both halves.
      std::vector<int64_t> one_entry = unit_shape;
      one_entry[0] = 1;
      for (int64_t b = 0; b < g.batch; ++b) {
        InputView entry = initial_in;
        // The level broadcasts to (B, *S); pick entry b (or the shared one) by offsetting.
        const size_t rank = unit_shape.size();
        if (entry.shape.size() == rank && entry.shape[0] != 1) {
          entry.shape[0] = 1;
          entry.data = static_cast<const T*>(initial_in.data) + b * checked_count(entry.shape);
        }
        broadcast_into<T>(entry, one_entry, out + b * per_entry);
        std::copy(out + b * per_entry, out + b * per_entry + g.units, out + b * per_entry + g.units);
      }
    } else {
      std::fill(out, out + g.batch * per_entry, static_cast<T>(0));
    }
  }

  CommonAttributes attrs_;
};

}  // namespace

const OrtCustomOp* alpha_op() {
  static const DynamicTypedOp<AlphaKernel> op(kOp);
  return &op;
}

}  // namespace spikeonnx
