// SpikingActivation: turns rates into spikes by integrating a voltage that fires (and
// drops by one) every time it crosses an integer.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kernel_common.h"
#include "op_factory.h"
#include "spiking_math.h"

namespace spikeonnx {
namespace {

constexpr const char* kOp = "SpikingActivation";

// Seeded initial voltages kept per node: at most this many draws (64 MiB); a larger
// (B, *S) draws its voltage at every call instead.
constexpr int64_t kMaxKeptDraws = int64_t{1} << 24;

struct SpikingActivationKernel {
  static constexpr size_t kInputs = 2;  // rates, initial_voltage
  static constexpr size_t kRequiredInputs = 1;
  static constexpr size_t kOutputs = 2;  // spikes, final_voltage
  static constexpr size_t kRequiredOutputs = 1;
  static constexpr int64_t kStateStack = 0;  // state output is (B, *S)

  SpikingActivationKernel(const OrtApi* api, const OrtKernelInfo* info)
      : attrs_(read_common_attributes(api, info, kOp)),
        seed_(read_int_attribute(api, info, kOp, "seed", 0)) {}

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
    const Philox4x32 philox = tf_seed_to_philox(seed_, seed_);
    const int64_t states = g.batch * g.units;
    std::shared_ptr<const std::vector<float>> kept;
    if (initial == nullptr && states <= kMaxKeptDraws) kept = draws(ctx, philox, states);
    const T dt = static_cast<T>(attrs_.dt);
    const int64_t block = block_units(g.batch, g.units);
    const bool stream = stream_output(g.batch * g.time * g.units, static_cast<int64_t>(sizeof(T)));
    const int64_t blocks = (g.units + block - 1) / block;
    auto work = [&](size_t item) {
      const int64_t b = static_cast<int64_t>(item) / blocks;
      const int64_t u0 = (static_cast<int64_t>(item) % blocks) * block;
      const int64_t n = std::min(block, g.units - u0);
      const int64_t state_at = b * g.units + u0;
      const int64_t at = b * g.batch_stride() + u0;
      // The voltage 2 KiB after the output row modulo 4 KiB (see PlacedBuffer).
      PlacedBuffer<T> voltage_room;
      T* voltage = voltage_room.at(spikes + at, 2048);
      if (initial != nullptr) {
        std::copy(initial + state_at, initial + state_at + n, voltage);
      } else if (kept) {
        std::copy(kept->data() + state_at, kept->data() + state_at + n, voltage);
      } else {
        // Same numbers as tf.random.stateless_uniform((B, *S), seed=(seed, seed)), float32.
        alignas(64) float drawn[kBlockUnits];
        stateless_uniform(philox, static_cast<uint64_t>(state_at), static_cast<uint64_t>(state_at + n), drawn);
        std::copy(drawn, drawn + n, voltage);
      }
      spiking_loop(rates + at, spikes + at, voltage, n, g.time, g.step(), dt, stream);
      if (final_voltage != nullptr) std::copy(voltage, voltage + n, final_voltage + state_at);
    };
    parallel_for(ctx, static_cast<size_t>(g.batch * blocks), work);
  }

  // Draws [0, n) of tf.random.stateless_uniform for this node's seed, the seeded initial
  // voltage of any (B, *S) with B * S <= n: element i depends on the seed and i only, so
  // the draws are made once (on the pool) and kept, and a larger call extends them.
  // Concurrent calls share them read-only.
  std::shared_ptr<const std::vector<float>> draws(const Ort::KernelContext& ctx, const Philox4x32& philox,
                                                  int64_t n) const {
    std::lock_guard<std::mutex> lock(draws_mutex_);
    const int64_t have = draws_ == nullptr ? 0 : static_cast<int64_t>(draws_->size());
    if (have < n) {
      // A new vector (calls may still read the old one): the kept draws, then the rest.
      auto fresh = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
      if (have > 0) std::copy(draws_->begin(), draws_->end(), fresh->begin());
      constexpr int64_t kChunk = int64_t{1} << 16;
      auto work = [&](size_t i) {
        const int64_t begin = have + static_cast<int64_t>(i) * kChunk;
        const int64_t end = std::min(n, begin + kChunk);
        stateless_uniform(philox, static_cast<uint64_t>(begin), static_cast<uint64_t>(end), fresh->data() + begin);
      };
      parallel_for(ctx, static_cast<size_t>((n - have + kChunk - 1) / kChunk), work);
      draws_ = std::move(fresh);
    }
    return draws_;
  }

  CommonAttributes attrs_;
  int64_t seed_;
  mutable std::mutex draws_mutex_;
  mutable std::shared_ptr<const std::vector<float>> draws_;
};

}  // namespace

const OrtCustomOp* spiking_activation_op() {
  static const DynamicTypedOp<SpikingActivationKernel> op(kOp);
  return &op;
}

}  // namespace spikeonnx
