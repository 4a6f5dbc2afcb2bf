// SpikingActivation's sequences, shared by its kernel and EventConvSpiking (a convolution
// and the SpikingActivation after it as one node): the seeded initial voltage (no
// initial_voltage input: the same numbers as tf.random.stateless_uniform((B, *S),
// seed=(seed, seed)), float32) and the time loop over every sequence on the pool.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "kernel_common.h"
#include "spiking_math.h"

namespace spikeonnx {

// Seeded initial voltages kept per node: at most this many draws (64 MiB); a larger
// (B, *S) draws its voltage at every call instead.
constexpr int64_t kMaxKeptDraws = int64_t{1} << 24;

class SeededVoltage {
 public:
  explicit SeededVoltage(int64_t seed) : philox_(tf_seed_to_philox(seed, seed)) {}

  // Draws [0, n) for this seed, kept when n <= kMaxKeptDraws (else null): element i
  // depends on the seed and i only, so the draws are made once (on the pool) and kept,
  // and a larger call extends them.  Concurrent calls share them read-only.
  std::shared_ptr<const std::vector<float>> kept(const Ort::KernelContext& ctx, int64_t n) const {
    if (n > kMaxKeptDraws) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t have = draws_ == nullptr ? 0 : static_cast<int64_t>(draws_->size());
    if (have < n) {
      // A new vector (calls may still read the old one): the kept draws, then the rest.
      auto fresh = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
      if (have > 0) std::copy(draws_->begin(), draws_->end(), fresh->begin());
      constexpr int64_t kChunk = int64_t{1} << 16;
      auto work = [&](size_t i) {
        const int64_t begin = have + static_cast<int64_t>(i) * kChunk;
        const int64_t end = std::min(n, begin + kChunk);
        stateless_uniform(philox_, static_cast<uint64_t>(begin), static_cast<uint64_t>(end), fresh->data() + begin);
      };
      parallel_for(ctx, static_cast<size_t>((n - have + kChunk - 1) / kChunk), work);
      draws_ = std::move(fresh);
    }
    return draws_;
  }

  // voltage[0, n) = draws [at, at + n): from `kept` (kept()'s result) when there is one,
  // else drawn now, kBlockUnits at a time.
  template <typename T>
  void fill(const std::vector<float>* kept, int64_t at, int64_t n, T* voltage) const {
    if (kept != nullptr) {
      std::copy(kept->data() + at, kept->data() + at + n, voltage);
      return;
    }
    alignas(64) float drawn[kBlockUnits];
    for (int64_t done = 0; done < n; done += kBlockUnits) {
      const int64_t part = std::min(kBlockUnits, n - done);
      const uint64_t first = static_cast<uint64_t>(at + done);
      stateless_uniform(philox_, first, first + static_cast<uint64_t>(part), drawn);
      std::copy(drawn, drawn + part, voltage + done);
    }
  }

 private:
  Philox4x32 philox_;
  mutable std::mutex mutex_;
  mutable std::shared_ptr<const std::vector<float>> draws_;
};

// Where `batch` sequences of `units` units over `steps` steps lie: sequence b's step t
// starts at b * batch_stride + t * step, in the rates and in the spikes alike.
struct SequenceLayout {
  int64_t batch = 0, steps = 0, units = 0, batch_stride = 0, step = 0;
};

// The voltage a sequence starts from: `initial` (batch, units) when given, else the
// seeded draws of state index b * units + u (`kept`: seeded.kept()'s).
template <typename T>
struct InitialVoltage {
  const T* initial = nullptr;
  const SeededVoltage* seeded = nullptr;
  const std::vector<float>* kept = nullptr;
};

// spikes = SpikingActivation(rates) for every sequence of `layout`, in blocks of units on
// the pool (each block's voltage stays in L1 through time); `final_voltage` (batch,
// units), when not null, receives the voltage after the last step.  `stream`: spikes
// written past the caches (see stream_output).
template <typename T>
void spiking_sequences(const Ort::KernelContext& ctx, const T* rates, T* spikes, const SequenceLayout& layout,
                       const InitialVoltage<T>& start, T dt, bool stream, T* final_voltage) {
  const int64_t block = block_units(layout.batch, layout.units);
  const int64_t blocks = (layout.units + block - 1) / block;
  auto work = [&](size_t item) {
    const int64_t b = static_cast<int64_t>(item) / blocks;
    const int64_t u0 = (static_cast<int64_t>(item) % blocks) * block;
    const int64_t n = std::min(block, layout.units - u0);
    const int64_t state_at = b * layout.units + u0;
    const int64_t at = b * layout.batch_stride + u0;
    // The voltage 2 KiB after the output row modulo 4 KiB (see PlacedBuffer).
    PlacedBuffer<T> voltage_room;
    T* voltage = voltage_room.at(spikes + at, 2048);
    if (start.initial != nullptr) {
      std::copy(start.initial + state_at, start.initial + state_at + n, voltage);
    } else {
      start.seeded->fill(start.kept, state_at, n, voltage);
    }
    spiking_loop(rates + at, spikes + at, voltage, n, layout.steps, layout.step, dt, stream);
    if (final_voltage != nullptr) std::copy(voltage, voltage + n, final_voltage + state_at);
  };
  parallel_for(ctx, static_cast<size_t>(layout.batch * blocks), work);
}

}  // namespace spikeonnx
