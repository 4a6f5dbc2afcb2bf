// EventConv: ONNX Conv, 1-D (N, C, W) or 2-D (N, C, H, W), event-driven over the nonzeros
// of the input (see event_common.h).  Two event paths: scatter (every nonzero input element
// adds its kernel slice, all output channels of its group for each kernel tap that reaches
// a valid output position, to the output) and gather (the image's nonzeros bucketed by
// position, then every output position sums its taps' buckets in registers).  Both
// accumulate per sample in (positions, channels) order, so that additions run over
// contiguous output channels, then write out (channels, positions).  Dense inputs go to
// a direct convolution (see ConvDirect); conv_cost() picks the path per call.  Attributes
// as ONNX Conv: auto_pad, dilations, group, kernel_shape, pads, strides.  Also the
// execution-only EventConvRelu and EventConvSpiking (see EventConvSpikingKernel).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "event_common.h"
#include "spiking_sequences.h"

namespace spikeonnx {
namespace {

constexpr const char* kOp = "EventConv";

// Images whose density decides between the paths (the rest are not read twice).
constexpr int64_t kSampledImages = 32;

// Which computation serves a call: chosen per call from the sampled density by the cost
// model below, or fixed for tests and benchmarks with the environment variable
// SPIKEONNX_EVENT_CONV_PATH = scatter | gather | dense | channels (read when the kernel
// is created; dense and channels are the two dense kernels: see choose()).
enum class ConvPath { kAuto, kScatter, kGather, kDense, kChannels };

// Modelled time per image, in ns on the development machine (AMD EPYC, AVX-512, one
// thread, 128 images a call), of the three paths: a least-squares fit (relative error) to
// 90 timings of 3x3 convolutions (C 3..64, M 16..64, 8x8..32x32, stride 1 and 2, density
// 1..100 %), which picks the fastest path in 29 of 30 cases and one 3 % slower.  Terms:
//   in = C H W input elements, out = M OH OW output elements, d = density,
//   units = C OH OW KH KW vectors(M / group) (the dense multiply-adds, in vectors),
//   taps = OH OW KH KW group (each output position's kernel taps),
//   large = out when an image's output is over 64 KiB (the scatter's accumulator leaves
//   L1).
// Scatter: each nonzero adds its taps' weight rows to the accumulator rows they reach;
// a strided kernel reaches a varying number of rows per input (branches mispredict).
// Gather: the image's nonzeros are bucketed by position; each output position then sums
// its taps' buckets in registers.  Dense: the direct convolution (see ConvDirect).
struct ConvCost {
  double scatter, gather, dense;
};

ConvCost conv_cost(double in, double out, double units, double taps, double density, double taps_per_input,
                   bool strided, bool large) {
  ConvCost c;
  c.scatter = 0.277 * in + 0.268 * out + 0.095 * (large ? out : 0.0) + 0.873 * density * units +
              density * in * (2.73 * taps_per_input + (strided ? 12.4 : 0.0));
  c.gather = 0.525 * in + 0.266 * out + 2.74 * taps + 0.798 * density * units;
  c.dense = 0.445 * in + 0.103 * out + 0.314 * units;
  return c;
}

// For every input index along one spatial axis, the kernel taps that reach an output
// (tap k reaches output (i + pad - k * dilation) / stride when that is a whole, in-range
// number) as (tap, output) pairs: computed once per call, so the scatter loop does no
// division (layout of ConvScatter's tables).
class TapTable {
 public:
  TapTable(int64_t in, int64_t kernel, int64_t pad, int64_t dilation, int64_t stride, int64_t out)
      : start_(static_cast<size_t>(in + 1), 0) {
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t k = 0; k < kernel; ++k) {
        const int64_t t = i + pad - k * dilation;
        if (t < 0) break;  // t only decreases with k
        if (t % stride == 0 && t / stride < out) {
          taps_.push_back(static_cast<int32_t>(k));
          taps_.push_back(static_cast<int32_t>(t / stride));
        }
      }
      start_[static_cast<size_t>(i + 1)] = static_cast<int32_t>(taps_.size() / 2);
    }
  }
  const int32_t* start() const { return start_.data(); }
  const int32_t* taps() const { return taps_.data(); }

 private:
  std::vector<int32_t> start_;
  std::vector<int32_t> taps_;
};

// Geometry of one call, spatial axes as 2-D (a 1-D conv has H = KH = 1).
struct ConvGeometry : ConvShape {
  int64_t n = 0, group = 1;  // samples, groups
};

struct ConvAttributes {
  std::string auto_pad = "NOTSET";
  std::vector<int64_t> dilations, kernel_shape, pads, strides;
  int64_t group = 1;
};

// Output size along one axis and the leading pad (ONNX Conv rules); -1 if empty.
int64_t output_size(const ConvAttributes& a, size_t axis, size_t spatial, int64_t in, int64_t kernel,
                    int64_t* pad_begin) {
  const int64_t stride = a.strides.empty() ? 1 : a.strides[axis];
  const int64_t dilation = a.dilations.empty() ? 1 : a.dilations[axis];
  const int64_t span = dilation * (kernel - 1) + 1;
  if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
    const int64_t out = (in + stride - 1) / stride;
    const int64_t total = std::max<int64_t>(0, (out - 1) * stride + span - in);
    *pad_begin = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    return out;
  }
  int64_t begin = 0, end = 0;
  if (a.auto_pad == "NOTSET" && !a.pads.empty()) {
    begin = a.pads[axis];
    end = a.pads[axis + spatial];
  }
  *pad_begin = begin;
  const int64_t padded = in + begin + end;
  return padded < span ? -1 : (padded - span) / stride + 1;
}

// Values in a 4 KiB page; the place in `room` (of at least that many values more than
// needed) at `like`'s offset modulo 4 KiB: a buffer of rates read by spiking_loop sits
// like the spikes it writes (see PlacedBuffer).
template <typename T>
constexpr int64_t kPageValues = static_cast<int64_t>(kAliasPage / sizeof(T));
template <typename T>
T* at_offset_of(T* room, const T* like) {
  return room + ((reinterpret_cast<uintptr_t>(like) - reinterpret_cast<uintptr_t>(room)) % kAliasPage) / sizeof(T);
}

