// Plain C++ numerics of the spikeonnx ops: no onnxruntime types in here, so the math can
// be read, tested and reused on its own.  Everything is written for float32 bit-exactness:
// the library is compiled with -ffp-contract=off so that `a + b * c` is two roundings,
// exactly like TensorFlow's element-wise kernels.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace spikeonnx {

// ---------------------------------------------------------------------------------------
// Philox4x32-10 and TensorFlow's stateless uniform sampler.
// ---------------------------------------------------------------------------------------

// Four 32-bit words of counter (low word first) and the two-word key.
struct Philox4x32 {
  uint32_t counter[4];
  uint32_t key[2];
};

// Philox4x32's round multipliers and the Weyl constants that bump the key between rounds.
constexpr uint32_t kPhiloxMulA = 0xD2511F53u;
constexpr uint32_t kPhiloxMulB = 0xCD9E8D57u;
constexpr uint32_t kPhiloxWeylA = 0x9E3779B9u;
constexpr uint32_t kPhiloxWeylB = 0xBB67AE85u;

// One Philox round on the counter words (c0, c1, c2, c3) under the key (k0, k1).
inline void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxMulA) * c0;
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxMulB) * c2;
  c0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
  c1 = static_cast<uint32_t>(p1);
  c2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
  c3 = static_cast<uint32_t>(p0);
}

