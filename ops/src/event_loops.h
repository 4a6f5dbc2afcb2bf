// Inner loops of the event-driven ops (EventMatMul, EventGemm, EventConv), compiled once
// per x86 instruction set in its own translation unit (event_loops_avx512.cc,
// event_loops_avx2.cc; event_loops.cc holds the portable build and the run-time choice).
// Unlike the spiking loops, these may fuse multiply-adds: a matrix product's rounding
// depends on the summation order anyway, and onnxruntime's own MatMul/Conv fuse too.
#pragma once

#include <cstdint>

namespace spikeonnx {

// The Relu fused into EventMatMulRelu, EventGemmRelu and EventConvRelu (execution-only
// ops: spikeonnx.events.fuse_relu builds them for a session, never for a file), with
// onnxruntime's Relu's values: negatives become 0, while NaN and -0 pass unchanged.
// Always inlined, also in unoptimised builds: the loops' translation units are compiled
// per instruction set, and an out-of-line weak copy from the AVX-512 one could otherwise
// be the one the linker keeps for all of them.
template <typename T>
__attribute__((always_inline)) inline T relu_value(T v) {
  return v < T(0) ? T(0) : v;
}

// v unchanged, or relu_value(v) when kRelu.
template <bool kRelu, typename T>
__attribute__((always_inline)) inline T relu_if(T v) {
  if constexpr (kRelu) return relu_value(v);
  return v;
}

// One image of EventConv's event path: the geometry, per-axis tap tables and packed
// weight.  Tap table of an axis: for input index i, the (tap, output index) pairs
// taps[2 * start[i], 2 * start[i + 1]) of the kernel taps that reach a valid output.
// A 2-D convolution's geometry (1-D: one row), shared by the kernel and its loops.
struct ConvShape {
  int64_t c = 0, h = 0, w = 0;             // input channels, rows, columns
  int64_t m = 0, kh = 1, kw = 1;           // output channels, kernel rows and columns
  int64_t cg = 0, mg = 0;                  // channels per group in and out
  int64_t sh = 1, sw = 1, dh = 1, dw = 1;  // strides, dilations
  int64_t pt = 0, pl = 0;                  // leading pads
  int64_t oh = 1, ow = 1;                  // output rows, columns
};

template <typename T>
struct ConvScatter : ConvShape {
  int64_t kh_kw = 1;  // taps per channel
  const int32_t* row_start = nullptr;
  const int32_t* row_taps = nullptr;
  const int32_t* col_start = nullptr;
  const int32_t* col_taps = nullptr;
  const T* weight = nullptr;  // [c][kh][kw][m'] (output channels of a group contiguous)
  const T* bias = nullptr;    // conv_gather: (m), or none (conv_image adds to acc instead)
  bool input_last = false;    // conv_gather with one group: the image is (h, w, c), channels last
};

// Scratch of conv_gather for one image (raw pointers: the loops' translation units are
// compiled per instruction set and share no inline container code).  Rooms: pix, val,
// row, sval c * h * w + 16; chan_end c; start (c / cg) * h * w + 1.  col (h * w, read
// only) is the caller's table of every input position's column, p % w.
template <typename T>
struct GatherScratch {
  int32_t* pix = nullptr;
  T* val = nullptr;
  int32_t* chan_end = nullptr;
  int32_t* start = nullptr;
  int32_t* row = nullptr;
  T* sval = nullptr;
  const int32_t* col = nullptr;
};

// One image of EventConv's dense path for outputs of short rows, a direct convolution
// with the output channels in the vectors (as the event paths): each register tile of
// output positions times vectors of a group's output channels sums, channel by channel
// and tap by tap, the weight vectors times the input value (broadcast) under each
// position.  The image is first zero-padded into `padded` (c planes of `plane` = ph * pw
// values, ph and pw covering every tap of every output position); position (oy, ox)
// reads tap t at oy sh pw + ox sw + tap[t] of its planes.  acc receives (positions, M)
// rows, like the event paths' accumulator.
template <typename T>
struct ConvChannels : ConvShape {
  int64_t pw = 0, plane = 0;      // padded row length, padded plane size
  const T* weight = nullptr;      // as ConvScatter's: [c][kh][kw][m']
  const T* bias = nullptr;        // M values, or null
  const int64_t* tap = nullptr;   // kh kw offsets in a plane: ky dh pw + kx dw
  T* padded = nullptr;            // scratch: c * plane values, zero (only the image is written)
  T* acc = nullptr;               // scratch: (oh ow + 16) * m values (a tile's spare rows)
  bool input_last = false;        // the image is (h, w, c), channels last
};

// One image of EventConv's dense path, a direct convolution (no im2col matrix): each
// register tile of output channels times two vectors of output positions sums, tap by
// tap, the weight (broadcast) times the input under the positions.  The input is first
// copied into zero-padded planes, so that a tap reads consecutive output positions as
// consecutive values: plane (c, py, s) row i column j (j < pitch) is padded input
// (c, i sh + py, j sw + s step).  When a vector never straddles two output rows (ow a
// multiple of the vector), the planes are the stride phases (s < sw, step 1, pitch
// ow + (kw - 1) dw / sw, and a tap adds its column offset); otherwise one plane per
// kernel column (s < kw, step dw, pitch ow), in which the output positions, flattened
// over rows, are consecutive.
template <typename T>
struct ConvDirect : ConvShape {
  int64_t hq = 0;                      // rows of a plane
  int64_t shifts = 1, step = 1, pitch = 1;  // planes per (c, py), their column step, row length
  int64_t wpad = 0;                    // columns of a padded input row: (pitch - 1) sw + (shifts - 1) step + 1
  const T* weight = nullptr;           // per group and tile of gemm_rows() channels: [k][gemm_rows()]
  const T* bias = nullptr;             // M values, or null
  const int64_t* tap = nullptr;        // K = cg kh kw: offset of tap k's read in a group's planes
  T* planes = nullptr;                 // scratch: c sh shifts hq pitch + gather_lanes() values, then wpad
  const int32_t* source = nullptr;     // or, for short plane rows: a channel's sh shifts hq pitch plane
                                       // values' offsets in its input image, -1 for padding
  bool stream = false;                 // write the output past the caches (non-temporal)
  bool relu = false;                   // negatives written as 0 (a fused Relu: see relu_value)
};

#define SPIKEONNX_DECLARE_EVENT_LOOPS                                                              \
  /* Columns per tile_sum call (accumulators held in registers). */                               \
  int64_t tile_width_float();                                                                     \
  int64_t tile_width_double();                                                                    \
  /* Number of nonzero values among x[0, n). */                                                   \
  int64_t count_nonzero(const float* x, int64_t n);                                               \
  int64_t count_nonzero(const double* x, int64_t n);                                              \
  /* Indices and values of the nonzeros of x[0, n) (room for n each); returns their number. */   \
  int64_t nonzeros(const float* x, int64_t n, int32_t* idx, float* val);                          \
  int64_t nonzeros(const double* x, int64_t n, int32_t* idx, double* val);                        \
  /* out[j] = sum_e val[e] * w[idx[e] * ldw + j] for j < width (width <= the tile width). */      \
  void tile_sum(const int32_t* idx, const float* val, int64_t count, const float* w, int64_t ldw, \
                int64_t width, float* out);                                                       \
  void tile_sum(const int32_t* idx, const double* val, int64_t count, const double* w,            \
                int64_t ldw, int64_t width, double* out);                                         \
  /* out[j] += v * w[j] for j < n. */                                                             \
  void axpy(float v, const float* w, float* out, int64_t n);                                      \
  void axpy(double v, const double* w, double* out, int64_t n);                                   \
  /* acc[(oh * ow + ow') * m + group's m'] += x * kernel tap, for every nonzero of the image */ \
  /* x (c, h, w); idx and val have room for h * w. */                                            \
  void conv_image(const ConvScatter<float>& s, const float* x, float* acc, int32_t* idx, float* val); \
  void conv_image(const ConvScatter<double>& s, const double* x, double* acc, int32_t* idx,        \
                  double* val);                                                                   \
  /* The same sum gathered per output position from x (c, h, w): the image's nonzeros are */  \
  /* first bucketed by (group, input position); each output position then sums its taps' */     \
  /* buckets' weight rows in registers and writes its acc row once, plus s.bias (acc need */    \
  /* not be initialised).  Needs the group's output channels mg to be a whole number of */      \
  /* vectors (gather_lanes()). */                                                               \
  int64_t gather_lanes_float();                                                                   \
  int64_t gather_lanes_double();                                                                  \
  void conv_gather(const ConvScatter<float>& s, const float* x, float* acc, const GatherScratch<float>& b); \
  void conv_gather(const ConvScatter<double>& s, const double* x, double* acc,                    \
                   const GatherScratch<double>& b);                                               \
  /* d.acc (oh ow, M) = the convolution of image x (c, h, w), or (h, w, c) with d.input_last */ \
  /* (see ConvChannels); needs mg to be a whole number of vectors (gather_lanes()). */          \
  void conv_channels(const ConvChannels<float>& d, const float* x);                              \
  void conv_channels(const ConvChannels<double>& d, const double* x);                            \
  /* y (M, oh, ow) = the convolution of image x (c, h, w) (see ConvDirect). */                    \
  void conv_direct(const ConvDirect<float>& d, const float* x, float* y);                         \
  void conv_direct(const ConvDirect<double>& d, const double* x, double* y);                      \
  /* out[j * ldo + i] = a[i * cols + j] for i < rows, j < cols; `stream`: out is too big to */   \
  /* stay in cache (written past the caches where the instruction set allows); `relu`: */      \
  /* negatives written as 0 (a fused Relu: see relu_value). */                               \
  void transpose(const float* a, int64_t rows, int64_t cols, float* out, int64_t ldo, bool stream, bool relu); \
  void transpose(const double* a, int64_t rows, int64_t cols, double* out, int64_t ldo, bool stream,  \
                 bool relu);                                                                      \
  /* Dense float32 product, B packed in panels (see EventLoops::gemm_tile). */                   \
  int64_t gemm_panel_width();                                                                     \
  int64_t gemm_rows();                                                                            \
  void gemm_tile(const float* a, int64_t lda, int64_t ka, const float* bp, int64_t k, float* c,    \
                 int64_t ldc, int64_t rows, int64_t cols, bool accumulate);

namespace event_avx512 {
SPIKEONNX_DECLARE_EVENT_LOOPS
}  // namespace event_avx512

namespace event_avx2 {
SPIKEONNX_DECLARE_EVENT_LOOPS
}  // namespace event_avx2

namespace event_generic {
SPIKEONNX_DECLARE_EVENT_LOOPS
}  // namespace event_generic

#undef SPIKEONNX_DECLARE_EVENT_LOOPS

// The loops for the CPU this process runs on (chosen once).
struct EventLoops {
  int64_t (*tile_width_float)();
  int64_t (*tile_width_double)();
  int64_t (*count_float)(const float*, int64_t);
  int64_t (*count_double)(const double*, int64_t);
  int64_t (*nonzeros_float)(const float*, int64_t, int32_t*, float*);
  int64_t (*nonzeros_double)(const double*, int64_t, int32_t*, double*);
  void (*tile_float)(const int32_t*, const float*, int64_t, const float*, int64_t, int64_t, float*);
  void (*tile_double)(const int32_t*, const double*, int64_t, const double*, int64_t, int64_t, double*);
  void (*axpy_float)(float, const float*, float*, int64_t);
  void (*axpy_double)(double, const double*, double*, int64_t);
  void (*conv_float)(const ConvScatter<float>&, const float*, float*, int32_t*, float*);
  void (*conv_double)(const ConvScatter<double>&, const double*, double*, int32_t*, double*);
  int64_t (*gather_lanes_float)();
  int64_t (*gather_lanes_double)();
  void (*gather_float)(const ConvScatter<float>&, const float*, float*, const GatherScratch<float>&);
  void (*gather_double)(const ConvScatter<double>&, const double*, double*, const GatherScratch<double>&);
  void (*channels_float)(const ConvChannels<float>&, const float*);
  void (*channels_double)(const ConvChannels<double>&, const double*);
  void (*direct_float)(const ConvDirect<float>&, const float*, float*);
  void (*direct_double)(const ConvDirect<double>&, const double*, double*);
  void (*transpose_float)(const float*, int64_t, int64_t, float*, int64_t, bool, bool);
  void (*transpose_double)(const double*, int64_t, int64_t, double*, int64_t, bool, bool);
  // The dense float32 product of the event ops' dense path (a register-blocked GEMM):
  // C[rows, cols] (+)= A[rows, k] B[k, cols] for rows <= gemm_rows() and cols <=
  // gemm_panel_width(), A's element (r, k) at a[r * lda + k * ka], B one packed panel
  // (k rows of gemm_panel_width() values, zero-padded past the matrix's last column), C
  // row-major with leading dimension ldc; accumulate adds to C instead of overwriting it.
  int64_t (*gemm_panel_width)();
  int64_t (*gemm_rows)();
  void (*gemm_tile)(const float* a, int64_t lda, int64_t ka, const float* bp, int64_t k, float* c, int64_t ldc,
                    int64_t rows, int64_t cols, bool accumulate);