// A consumer fused after the convolution (EventConvSpiking): the images come in
// sequences of `steps`, each taken whole by one pool item, in step order.  Each image is
// convolved into a buffer of the item's (which stays in cache; with `channels_last` then
// transposed there to (positions, channels)), placed like its own output in `place_like`
// (see at_offset_of), and handed to `step(i, t, rates, state, raw)` instead of being written
// to y; `state` is the item's buffer of `state_size` values, kept from step to step, 2
// KiB after the sequence's first output modulo 4 KiB (see PlacedBuffer).  With
// `channels_last`, the paths that accumulate an image as (positions, M) rows (the event
// paths and the channels kernel) hand over those rows themselves: they are the rates in
// the output's layout, with no transpose either way, but without the fused Relu, which
// `raw` (true) then asks the step for.
template <typename T>
struct Sequences {
  int64_t steps = 1;
  bool channels_last = false;
  const T* place_like = nullptr;
  int64_t state_size = 0;
  std::function<void(int64_t, int64_t, const T*, T*, bool)> step;
};

struct EventConvKernel {
  static constexpr size_t kInputs = 3;  // X, W, B
  static constexpr size_t kRequiredInputs = 2;
  static constexpr const char* kReluOp = "EventConvRelu";  // with a fused Relu (ReluFused)

  EventConvKernel(const OrtApi* api, const OrtKernelInfo* info) : EventConvKernel(api, info, kOp, false) {}

 protected:  // ReluFused's constructor
  EventConvKernel(const OrtApi* api, const OrtKernelInfo* info, const char* op, bool relu)
      : at_(where(op, event_node_name(api, info))), relu_(relu) {
    event_string_attribute(api, info, at_, "auto_pad", &attrs_.auto_pad);
    event_ints_attribute(api, info, at_, "dilations", &attrs_.dilations);
    event_ints_attribute(api, info, at_, "kernel_shape", &attrs_.kernel_shape);
    event_ints_attribute(api, info, at_, "pads", &attrs_.pads);
    event_ints_attribute(api, info, at_, "strides", &attrs_.strides);
    event_int_attribute(api, info, at_, "group", &attrs_.group);
    auto fail = [this](const std::string& what) { throw Ort::Exception(at_ + ": " + what, ORT_INVALID_ARGUMENT); };
    const std::string& ap = attrs_.auto_pad;
    if (ap != "NOTSET" && ap != "VALID" && ap != "SAME_UPPER" && ap != "SAME_LOWER") {
      fail("attribute 'auto_pad' must be NOTSET, VALID, SAME_UPPER or SAME_LOWER; got '" + ap + "'");
    }
    if (attrs_.group < 1) fail("attribute 'group' must be >= 1; got " + std::to_string(attrs_.group));
    for (int64_t s : attrs_.strides) {
      if (s < 1) fail("attribute 'strides' must be >= 1; got " + shape_str(attrs_.strides));
    }
    for (int64_t d : attrs_.dilations) {
      if (d < 1) fail("attribute 'dilations' must be >= 1; got " + shape_str(attrs_.dilations));
    }
    for (int64_t p : attrs_.pads) {
      if (p < 0) fail("attribute 'pads' must be >= 0; got " + shape_str(attrs_.pads));
    }
    if (!attrs_.pads.empty() && ap != "NOTSET") fail("attributes 'pads' and 'auto_pad' = '" + ap + "' exclude each other");
    if (const char* forced = std::getenv("SPIKEONNX_EVENT_CONV_PATH"); forced != nullptr && *forced != '\0') {
      const std::string name = forced;
      if (name == "scatter") {
        path_ = ConvPath::kScatter;
      } else if (name == "gather") {
        path_ = ConvPath::kGather;
      } else if (name == "dense") {
        path_ = ConvPath::kDense;
      } else if (name == "channels") {
        path_ = ConvPath::kChannels;
      } else if (name != "auto") {
        fail("environment variable SPIKEONNX_EVENT_CONV_PATH must be auto, scatter, gather, dense or channels; got '" +
             name + "'");
      }
    }
    // A constant weight is repacked once, here.
    const InputView w = constant_input(api, info, 1);
    if (w.present && (w.shape.size() == 3 || w.shape.size() == 4) && w.shape[0] % attrs_.group == 0) {
      packed_source_ = w.data;
      const int64_t rows = event_loops().gemm_rows();
      if (w.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        packed_float_ = pack(static_cast<const float*>(w.data), w.shape, attrs_.group);
        tiles_float_ = pack_tiles(static_cast<const float*>(w.data), w.shape, attrs_.group, rows);
      } else if (w.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE) {
        packed_double_ = pack(static_cast<const double*>(w.data), w.shape, attrs_.group);
        tiles_double_ = pack_tiles(static_cast<const double*>(w.data), w.shape, attrs_.group, rows);
      }
    }
  }

 public:
  Ort::Status Compute(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const InputView x = get_input(ctx, 0);
      const InputView w = get_input(ctx, 1);
      const InputView b = get_input(ctx, 2);
      const ConvGeometry g = check(x, w, b);
      Ort::UnownedValue out = ctx.GetOutput(0, output_shape(g, x));
      if (g.n == 0 || g.m == 0) return Ort::Status{nullptr};
      if (x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        run<float>(ctx, g, static_cast<const float*>(x.data), w, b, out.GetTensorMutableData<float>(), packed_float_,
                   tiles_float_);
      } else {
        run<double>(ctx, g, static_cast<const double*>(x.data), w, b, out.GetTensorMutableData<double>(),
                    packed_double_, tiles_double_);
      }
    } catch (const std::exception& e) {
      return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }

  // Output shape (N, M, *spatial) of a checked geometry.
  static std::vector<int64_t> output_shape(const ConvGeometry& g, const InputView& x) {
    std::vector<int64_t> shape{g.n, g.m};
    if (x.shape.size() == 4) shape.push_back(g.oh);
    shape.push_back(g.ow);
    return shape;
  }

  // Output type and shape (N, M, *spatial) when the input's spatial sizes are numbers.
  static OrtStatusPtr infer(const OrtCustomOp*, OrtShapeInferContext* ctx) {
    const InferredShape x = inferred_input(ctx, 0);
    const InferredShape w = inferred_input(ctx, 1);
    if (!x.ok || !w.ok || (x.dims.size() != 3 && x.dims.size() != 4) || w.dims.size() != x.dims.size()) {
      return nullptr;
    }
    ConvAttributes a;
    inferred_string_attribute(ctx, "auto_pad", &a.auto_pad);
    inferred_ints_attribute(ctx, "dilations", &a.dilations);
    inferred_ints_attribute(ctx, "pads", &a.pads);
    inferred_ints_attribute(ctx, "strides", &a.strides);
    const size_t spatial = x.dims.size() - 2;
    if ((!a.dilations.empty() && a.dilations.size() != spatial) || (!a.strides.empty() && a.strides.size() != spatial) ||
        (!a.pads.empty() && a.pads.size() != 2 * spatial) || !x.known(0) || w.dims[0] < 0) {
      return nullptr;
    }
    std::vector<int64_t> dims{x.dims[0], w.dims[0]};
    std::vector<std::string> symbols{x.symbols[0], ""};
    for (size_t k = 0; k < spatial; ++k) {
      int64_t pad = 0;
      if (x.dims[2 + k] < 0 || w.dims[2 + k] < 0) return nullptr;
      const int64_t o = output_size(a, k, spatial, x.dims[2 + k], w.dims[2 + k], &pad);
      if (o < 1) return nullptr;
      dims.push_back(o);
      symbols.emplace_back();
    }
    set_inferred_output(ctx, 0, x.type, dims, symbols);
    return nullptr;
  }