// One Philox4x32-10 block: ten rounds with the key bumped by the Weyl constants between
// rounds (the standard Salmon et al. 2011 construction that TensorFlow uses).
inline void philox4x32_10(const uint32_t counter_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t c0 = counter_in[0], c1 = counter_in[1], c2 = counter_in[2], c3 = counter_in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int round = 0; round < 10; ++round) {
    philox_round(c0, c1, c2, c3, k0, k1);
    k0 += kPhiloxWeylA;
    k1 += kPhiloxWeylB;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// Key and counter exactly as TensorFlow's StatelessRandomGetKeyCounter derives them from a
// two-element seed: the seed words form a counter that is encrypted once under a fixed key;
// the first two output words become the key, the last two the upper counter half.
inline Philox4x32 tf_seed_to_philox(int64_t seed0, int64_t seed1) {
  const uint64_t s0 = static_cast<uint64_t>(seed0);
  const uint64_t s1 = static_cast<uint64_t>(seed1);
  const uint32_t counter[4] = {static_cast<uint32_t>(s0), static_cast<uint32_t>(s0 >> 32),
                               static_cast<uint32_t>(s1), static_cast<uint32_t>(s1 >> 32)};
  const uint32_t key[2] = {0x3ec8f720u, 0x02461e29u};
  uint32_t mix[4];
  philox4x32_10(counter, key, mix);
  Philox4x32 state{};
  state.key[0] = mix[0];
  state.key[1] = mix[1];
  state.counter[0] = 0;
  state.counter[1] = 0;
  state.counter[2] = mix[2];
  state.counter[3] = mix[3];
  return state;
}

// 23 random mantissa bits under the exponent of 1.0 give a float in [1, 2); minus one is
// then exact and lands in [0, 1) - TensorFlow's Uint32ToFloat.
inline float uint32_to_unit_float(uint32_t bits) {
  const uint32_t word = (bits & 0x7fffffu) | 0x3f800000u;
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value - 1.0f;
}

// Element `index` of tf.random.stateless_uniform(shape, seed=(seed0, seed1), dtype=float32)
// lives in Philox block index/4 (128-bit counter advanced by that many steps), word index%4.
// Fills out[begin, end) of the flat row-major sample.  Blocks are computed kLanes at a
// time, lane by lane in plain loops (the 32x32->64-bit products vectorise; a lone block
// is a chain of dependent multiplies); integer arithmetic, so every build agrees bit for bit.
inline void tf_stateless_uniform_float(const Philox4x32& state, uint64_t begin, uint64_t end,
                                       float* out) {
  constexpr int kLanes = 16;
  const uint64_t low = (static_cast<uint64_t>(state.counter[1]) << 32) | state.counter[0];
  const uint64_t high = (static_cast<uint64_t>(state.counter[3]) << 32) | state.counter[2];
  uint64_t block = begin / 4;
  const uint64_t last = end == 0 ? 0 : (end - 1) / 4 + 1;  // one past the last block needed
  while (block < last) {
    uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
    for (int i = 0; i < kLanes; ++i) {
      const uint64_t new_low = low + block + static_cast<uint64_t>(i);
      const uint64_t new_high = high + (new_low < low ? 1 : 0);  // carry into the upper half
      c0[i] = static_cast<uint32_t>(new_low);
      c1[i] = static_cast<uint32_t>(new_low >> 32);
      c2[i] = static_cast<uint32_t>(new_high);
      c3[i] = static_cast<uint32_t>(new_high >> 32);
    }
    uint32_t k0 = state.key[0], k1 = state.key[1];
    for (int round = 0; round < 10; ++round) {
      for (int i = 0; i < kLanes; ++i) philox_round(c0[i], c1[i], c2[i], c3[i], k0, k1);
      k0 += kPhiloxWeylA;
      k1 += kPhiloxWeylB;
    }
    uint32_t words[4 * kLanes];
    for (int i = 0; i < kLanes; ++i) {
      words[4 * i] = c0[i];
      words[4 * i + 1] = c1[i];
      words[4 * i + 2] = c2[i];
      words[4 * i + 3] = c3[i];
    }
    // words[0] is element 4 * block; keep those in [begin, end).
    const uint64_t first = block * 4 < begin ? begin : block * 4;
    const uint64_t stop = block * 4 + 4 * kLanes < end ? block * 4 + 4 * kLanes : end;
    for (uint64_t index = first; index < stop; ++index) {
      out[index - begin] = uint32_to_unit_float(words[index - block * 4]);
    }
    block += kLanes;
  }
}

// ---------------------------------------------------------------------------------------
// Per-unit filter coefficients.
// ---------------------------------------------------------------------------------------

// Smallest time constant; keeps exp(-dt/tau) finite for tau <= 0.
template <typename T>
constexpr T kMinTau = static_cast<T>(1e-8);

// dt / max(tau, 1e-8) in the element type.
template <typename T>
inline T dt_over_tau(T dt, T tau) {
  return dt / (tau > kMinTau<T> ? tau : kMinTau<T>);
}

// Coefficients of the lowpass update y <- keep*y + gain*x.
template <typename T>
struct LowpassCoeff {
  T keep;  // a = exp(-dt / tau)
  T gain;  // 1 - a
};

// exp(-r) rounded once to T: evaluated in double, so float32 results are the correctly
// rounded value on every machine (float32 exp implementations differ by an ulp or two, and
// the alpha filter's 1 - a - r*a amplifies such differences a thousandfold for small r).
template <typename T>
inline T exp_neg(T r) {
  return static_cast<T>(std::exp(-static_cast<double>(r)));
}

template <typename T>
inline LowpassCoeff<T> lowpass_coeff(T dt, T tau) {
  const T a = exp_neg(dt_over_tau(dt, tau));
  return {a, static_cast<T>(1) - a};
}

// Coefficients of the zero-order-hold alpha filter (see alpha_block).
template <typename T>
struct AlphaCoeff {
  T a;       // exp(-dt / tau)
  T one_a;   // 1 - a
  T ra;      // r * a with r = dt / tau
  T input2;  // 1 - a - r*a
};

template <typename T>
inline AlphaCoeff<T> alpha_coeff(T dt, T tau) {
  const T r = dt_over_tau(dt, tau);
  const T a = exp_neg(r);
  const T one_a = static_cast<T>(1) - a;
  const T ra = r * a;
  return {a, one_a, ra, one_a - ra};
}

// ---------------------------------------------------------------------------------------
// Time loops over one block of units.  `n` units are contiguous in every time step; step t
// of the sequence starts `step` elements after step t-1 (T*U... for batch-major data, B*U
// for time-major data).  The state of the block lives in the caller's small buffer for the
// whole walk through time, and the inner loops have no branches so that they vectorise.
// ---------------------------------------------------------------------------------------

// kRelu: the rates go through a Relu first (negatives as 0, NaN and -0 unchanged, as
// onnxruntime's Relu), for EventConvSpiking's fused Relu.
template <typename T, bool kRelu = false>
inline void spiking_block(const T* __restrict rates, T* __restrict spikes, T* __restrict voltage,
                          int64_t n, int64_t steps, int64_t step, T dt) {
  for (int64_t t = 0; t < steps; ++t) {
    const T* __restrict r = rates + t * step;
    T* __restrict s = spikes + t * step;
    for (int64_t i = 0; i < n; ++i) {
      const T rate = kRelu && r[i] < T(0) ? T(0) : r[i];
      const T v = voltage[i] + rate * dt;
      // Vectorises to a single rounding instruction where the target has one (SSE4.1,
      // AVX2: see spiking_loops.cc); floor is exact, so every variant agrees bit for bit.
      const T count = std::floor(v);
      voltage[i] = v - count;
      s[i] = count / dt;
    }
  }
}

template <typename T>
inline void lowpass_block(const T* __restrict x, T* __restrict y, T* __restrict level,
                          const T* __restrict keep, const T* __restrict gain, int64_t n,
                          int64_t steps, int64_t step) {
  for (int64_t t = 0; t < steps; ++t) {
    const T* __restrict xt = x + t * step;
    T* __restrict yt = y + t * step;
    for (int64_t i = 0; i < n; ++i) {
      const T value = gain[i] * xt[i] + keep[i] * level[i];
      level[i] = value;
      yt[i] = value;
    }
  }
}

template <typename T>
inline void alpha_block(const T* __restrict x, T* __restrict y, T* __restrict s1, T* __restrict s2,
                        const T* __restrict a, const T* __restrict one_a, const T* __restrict ra,
                        const T* __restrict input2, int64_t n, int64_t steps, int64_t step) {
  for (int64_t t = 0; t < steps; ++t) {
    const T* __restrict xt = x + t * step;
    T* __restrict yt = y + t * step;
    for (int64_t i = 0; i < n; ++i) {
      const T u = xt[i];
      const T old1 = s1[i];
      const T new2 = ra[i] * old1 + a[i] * s2[i] + input2[i] * u;
      s1[i] = a[i] * old1 + one_a[i] * u;
      s2[i] = new2;
      yt[i] = new2;
    }
  }
}

}  // namespace spikeonnx