  int64_t tile_width(float) const { return tile_width_float(); }
  int64_t tile_width(double) const { return tile_width_double(); }
  int64_t count(const float* x, int64_t n) const { return count_float(x, n); }
  int64_t count(const double* x, int64_t n) const { return count_double(x, n); }
  int64_t nonzeros(const float* x, int64_t n, int32_t* i, float* v) const { return nonzeros_float(x, n, i, v); }
  int64_t nonzeros(const double* x, int64_t n, int32_t* i, double* v) const { return nonzeros_double(x, n, i, v); }
  void tile(const int32_t* i, const float* v, int64_t c, const float* w, int64_t l, int64_t n, float* o) const {
    tile_float(i, v, c, w, l, n, o);
  }
  void tile(const int32_t* i, const double* v, int64_t c, const double* w, int64_t l, int64_t n, double* o) const {
    tile_double(i, v, c, w, l, n, o);
  }
  void axpy(float v, const float* w, float* o, int64_t n) const { axpy_float(v, w, o, n); }
  void axpy(double v, const double* w, double* o, int64_t n) const { axpy_double(v, w, o, n); }
  void conv(const ConvScatter<float>& s, const float* x, float* a, int32_t* i, float* v) const {
    conv_float(s, x, a, i, v);
  }
  void conv(const ConvScatter<double>& s, const double* x, double* a, int32_t* i, double* v) const {
    conv_double(s, x, a, i, v);
  }
  int64_t gather_lanes(float) const { return gather_lanes_float(); }
  int64_t gather_lanes(double) const { return gather_lanes_double(); }
  void gather(const ConvScatter<float>& s, const float* x, float* a, const GatherScratch<float>& b) const {
    gather_float(s, x, a, b);
  }
  void gather(const ConvScatter<double>& s, const double* x, double* a, const GatherScratch<double>& b) const {
    gather_double(s, x, a, b);
  }
  void channels(const ConvChannels<float>& d, const float* x) const { channels_float(d, x); }
  void channels(const ConvChannels<double>& d, const double* x) const { channels_double(d, x); }
  void direct(const ConvDirect<float>& d, const float* x, float* y) const { direct_float(d, x, y); }
  void direct(const ConvDirect<double>& d, const double* x, double* y) const { direct_double(d, x, y); }
  void transpose(const float* a, int64_t r, int64_t c, float* o, int64_t l, bool s, bool relu) const {
    transpose_float(a, r, c, o, l, s, relu);
  }
  void transpose(const double* a, int64_t r, int64_t c, double* o, int64_t l, bool s, bool relu) const {
    transpose_double(a, r, c, o, l, s, relu);
  }
};

const EventLoops& event_loops();

// Name of the instruction set event_loops() uses ("avx512", "avx2" or "generic").
const char* event_loops_isa();

}  // namespace spikeonnx