 protected:  // the rest is shared with EventConvSpikingKernel
  // Weight (M, C/g, [KH,] KW) as [c][kh][kw][m'] (c = g * C/g + c', m = g * M/g + m'):
  // the output channels of one input channel's kernel tap are contiguous.
  template <typename T>
  static std::vector<T> pack(const T* w, const std::vector<int64_t>& shape, int64_t group) {
    const int64_t m = shape[0], cg = shape[1];
    const int64_t taps = shape.size() == 4 ? shape[2] * shape[3] : shape[2];
    const int64_t mg = m / group;
    std::vector<T> out(static_cast<size_t>(m * cg * taps));
    for (int64_t oc = 0; oc < m; ++oc) {
      const int64_t grp = oc / mg, mo = oc % mg;
      for (int64_t ci = 0; ci < cg; ++ci) {
        for (int64_t t = 0; t < taps; ++t) {
          out[static_cast<size_t>(((grp * cg + ci) * taps + t) * mg + mo)] = w[(oc * cg + ci) * taps + t];
        }
      }
    }
    return out;
  }

  ConvGeometry check(const InputView& x, const InputView& w, const InputView& b) const {
    check_float_input(at_, "X", x, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED, "(N, C, [H,] W)");
    check_float_input(at_, "W", w, x.type, "(M, C/group, [KH,] KW)");
    const size_t rank = x.shape.size();
    if (rank != 3 && rank != 4) {
      throw OpError(at_ + ": input 'X' must be (N, C, W) or (N, C, H, W) (1-D or 2-D convolution" +
                    std::string(input_last_ ? "; channels-last: (N, W, C) or (N, H, W, C)" : "") + "); got shape " +
                    shape_str(x.shape));
    }
    if (w.shape.size() != rank) {
      throw OpError(at_ + ": weight 'W' must have the rank of X (" + std::to_string(rank) + "); got shape " +
                    shape_str(w.shape));
    }
    const size_t spatial = rank - 2;
    auto sized = [&](const std::vector<int64_t>& v, size_t n, const char* name) {
      if (!v.empty() && v.size() != n) {
        throw OpError(at_ + ": attribute '" + name + "' has " + std::to_string(v.size()) + " values; the " +
                      std::to_string(spatial) + "-D convolution needs " + std::to_string(n));
      }
    };
    sized(attrs_.strides, spatial, "strides");
    sized(attrs_.dilations, spatial, "dilations");
    sized(attrs_.kernel_shape, spatial, "kernel_shape");
    sized(attrs_.pads, 2 * spatial, "pads");
    for (size_t k = 0; k < attrs_.kernel_shape.size(); ++k) {
      if (attrs_.kernel_shape[k] != w.shape[2 + k]) {
        throw OpError(at_ + ": attribute 'kernel_shape' " + shape_str(attrs_.kernel_shape) +
                      " does not match the weight's shape " + shape_str(w.shape));
      }
    }
    ConvGeometry g;
    g.n = x.shape[0];
    // (N, C, [H,] W), or channels-last (N, [H,] W, C) (EventConvSpiking's input_channels_last)
    const size_t first = input_last_ ? 1 : 2;
    g.c = input_last_ ? x.shape[rank - 1] : x.shape[1];
    g.h = rank == 4 ? x.shape[first] : 1;
    g.w = x.shape[first + (rank == 4 ? 1 : 0)];
    g.m = w.shape[0];
    g.kh = rank == 4 ? w.shape[2] : 1;
    g.kw = w.shape[rank - 1];
    g.group = attrs_.group;
    if (g.c != w.shape[1] * g.group || g.m % g.group != 0) {
      throw OpError(at_ + ": X has " + std::to_string(g.c) + " channels and W has shape " + shape_str(w.shape) +
                    " with group = " + std::to_string(g.group) +
                    "; need C = W.shape[1] * group and M = W.shape[0] divisible by group");
    }
    for (size_t k = 1; k < rank; ++k) {
      if (w.shape[k] < 1) throw OpError(at_ + ": weight 'W' has an empty kernel axis: " + shape_str(w.shape));
    }
    g.cg = w.shape[1];
    g.mg = g.m / g.group;
    if (rank == 4) {
      g.sh = attrs_.strides.empty() ? 1 : attrs_.strides[0];
      g.dh = attrs_.dilations.empty() ? 1 : attrs_.dilations[0];
      g.oh = output_size(attrs_, 0, spatial, g.h, g.kh, &g.pt);
    }
    const size_t last = spatial - 1;
    g.sw = attrs_.strides.empty() ? 1 : attrs_.strides[last];
    g.dw = attrs_.dilations.empty() ? 1 : attrs_.dilations[last];
    g.ow = output_size(attrs_, last, spatial, g.w, g.kw, &g.pl);
    if (g.oh < 1 || g.ow < 1) {
      throw OpError(at_ + ": the kernel " + shape_str(w.shape) + " (with dilations and pads) does not fit the input " +
                    shape_str(x.shape) + ": the output would be empty");
    }
    if (b.present) {
      check_float_input(at_, "B", b, x.type, "(M,)");
      if (b.shape.size() != 1 || b.shape[0] != g.m) {
        throw OpError(at_ + ": bias 'B' must have shape (" + std::to_string(g.m) + ",); got " + shape_str(b.shape));
      }
    }
    return g;
  }

  // y (g.n images) = the convolution of images x, by the path chosen for the images;
  // `starts`, when given, are x's runs of equal images (repeated_rows), already found.
  template <typename T>
  void run(const Ort::KernelContext& ctx, const ConvGeometry& g, const T* x, const InputView& w_in,
           const InputView& b_in, T* y, const std::vector<T>& packed, const std::vector<T>& tiles,
           const std::vector<int64_t>* starts = nullptr) const {
    const int64_t in_size = g.c * g.h * g.w;
    // images (n of them) -> their outputs, by the path chosen for those images
    auto product = [&](const T* xs, int64_t n, T* ys) {
      ConvGeometry some = g;
      some.n = n;
      const Sequences<T>* whole = nullptr;  // the images' outputs straight to ys
      convolve(ctx, some, xs, w_in, b_in, ys, packed, tiles, choose(some, xs), whole);
    };
    // images held over time steps: each run of equal images is computed once
    if (starts != nullptr) {
      on_run_starts(ctx, x, y, in_size, g.m * g.oh * g.ow, *starts, product);
    } else {
      on_distinct_rows(ctx, x, y, g.n, in_size, g.m * g.oh * g.ow, product);
    }
  }