// ---------------------------------------------------------------------------------------
// Compiled entry points of the time loops (spiking_loops.cc).  Each is built several times
// for different x86 instruction sets and picked when the library is loaded; every variant
// performs the same IEEE operations (no FMA), so results do not depend on the CPU.
// With `stream` true the sequence output is written with non-temporal stores where the CPU
// has them (see stream_loops.h): same results, less memory traffic for outputs too big to
// stay in cache (callers decide with stream_output()).
// ---------------------------------------------------------------------------------------

namespace spikeonnx {

// tf_stateless_uniform_float, compiled per instruction set like the loops (integer
// arithmetic: every variant gives the same words).
void stateless_uniform(const Philox4x32& state, uint64_t begin, uint64_t end, float* out);
// `relu`: the rates go through a Relu first (see spiking_block).
void spiking_loop(const float* rates, float* spikes, float* voltage, int64_t n, int64_t steps,
                  int64_t step, float dt, bool stream, bool relu = false);
void spiking_loop(const double* rates, double* spikes, double* voltage, int64_t n, int64_t steps,
                  int64_t step, double dt, bool stream, bool relu = false);
void lowpass_loop(const float* x, float* y, float* level, const float* keep, const float* gain,
                  int64_t n, int64_t steps, int64_t step, bool stream);
void lowpass_loop(const double* x, double* y, double* level, const double* keep, const double* gain,
                  int64_t n, int64_t steps, int64_t step, bool stream);
void alpha_loop(const float* x, float* y, float* s1, float* s2, const float* a, const float* one_a,
                const float* ra, const float* input2, int64_t n, int64_t steps, int64_t step,
                bool stream);
void alpha_loop(const double* x, double* y, double* s1, double* s2, const double* a,
                const double* one_a, const double* ra, const double* input2, int64_t n,
                int64_t steps, int64_t step, bool stream);

}  // namespace spikeonnx
