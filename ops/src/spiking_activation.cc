// SpikingActivation: turns rates into spikes by integrating a voltage that fires (and
// drops by one) every time it crosses an integer.
#include <cstdint>
#include <memory>
#include <vector>

#include "kernel_common.h"
#include "op_factory.h"
#include "spiking_math.h"
#include "spiking_sequences.h"

namespace spikeonnx {
namespace {

constexpr const char* kOp = "SpikingActivation";

struct SpikingActivationKernel {
  static constexpr size_t kInputs = 2;  // rates, initial_voltage
  static constexpr size_t kRequiredInputs = 1;
  static constexpr size_t kOutputs = 2;  // spikes, final_voltage
  static constexpr size_t kRequiredOutputs = 1;
  static constexpr int64_t kStateStack = 0;  // state output is (B, *S)

  SpikingActivationKernel(const OrtApi* api, const OrtKernelInfo* info)
      : attrs_(read_common_attributes(api, info, kOp)),
        seeded_(read_int_attribute(api, info, kOp, "seed", 0)) {}

  Ort::Status Compute(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const InputView rates = get_input(ctx, 0);
      const InputView initial = get_input(ctx, 1);
      const SeqGeometry g = check_sequence(kOp, attrs_.node, "rates", rates, attrs_.time_major);
      const std::vector<int64_t> state_shape = g.state_shape();
      if (initial.present) {
        // The contract's (B, *S) exactly: a broadcast voltage is almost always a state
        // from another batch size or layer, so it is refused rather than guessed at.
        check_exact_shape(kOp, attrs_.node, "initial_voltage", initial, rates.type, state_shape, "(B, *S)");
      }
      // All checks passed: only now are outputs allocated and written.
      const size_t element_size = rates.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? sizeof(float) : sizeof(double);
      void* spikes = allocate_output(ctx, 0, g.shape, true, element_size,
                                     {kOp, attrs_.node, "spikes", "rates", rates.shape});
      void* final_voltage =
          attrs_.state_output ? allocate_output(ctx, 1, state_shape, false, element_size,
                                                {kOp, attrs_.node, "final_voltage", "rates", rates.shape})
                              : nullptr;
      // Empty work is free: with no element to compute and no final voltage to report
      // (T = 0 without that output, or B = 0, or a zero unit axis) no voltage is drawn.
      // With T = 0 the final voltage is the initial one (for a seeded node: the draw).
      if (g.empty() && (final_voltage == nullptr || checked_count(state_shape) == 0)) {
        return Ort::Status{nullptr};
      }
      if (rates.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        run<float>(ctx, g, rates, initial, static_cast<float*>(spikes), static_cast<float*>(final_voltage));
      } else {
        run<double>(ctx, g, rates, initial, static_cast<double*>(spikes), static_cast<double*>(final_voltage));
      }
    } catch (const std::exception& e) {
      return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }

 private:
  template <typename T>
  void run(const Ort::KernelContext& ctx, const SeqGeometry& g, const InputView& rates_in,
           const InputView& initial_in, T* spikes, T* final_voltage) const {
    const T* rates = static_cast<const T*>(rates_in.data);
    const T* initial = initial_in.present ? static_cast<const T*>(initial_in.data) : nullptr;
    const int64_t states = g.batch * g.units;
    std::shared_ptr<const std::vector<float>> kept;
    if (initial == nullptr) kept = seeded_.kept(ctx, states);
    const bool stream = stream_output(g.batch * g.time * g.units, static_cast<int64_t>(sizeof(T)));
    const SequenceLayout layout{g.batch, g.time, g.units, g.batch_stride(), g.step()};
    spiking_sequences(ctx, rates, spikes, layout, InitialVoltage<T>{initial, &seeded_, kept.get()},
                      static_cast<T>(attrs_.dt), stream, final_voltage);
  }

  CommonAttributes attrs_;
  SeededVoltage seeded_;
};

}  // namespace

const OrtCustomOp* spiking_activation_op() {
  static const DynamicTypedOp<SpikingActivationKernel> op(kOp);
  return &op;
}

}  // namespace spikeonnx