  // y (g.n images) = the convolution of images x by `path` (or, with `seq`, handed over
  // in sequences: see Sequences).
  template <typename T>
  void convolve(const Ort::KernelContext& ctx, const ConvGeometry& g, const T* x, const InputView& w_in,
                const InputView& b_in, T* y, const std::vector<T>& packed, const std::vector<T>& tiles,
                ConvPath path, const Sequences<T>* seq) const {
    if (path == ConvPath::kChannels) {
      channel_images(ctx, g, x, w_in, b_in, y, packed, seq);
    } else if (path == ConvPath::kDense) {
      direct_images(ctx, g, x, w_in, b_in, y, tiles, seq);
    } else {
      images(ctx, g, x, w_in, b_in, y, packed, path == ConvPath::kGather, seq);
    }
  }

  // The path for images x (g.n of them): the forced one, or the cheapest by conv_cost at
  // the density of at most kSampledImages images spread over the batch (reading the whole
  // input once more costs about as much as the event path at low density).  `rows_out`:
  // the output is wanted channels-last, as the channels kernel's (positions, M) rows.
  template <typename T>
  ConvPath choose(const ConvGeometry& g, const T* x, bool rows_out = false) const {
    const int64_t in_size = g.c * g.h * g.w;
    const int64_t every = std::max<int64_t>(1, g.n / kSampledImages);
    int64_t nonzeros = 0, seen = 0;
    for (int64_t n = 0; n < g.n; n += every, seen += in_size) nonzeros += event_loops().count(x + n * in_size, in_size);
    const double density = static_cast<double>(nonzeros) / static_cast<double>(std::max<int64_t>(seen, 1));
    const int64_t lanes = event_loops().gather_lanes(T(0));  // values per SIMD vector
    const double positions_d = static_cast<double>(g.oh * g.ow);
    const double kernel_taps = static_cast<double>(g.kh * g.kw);
    const ConvCost cost =
        conv_cost(static_cast<double>(in_size), static_cast<double>(g.m) * positions_d,
                  static_cast<double>(g.c) * positions_d * kernel_taps * static_cast<double>((g.mg + lanes - 1) / lanes),
                  positions_d * kernel_taps * static_cast<double>(g.group), density,
                  kernel_taps / static_cast<double>(g.sh * g.sw), g.sh * g.sw > 1,
                  g.m * g.oh * g.ow * static_cast<int64_t>(sizeof(T)) > 64 * 1024);
    // The gather path needs whole vectors of output channels per group, and indexes the
    // elements of a sample with int32.
    const bool can_gather = g.mg % lanes == 0 && in_size + 16 <= INT32_MAX;
    ConvPath path = path_;
    if (path == ConvPath::kAuto) {
      path = can_gather && cost.gather < cost.scatter ? ConvPath::kGather : ConvPath::kScatter;
      if (cost.dense < std::min(cost.scatter, can_gather ? cost.gather : cost.scatter)) {
        // Two dense kernels (320 dense images, 3x3, 1 thread, ms, onnxruntime's Conv node
        // / planes / channels): output rows shorter than a vector or strided, the
        // channels one (C64 M64 8x8 -> 8x8 14.4 / 17.0 / 15.2, -> 4x4 5.0 / 5.7 / 5.1,
        // C32 M32 12x12 10.3 / 10.6 / 9.6, C32 M64 32x32 -> 16x16 42.7 / 37.9 / 33.6);
        // rows of whole vectors, or few multiply-adds per position, the planes (C32 M32
        // 16x16 17.8 / 16.1 / 17.1, C3 M32 32x32 13.0 / 7.7 / 11.4).  Wanted channels-last,
        // the planes kernel's output is transposed and the channels one's is not: fused
        // with spiking, C3 M32 32x32 planes 11.5, channels 10.1.
        const bool channels = g.mg % lanes == 0 &&
                              (rows_out || (g.cg * g.kh * g.kw >= 64 && (g.ow % lanes != 0 || g.sh * g.sw > 1)));
        path = channels ? ConvPath::kChannels : ConvPath::kDense;
      }
    }
    if (path == ConvPath::kGather && !can_gather) path = ConvPath::kScatter;
    if (path == ConvPath::kChannels && g.mg % lanes != 0) path = ConvPath::kDense;
    return path;
  }

  // Weight (M, C/g, [KH,] KW) in register tiles of `rows` output channels for the
  // direct convolution: [group][tile][k][rows] (k = (c', kh, kw), as the weight stores it;
  // channels past the group's last are zero).
  template <typename T>
  static std::vector<T> pack_tiles(const T* w, const std::vector<int64_t>& shape, int64_t group, int64_t rows) {
    const int64_t m = shape[0], mg = m / group;
    const int64_t k_size = shape[1] * (shape.size() == 4 ? shape[2] * shape[3] : shape[2]);
    const int64_t tiles = (mg + rows - 1) / rows;
    std::vector<T> out(static_cast<size_t>(group * tiles * k_size * rows), T(0));
    for (int64_t oc = 0; oc < m; ++oc) {
      const int64_t grp = oc / mg, t = (oc % mg) / rows, r = (oc % mg) % rows;
      for (int64_t k = 0; k < k_size; ++k) {
        out[static_cast<size_t>(((grp * tiles + t) * k_size + k) * rows + r)] = w[oc * k_size + k];
      }
    }
    return out;
  }

  // y (g.n images) = the convolution of images x by the dense path with the output
  // channels in the vectors (see ConvChannels).
  template <typename T>
  void channel_images(const Ort::KernelContext& ctx, const ConvGeometry& g, const T* x, const InputView& w_in,
                      const InputView& b_in, T* y, const std::vector<T>& packed, const Sequences<T>* seq) const {
    const EventLoops& loops = event_loops();
    std::vector<T> local;
    const T* wp = packed_or_now(packed, packed_source_, w_in, &local, [&] {
      return pack(static_cast<const T*>(w_in.data), w_in.shape, g.group);
    }).data();
    ConvChannels<T> d;
    static_cast<ConvShape&>(d) = g;
    const int64_t ph = (g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    d.pw = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
    d.plane = ph * d.pw;
    std::vector<int64_t> tap(static_cast<size_t>(g.kh * g.kw));
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      for (int64_t kx = 0; kx < g.kw; ++kx) tap[static_cast<size_t>(ky * g.kw + kx)] = ky * g.dh * d.pw + kx * g.dw;
    }
    d.weight = wp;
    d.bias = static_cast<const T*>(b_in.data);
    d.tap = tap.data();
    d.input_last = input_last_;  // read channels-last as it pads the image
    const int64_t positions = g.oh * g.ow;
    const bool stream = seq == nullptr && stream_output(g.n * g.m * positions, static_cast<int64_t>(sizeof(T)));
    struct Scratch {
      std::vector<T> padded, acc;
      ConvChannels<T> mine;
    };
    auto setup = [&] {
      Scratch s{std::vector<T>(static_cast<size_t>(g.c * d.plane)),
                std::vector<T>(static_cast<size_t>((positions + 16) * g.m + kPageValues<T>)), d};
      s.mine.padded = s.padded.data();
      s.mine.acc = s.acc.data();
      return s;
    };
    each_image(ctx, g, y, seq, setup, [&](Scratch& s, int64_t n, T* yn, const T* like) {
      s.mine.acc = like != nullptr ? at_offset_of(s.acc.data(), like) : s.acc.data();
      loops.channels(s.mine, x + n * g.c * g.h * g.w);
      return rows_or_transpose(s.mine.acc, positions, g.m, yn, stream);
    }, true);
  }

  // y (g.n images) = the convolution of images x by the direct (dense) path.
  template <typename T>
  void direct_images(const Ort::KernelContext& ctx, const ConvGeometry& g, const T* x, const InputView& w_in,
                     const InputView& b_in, T* y, const std::vector<T>& packed, const Sequences<T>* seq) const {
    const EventLoops& loops = event_loops();
    const int64_t lanes = loops.gather_lanes(T(0));
    const int64_t k_size = g.cg * g.kh * g.kw;
    std::vector<T> local;
    const T* tiles = packed_or_now(packed, packed_source_, w_in, &local, [&] {
      return pack_tiles(static_cast<const T*>(w_in.data), w_in.shape, g.group, loops.gemm_rows());
    }).data();
    ConvDirect<T> d;
    static_cast<ConvShape&>(d) = g;
    d.hq = g.oh + ((g.kh - 1) * g.dh) / g.sh;
    const bool phases = g.ow % lanes == 0;  // a vector never straddles two output rows
    d.shifts = phases ? g.sw : g.kw;
    d.step = phases ? 1 : g.dw;
    d.pitch = phases ? g.ow + ((g.kw - 1) * g.dw) / g.sw : g.ow;
    d.wpad = (d.pitch - 1) * g.sw + (d.shifts - 1) * d.step + 1;
    const int64_t plane = d.hq * d.pitch;
    std::vector<int64_t> tap(static_cast<size_t>(k_size));
    for (int64_t c = 0, k = 0; c < g.cg; ++c) {
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        for (int64_t kx = 0; kx < g.kw; ++kx, ++k) {
          const int64_t py = (ky * g.dh) % g.sh, ay = (ky * g.dh) / g.sh;
          const int64_t s = phases ? (kx * g.dw) % g.sw : kx, ax = phases ? (kx * g.dw) / g.sw : 0;
          tap[static_cast<size_t>(k)] = ((c * g.sh + py) * d.shifts + s) * plane + ay * d.pitch + ax;
        }
      }
    }
    // Planes of rows of at most 8 values are filled from a table of every value's input
    // offset (the same for every channel): a loop per row of a few values costs more than
    // the copy (320 images of 64 channels, 3x3 stride 2, 8x8 -> 4x4: 6.6 -> 5.2 ms; rows
    // of 12 to 20 values filled faster by rows).
    std::vector<int32_t> source;
    if (d.pitch <= 8 && g.h * g.w <= INT32_MAX) {
      source.resize(static_cast<size_t>(g.sh * d.shifts * plane));
      for (int64_t py = 0, t = 0; py < g.sh; ++py) {
        for (int64_t s = 0; s < d.shifts; ++s) {
          for (int64_t i = 0; i < d.hq; ++i) {
            const int64_t a = i * g.sh + py - g.pt;
            for (int64_t j = 0; j < d.pitch; ++j, ++t) {
              const int64_t col = j * g.sw + s * d.step - g.pl;
              const bool inside = a >= 0 && a < g.h && col >= 0 && col < g.w;
              source[static_cast<size_t>(t)] = inside ? static_cast<int32_t>(a * g.w + col) : -1;
            }
          }
        }
      }
      d.source = source.data();
    }
    d.weight = tiles;
    d.bias = static_cast<const T*>(b_in.data);
    d.tap = tap.data();
    d.relu = relu_;
    // An output too big for the caches is written past them (as the spiking ops do): the
    // CNN of bench_events.py ran 2-5 % faster end to end on 1 thread, 1-3 % on 2.
    d.stream = seq == nullptr && stream_output(g.n * g.m * g.oh * g.ow, static_cast<int64_t>(sizeof(T)));
    const size_t room = static_cast<size_t>(g.c * g.sh * d.shifts * plane + lanes + d.wpad);
    struct Scratch {
      std::vector<T> planes;
      ConvDirect<T> mine;
      std::vector<T> planar;
    };
    auto setup = [&] {
      Scratch s{std::vector<T>(room), d, {}};
      s.mine.planes = s.planes.data();
      return s;
    };
    each_image(ctx, g, y, seq, setup, [&](Scratch& s, int64_t n, T* yn, const T*) -> const T* {
      loops.direct(s.mine, planar_image(g, x, n, &s.planar), yn);
      return nullptr;
    }, false);
  }

  // The image's (positions, m) accumulator rows `acc` as the path's output: transposed
  // to (m, positions) into yn (the fused Relu on the way), or, when yn is null (a
  // channels-last Sequences, see each_image), returned as they are (the Relu left to the
  // consumer).  Returns the rows handed over, or null.
  template <typename T>
  const T* rows_or_transpose(T* acc, int64_t positions, int64_t m, T* yn, bool stream) const {
    if (yn == nullptr) return acc;
    event_loops().transpose(acc, positions, m, yn, positions, stream, relu_);
    return nullptr;
  }

  // image(n, yn, null) for every image n of `g`, yn its output: y + n * out_size, or with
  // `seq` a sequence buffer (see Sequences), on the pool; `setup()` makes each item's
  // scratch.  image() returns null, or, when `rows` (the path accumulates (positions, M)
  // rows) and `seq` is channels-last, called as image(n, null, like), the image's rates
  // in that layout, placed like `like`, its spikes, modulo 4 KiB (see PlacedBuffer).
  template <typename T, typename Setup, typename Image>
  static void each_image(const Ort::KernelContext& ctx, const ConvGeometry& g, T* y, const Sequences<T>* seq,
                         const Setup& setup, const Image& image, bool rows) {
    const int64_t out_size = g.m * g.oh * g.ow;
    const int64_t steps = seq != nullptr ? seq->steps : 1;
    const bool as_rows = seq != nullptr && seq->channels_last && rows;
    const bool turn = seq != nullptr && seq->channels_last && !rows;
    const size_t image_room = static_cast<size_t>(out_size + kPageValues<T>);
    in_chunks(ctx, g.n / steps, [&](int64_t first, int64_t last) {
      auto scratch = setup();
      // Not value-initialised: every element is written before it is read.
      const std::unique_ptr<T[]> room(seq != nullptr && !as_rows ? new T[image_room] : nullptr);
      const std::unique_ptr<T[]> turned(turn ? new T[image_room] : nullptr);
      const std::unique_ptr<T[]> state(
          seq != nullptr ? new T[static_cast<size_t>(seq->state_size + 2 * kPageValues<T>)] : nullptr);
      for (int64_t i = first; i < last; ++i) {
        if (seq == nullptr) {
          image(scratch, i, y + i * out_size, nullptr);
          continue;
        }
        // the sequence's state stays put through its steps, placed against its first
        T* kept = at_offset_of(state.get(), seq->place_like + i * steps * out_size) + kPageValues<T> / 2;
        for (int64_t t = 0; t < steps; ++t) {
          const T* like = seq->place_like + (i * steps + t) * out_size;
          if (as_rows) {
            seq->step(i, t, image(scratch, i * steps + t, nullptr, like), kept, true);
            continue;
          }
          T* rates = at_offset_of(room.get(), like);
          image(scratch, i * steps + t, rates, nullptr);
          if (turn) {
            T* last_rates = at_offset_of(turned.get(), like);
            to_channels_last(g, rates, 1, last_rates);
            rates = last_rates;
          }
          seq->step(i, t, rates, kept, false);
        }
      }
    });
  }

  // out (n images of (positions, M)) = images x (n of (M, positions)).
  template <typename T>
  static void to_channels_last(const ConvGeometry& g, const T* x, int64_t n, T* out) {
    const int64_t positions = g.oh * g.ow, out_size = g.m * positions;
    for (int64_t i = 0; i < n; ++i) {
      event_loops().transpose(x + i * out_size, g.m, positions, out + i * out_size, g.m, false, false);
    }
  }

  // fn(first, last) for chunks of the items [0, n) on the pool: at most 32 items, as
  // each allocates its scratch (often >= 128 KiB, i.e. fresh pages from the system that
  // fault in on first touch).
  template <typename Fn>
  static void in_chunks(const Ort::KernelContext& ctx, int64_t n, const Fn& fn) {
    constexpr int64_t kMaxItems = 32;
    const int64_t chunk = (n + kMaxItems - 1) / kMaxItems;
    const int64_t items = (n + chunk - 1) / chunk;
    auto work = [&](size_t item) {
      const int64_t first = static_cast<int64_t>(item) * chunk;
      fn(first, std::min(n, first + chunk));
    };
    parallel_for(ctx, static_cast<size_t>(items), work);
  }


  // y (g.n images) = the convolution of images x by the event path, gather or scatter.
  template <typename T>
  void images(const Ort::KernelContext& ctx, const ConvGeometry& g, const T* x, const InputView& w_in,
              const InputView& b_in, T* y, const std::vector<T>& packed, bool gather,
              const Sequences<T>* seq) const {
    const EventLoops& loops = event_loops();
    const int64_t in_size = g.c * g.h * g.w;
    std::vector<T> local;
    const T* wp = packed_or_now(packed, packed_source_, w_in, &local, [&] {
      return pack(static_cast<const T*>(w_in.data), w_in.shape, g.group);
    }).data();
    const T* bias = static_cast<const T*>(b_in.data);
    const int64_t positions = g.oh * g.ow;
    const int64_t taps = g.kh * g.kw;
    if (g.h * g.w > INT32_MAX || g.oh > INT32_MAX || g.ow > INT32_MAX) {
      throw OpError(at_ + ": input 'X' has " + std::to_string(g.h * g.w) +
                    " positions per channel; the event path takes at most 2^31 - 1");
    }
    const TapTable rows(g.h, g.kh, g.pt, g.dh, g.sh, g.oh);
    const TapTable cols(g.w, g.kw, g.pl, g.dw, g.sw, g.ow);
    ConvScatter<T> scatter;
    static_cast<ConvShape&>(scatter) = g;
    scatter.kh_kw = taps;
    scatter.row_start = rows.start();
    scatter.row_taps = rows.taps();
    scatter.col_start = cols.start();
    scatter.col_taps = cols.taps();
    scatter.weight = wp;
    scatter.bias = bias;
    scatter.input_last = input_last_ && g.group == 1;  // the gather reads a channels-last image as it is
    // A large output goes past the caches (see transpose).
    const bool stream = seq == nullptr && stream_output(g.n * g.m * positions, static_cast<int64_t>(sizeof(T)));
    // acc holds the sample's output as (positions, M) rows, so that each tap adds
    // contiguous output channels; it is then transposed to (M, positions), or handed to
    // a channels-last Sequences as it is.
    struct Scratch {
      std::vector<T> acc, val, sval, planar;
      std::vector<int32_t> idx, rows, chan_end, start, col;
      GatherScratch<T> gather;
    };
    auto setup = [&] {
      const size_t room = static_cast<size_t>(gather ? in_size + 16 : g.h * g.w);
      Scratch s;
      s.acc.resize(static_cast<size_t>(positions * g.m + kPageValues<T>));
      s.idx.resize(room);
      s.val.resize(room);
      if (gather) {
        s.rows.resize(room);
        s.sval.resize(room);
        s.chan_end.resize(static_cast<size_t>(g.c));
        s.start.resize(static_cast<size_t>(g.group * g.h * g.w + 1));
        s.col.resize(static_cast<size_t>(g.h * g.w));
        for (size_t p = 0; p < s.col.size(); ++p) s.col[p] = static_cast<int32_t>(static_cast<int64_t>(p) % g.w);
      }
      s.gather = GatherScratch<T>{s.idx.data(),  s.val.data(),  s.chan_end.data(), s.start.data(),
                                  s.rows.data(), s.sval.data(), s.col.data()};
      return s;
    };
    each_image(ctx, g, y, seq, setup, [&](Scratch& s, int64_t n, T* yn, const T* like) {
      T* acc = like != nullptr ? at_offset_of(s.acc.data(), like) : s.acc.data();
      // The gather writes every acc row, starting from the bias; the scatter adds to them.
      for (int64_t p = 0; p < positions && !gather; ++p) {
        T* a = acc + p * g.m;
        if (bias != nullptr) {
          std::copy(bias, bias + g.m, a);
        } else {
          std::fill(a, a + g.m, T(0));
        }
      }
      if (gather && scatter.input_last) {
        loops.gather(scatter, x + n * in_size, acc, s.gather);
      } else if (gather) {
        loops.gather(scatter, planar_image(g, x, n, &s.planar), acc, s.gather);
      } else {
        loops.conv(scatter, planar_image(g, x, n, &s.planar), acc, s.idx.data(), s.val.data());
      }
      return rows_or_transpose(acc, positions, g.m, yn, stream);
    }, true);
  }

  // Image n of x as (C, [H,] W): x's own, or, when X is channels-last, transposed into
  // `buffer` (the item's: the scatter, the gather of several groups and the planes
  // kernel read channel planes; the channels kernel reads channels-last as it pads).
  template <typename T>
  const T* planar_image(const ConvGeometry& g, const T* x, int64_t n, std::vector<T>* buffer) const {
    const int64_t in_size = g.c * g.h * g.w;
    if (!input_last_) return x + n * in_size;
    buffer->resize(static_cast<size_t>(in_size));
    event_loops().transpose(x + n * in_size, g.h * g.w, g.c, buffer->data(), g.h * g.w, false, false);
    return buffer->data();
  }

  std::string at_;
  bool relu_ = false;  // EventConvRelu
  bool input_last_ = false;  // X is channels-last (EventConvSpiking's input_channels_last)
  ConvPath path_ = ConvPath::kAuto;
  ConvAttributes attrs_;
  const void* packed_source_ = nullptr;
  std::vector<float> packed_float_, tiles_float_;  // for the event paths, for the direct path
  std::vector<double> packed_double_, tiles_double_;
};

// EventConv (EventConvRelu with attribute relu = 1) whose output, transposed to
// (N, *spatial, M) with channels_last = 1 (as tf2onnx exports Keras' layers), then
// reshaped to input 3 `shape` (int64; ONNX Reshape's rules, allowzero 0) as (B, T, *S),
// is the rates of a SpikingActivation (attributes dt, seed; batch-major, no
// initial_voltage, no final_voltage): one execution-only node whose output is the spikes
// (spikeonnx.events.fuse_spiking builds it for a session, never for a file).  When a time
// step is one image (B T = N), a sequence's images are convolved in order, each into a
// buffer that stays in cache (and transposed there), and spiked from there (see
// Sequences), so the convolution's output (in a spiking CNN the largest tensor) is never
// written to memory and read back.  The values are the nodes', bit for bit: the same
// convolution, then the same time loop (spiking_loop).
struct EventConvSpikingKernel : EventConvKernel {
  static constexpr const char* kSpikingOp = "EventConvSpiking";
  static constexpr size_t kInputs = 4;  // X, W, B (or empty), shape

  EventConvSpikingKernel(const OrtApi* api, const OrtKernelInfo* info)
      : EventConvKernel(api, info, kSpikingOp, read_relu(api, info)),
        spiking_(read_common_attributes(api, info, kSpikingOp)),
        seeded_(read_int_attribute(api, info, kSpikingOp, "seed", 0)) {
    if (spiking_.time_major) {
      throw Ort::Exception(at_ + ": attribute 'time_major' must be 0: the fused node takes batch-major (B, T, *S)",
                           ORT_INVALID_ARGUMENT);
    }
    channels_last_ = read_flag(api, info, "channels_last");
    spikes_last_ = read_flag(api, info, "spikes_channels_last");
    input_last_ = read_flag(api, info, "input_channels_last");
    if (channels_last_ && spikes_last_) {
      throw Ort::Exception(at_ + ": attributes 'channels_last' and 'spikes_channels_last' exclude each other (the "
                           "first numbers the units channels-last too)", ORT_INVALID_ARGUMENT);
    }
  }

  Ort::Status Compute(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const InputView x = get_input(ctx, 0);
      const InputView w = get_input(ctx, 1);
      const InputView b = get_input(ctx, 2);
      const ConvGeometry g = check(x, w, b);
      std::vector<int64_t> conv_shape = output_shape(g, x);
      if (channels_last_) std::rotate(conv_shape.begin() + 1, conv_shape.begin() + 2, conv_shape.end());
      std::vector<int64_t> shape = reshaped(conv_shape, get_input(ctx, 3));
      if (spikes_last_) {
        // The units keep their channels-first numbers (B, T, M, *spatial), and the spikes
        // are laid out (B, T, *spatial, M), as the output's shape says.
        if (!std::equal(conv_shape.begin() + 1, conv_shape.end(), shape.begin() + 2, shape.end())) {
          throw OpError(at_ + ": attribute 'spikes_channels_last' needs input 'shape' to be (B, T) and the "
                        "convolution's output shape " + shape_str(std::vector<int64_t>(conv_shape.begin() + 1,
                                                                                     conv_shape.end())) +
                        "; got " + shape_str(shape));
        }
        std::rotate(shape.begin() + 2, shape.begin() + 3, shape.end());
      }
      Ort::UnownedValue out = ctx.GetOutput(0, shape);
      const int64_t total = checked_count(conv_shape);
      if (total == 0) return Ort::Status{nullptr};
      SequenceLayout layout;
      layout.batch = shape[0];
      layout.steps = shape[1];
      layout.units = total / (layout.batch * layout.steps);
      layout.batch_stride = layout.steps * layout.units;
      layout.step = layout.units;
      if (x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        spikes<float>(ctx, g, static_cast<const float*>(x.data), w, b, out.GetTensorMutableData<float>(), layout,
                      packed_float_, tiles_float_);
      } else {
        spikes<double>(ctx, g, static_cast<const double*>(x.data), w, b, out.GetTensorMutableData<double>(), layout,
                       packed_double_, tiles_double_);
      }
    } catch (const std::exception& e) {
      return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }

  // No inferred output: its shape is the values of input `shape`, known only at run time
  // (and without this, EventConvKernel::infer would declare the convolution's shape).
  static OrtStatusPtr infer(const OrtCustomOp*, OrtShapeInferContext*) { return nullptr; }

 private:
  static bool read_relu(const OrtApi* api, const OrtKernelInfo* info) { return read_flag(api, info, "relu"); }

  // An optional INT attribute that must be 0 (the default) or 1.
  static bool read_flag(const OrtApi* api, const OrtKernelInfo* info, const char* name) {
    int64_t value = 0;
    const std::string at = where(kSpikingOp, event_node_name(api, info));
    event_int_attribute(api, info, at, name, &value);
    if (value != 0 && value != 1) {
      throw Ort::Exception(at + ": attribute '" + name + "' must be 0 or 1; got " + std::to_string(value),
                           ORT_INVALID_ARGUMENT);
    }
    return value == 1;
  }

  // The convolution's output shape `in` reshaped to input `shape` as ONNX Reshape does (0
  // copies the input's dimension, one -1 takes the rest), as (B, T, *S).
  std::vector<int64_t> reshaped(const std::vector<int64_t>& in, const InputView& shape) const {
    if (!shape.present || shape.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || shape.shape.size() != 1) {
      throw OpError(at_ + ": input 'shape' (the Reshape to (B, T, *S)) must be a 1-D int64 tensor; got " +
                    (shape.present ? std::string(dtype_str(shape.type)) + " " + shape_str(shape.shape) : "none"));
    }
    const int64_t* values = static_cast<const int64_t*>(shape.data);
    std::vector<int64_t> out(values, values + shape.shape[0]);
    const std::vector<int64_t> given = out;
    const int64_t total = checked_count(in);
    int64_t known = 1;
    size_t rest = out.size();
    auto fail = [&](const std::string& why) {
      throw OpError(at_ + ": input 'shape' " + shape_str(given) + " cannot reshape the convolution's output " +
                    shape_str(in) + ": " + why);
    };
    if (out.size() < 2) fail("the spiking activation needs (B, T, *S), at least 2 values");
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i] == 0) {
        if (i >= in.size()) fail("a 0 past the output's rank");
        out[i] = in[i];
      }
      if (out[i] == -1) {
        if (rest != out.size()) fail("more than one -1");
        rest = i;
        continue;
      }
      if (out[i] < 0) fail("a negative dimension other than -1");
      if (out[i] > 0 && known > INT64_MAX / out[i]) fail("too many elements");
      known *= out[i];
    }
    if (rest != out.size()) {
      if (known == 0 || total % known != 0) fail("the sizes do not divide");
      out[rest] = total / known;
    } else if (known != total) {
      fail(std::to_string(known) + " elements, not " + std::to_string(total));
    }
    return out;
  }

  // y = the spikes of the convolution of x, reshaped to `layout`.
  template <typename T>
  void spikes(const Ort::KernelContext& ctx, const ConvGeometry& g, const T* x, const InputView& w_in,
              const InputView& b_in, T* y, const SequenceLayout& layout, const std::vector<T>& packed,
              const std::vector<T>& tiles) const {
    const std::shared_ptr<const std::vector<float>> kept = seeded_.kept(ctx, layout.batch * layout.units);
    const bool stream = stream_output(layout.batch * layout.batch_stride, static_cast<int64_t>(sizeof(T)));
    const T dt = static_cast<T>(spiking_.dt);
    const int64_t in_size = g.c * g.h * g.w;
    std::vector<int64_t> starts;
    const bool whole = layout.batch * layout.steps != g.n || layout.batch < cpu_cores();
    const bool held = !whole && repeated_rows(x, g.n, in_size, &starts);
    if (whole || held) {
      // A step that is not one image, fewer sequences than cores (a pool item takes a
      // whole sequence), or images held over steps (computed once each): the
      // convolution's output first, then the spikes.
      const size_t buffer = static_cast<size_t>(layout.batch * layout.batch_stride + kPageValues<T>);
      const std::unique_ptr<T[]> room(new T[buffer]);
      T* rates = at_offset_of(room.get(), y);
      run(ctx, g, x, w_in, b_in, rates, packed, tiles, held ? &starts : nullptr);
      std::unique_ptr<T[]> turned;
      if (channels_last_) {
        turned.reset(new T[buffer]);
        T* last = at_offset_of(turned.get(), y);
        to_channels_last(g, rates, g.n, last);
        rates = last;
      }
      // spikes_channels_last: the spikes in the units' order first, then turned
      // channels-last into y
      std::unique_ptr<T[]> ordered(spikes_last_ ? new T[buffer] : nullptr);
      T* out = spikes_last_ ? at_offset_of(ordered.get(), y) : y;
      spiking_sequences(ctx, rates, out, layout, InitialVoltage<T>{nullptr, &seeded_, kept.get()}, dt,
                        stream && !spikes_last_, static_cast<T*>(nullptr));
      if (spikes_last_) to_channels_last(g, out, g.n, y);
      return;
    }
    // Each image's rates are convolved into a buffer that stays in cache and spiked from
    // there by the same pool item, which keeps its sequence's voltage (see Sequences).
    Sequences<T> seq;
    seq.steps = layout.steps;
    seq.channels_last = channels_last_ || spikes_last_;
    seq.place_like = y;
    seq.state_size = layout.units;
    seq.step = [&](int64_t b, int64_t t, const T* rates, T* voltage, bool raw) {
      if (t == 0) initial_voltage(kept.get(), b * layout.units, g, voltage);
      T* spikes = y + b * layout.batch_stride + t * layout.step;
      spiking_loop(rates, spikes, voltage, layout.units, 1, layout.step, dt, stream, raw && relu_);
    };
    convolve(ctx, g, x, w_in, b_in, y, packed, tiles, choose(g, x, seq.channels_last), &seq);
  }

  // voltage (the state of `units` values, in the spikes' layout) = the seeded draws from
  // state index `at` on, which number the units channels-first unless channels_last.
  template <typename T>
  void initial_voltage(const std::vector<float>* kept, int64_t at, const ConvGeometry& g, T* voltage) const {
    const int64_t positions = g.oh * g.ow, units = g.m * positions;
    if (!spikes_last_) {
      seeded_.fill(kept, at, units, voltage);
      return;
    }
    std::vector<T> drawn;
    const T* numbered = nullptr;  // (M, positions)
    if constexpr (std::is_same_v<T, float>) {
      if (kept != nullptr) numbered = kept->data() + at;
    }
    if (numbered == nullptr) {
      drawn.resize(static_cast<size_t>(units));
      seeded_.fill(kept, at, units, drawn.data());
      numbered = drawn.data();
    }
    to_channels_last(g, numbered, 1, voltage);
  }

  CommonAttributes spiking_;
  SeededVoltage seeded_;
  bool channels_last_ = false;
  bool spikes_last_ = false;  // channels-first units, spikes written channels-last
};

}  // namespace

const OrtCustomOp* event_conv_op() {
  static const EventOp<EventConvKernel> op(kOp);
  return &op;
}

const OrtCustomOp* event_conv_relu_op() {
  static const EventOp<ReluFused<EventConvKernel>> op(EventConvKernel::kReluOp);
  return &op;
}

const OrtCustomOp* event_conv_spiking_op() {
  // Input 3, the shape, is int64 (the others are typed at run time, and the output with
  // them: an untyped shape made onnxruntime expect an int64 output).
  struct SpikingOp : EventOp<EventConvSpikingKernel> {
    SpikingOp() : EventOp<EventConvSpikingKernel>(EventConvSpikingKernel::kSpikingOp) {
      this->input_types_[3] = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    }
  };
  static const SpikingOp op;
  return &op;
}

}  // namespace spikeonnx
