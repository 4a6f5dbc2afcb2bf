// Shared parts of the event-driven ops: the event-driven (sparse-input) matrix product,
// counting nonzeros, weights that are constant initialisers, and running one of
// onnxruntime's own kernels (MatMul, Gemm, Conv) for dense inputs.
//
// An event-driven op skips zero inputs: every nonzero input element adds its weight row
// (or kernel slice) to the output.  The result is the same sum as the dense product (in
// another order); only a zero input times an infinite or NaN weight differs (it
// contributes nothing instead of NaN).  Each call counts the nonzeros first and hands
// inputs denser than the op's break-even density to onnxruntime's kernel, so a dense
// input costs one extra read of the input.
#pragma once

#include <onnxruntime_lite_custom_op.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "event_loops.h"
#include "kernel_common.h"

namespace spikeonnx {

// Node name from the kernel info ("" if unavailable), for messages.
std::string event_node_name(const OrtApi* api, const OrtKernelInfo* info);

// Reads an optional attribute of the given kind; false if the node does not have it.
// Throws Ort::Exception (naming op and node) if it has it with another type (kernel creation only).
bool event_int_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at, const char* name,
                         int64_t* out);
bool event_float_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at,
                           const char* name, float* out);
bool event_ints_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at, const char* name,
                          std::vector<int64_t>* out);
bool event_string_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at,
                            const char* name, std::string* out);

// A constant-initialiser input as seen when the kernel is created (present == false if the
// input is not constant).  The data belongs to the session and outlives the kernel.
InputView constant_input(const OrtApi* api, const OrtKernelInfo* info, size_t index);

// One of onnxruntime's built-in CPU kernels, created once per element type with fixed
// attributes and run on this op's inputs/outputs (the dense path).
class NativeOp {
 public:
  struct Attribute {
    std::string name;
    OrtOpAttrType type;
    std::vector<int64_t> ints;  // INT (one value) or INTS
    float f = 0.0f;
    std::string s;
  };

  NativeOp() = default;
  NativeOp(const OrtApi* api, const OrtKernelInfo* info, const char* op, int version,
           ONNXTensorElementDataType type, const std::vector<Attribute>& attributes, int inputs);
  NativeOp(const NativeOp&) = delete;
  NativeOp& operator=(const NativeOp&) = delete;
  ~NativeOp();

  bool available() const { return op_ != nullptr; }
  // Runs the kernel on x (shape x_shape, element type `type`: the op's input 0, or only its
  // distinct rows) and the context's inputs [1, inputs) into y (shape y_shape, allocated by
  // the caller).
  void run(OrtKernelContext* context, int inputs, ONNXTensorElementDataType type, const void* x,
           const std::vector<int64_t>& x_shape, void* y, const std::vector<int64_t>& y_shape) const;

 private:
  const OrtApi* api_ = nullptr;
  OrtOp* op_ = nullptr;
};

// v[0, n) through relu_value (event_loops.h).
template <typename T>
inline void relu_in_place(T* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = relu_value(v[i]);
}

// Counts the nonzeros of x[0, n) on the intra-op thread pool.
template <typename T>
int64_t count_nonzero(const Ort::KernelContext& ctx, const T* x, int64_t n) {
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) return event_loops().count(x, n);
  std::vector<int64_t> counts(static_cast<size_t>(chunks), 0);
  auto work = [&](size_t i) {
    const int64_t start = static_cast<int64_t>(i) * kChunk;
    counts[i] = event_loops().count(x + start, std::min(kChunk, n - start));
  };
  parallel_for(ctx, static_cast<size_t>(chunks), work);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  return total;
}

// Density above which EventMatMul/EventGemm hand x (M, K) to the dense path, for N output
// columns.  Measured with one-node models (1 thread and onnxruntime's default, AVX-512):
// the event path breaks even at 25-35 % for M x K x N = 1600x1024x1024 and 320x16384x256
// (K blocks keep the weight rows in L2); a narrow output (a classifier's N = 10) does
// little work per nonzero, so listing the nonzeros weighs more: 10-15 % at 1600x1024x10.
inline double event_break_even(int64_t N) { return N < 32 ? 0.12 : 0.25; }

// Whether the rows of x (M, K) are sparse enough for the event path to N output columns
// (density below event_break_even(N)), judged from at most kSampledRows rows spread evenly
// over x: counting every element would cost a dense input a whole extra read of x.  Only
// the speed depends on the sample, never the result.
template <typename T>
bool sparse_rows(const Ort::KernelContext& ctx, const T* x, int64_t M, int64_t K, int64_t N) {
  constexpr int64_t kSampledRows = 64;
  const double break_even = event_break_even(N);
  if (M <= kSampledRows) return static_cast<double>(count_nonzero(ctx, x, M * K)) < break_even * static_cast<double>(M * K);
  int64_t nonzeros = 0;
  for (int64_t i = 0; i < kSampledRows; ++i) nonzeros += event_loops().count(x + (i * M / kSampledRows) * K, K);
  return static_cast<double>(nonzeros) < break_even * static_cast<double>(kSampledRows * K);
}

// Runs of equal consecutive rows of x (M, K).  A spiking model's input often holds a frame
// over time steps (a static image shown for T steps: (B, T, F) flattened to B * T rows),
// and equal rows give equal output rows, so only each run's first row needs computing.
// Judged first from at most kSampledRows rows (each against the row before it); if at least
// half repeat, every row is compared (bitwise: -0.0 and 0.0 differ, which only costs a
// recomputation).  Returns true, with the first row of every run and M at the end in
// `starts`, when the runs are at most half the rows; false otherwise.
template <typename T>
bool repeated_rows(const T* x, int64_t M, int64_t K, std::vector<int64_t>* starts) {
  constexpr int64_t kSampledRows = 64;
  if (M < 2 || K == 0) return false;
  const size_t bytes = static_cast<size_t>(K) * sizeof(T);
  const int64_t samples = std::min(kSampledRows, M - 1);
  int64_t same = 0;
  for (int64_t s = 0; s < samples; ++s) {
    const int64_t i = 1 + s * (M - 1) / samples;
    same += std::memcmp(x + i * K, x + (i - 1) * K, bytes) == 0 ? 1 : 0;
  }
  if (2 * same < samples) return false;
  starts->clear();
  starts->push_back(0);
  for (int64_t i = 1; i < M; ++i) {
    if (std::memcmp(x + i * K, x + (i - 1) * K, bytes) != 0) starts->push_back(i);
  }
  if (2 * static_cast<int64_t>(starts->size()) > M) return false;
  starts->push_back(M);
  return true;
}

// y (M, N) for x (M, K) whose runs of equal rows begin at `starts` (repeated_rows):
// `compute(xu, U, yu)` fills yu (U, N) from the runs' first rows xu (U, K), then every row
// of a run gets a copy of its first row's output.
template <typename T, typename Compute>
void on_run_starts(const Ort::KernelContext& ctx, const T* x, T* y, int64_t K, int64_t N,
                   const std::vector<int64_t>& starts, Compute&& compute) {
  const int64_t runs = static_cast<int64_t>(starts.size()) - 1;
  std::vector<T> xu(static_cast<size_t>(runs * K)), yu(static_cast<size_t>(runs * N));
  for (int64_t r = 0; r < runs; ++r) std::memcpy(xu.data() + r * K, x + starts[r] * K, static_cast<size_t>(K) * sizeof(T));
  compute(xu.data(), runs, yu.data());
  constexpr int64_t kItems = 64;
  const int64_t per_item = (runs + kItems - 1) / kItems;
  auto copy = [&](size_t item) {
    const int64_t r1 = std::min(runs, (static_cast<int64_t>(item) + 1) * per_item);
    for (int64_t r = static_cast<int64_t>(item) * per_item; r < r1; ++r) {
      for (int64_t i = starts[r]; i < starts[r + 1]; ++i) {
        std::memcpy(y + i * N, yu.data() + r * N, static_cast<size_t>(N) * sizeof(T));
      }
    }
  };
  parallel_for(ctx, static_cast<size_t>((runs + per_item - 1) / per_item), copy);
}

// y (M, N) from x (M, K) by `compute(xs, rows, ys)`: on the first rows of x's runs of
// equal rows only, copied along each run, when rows repeat (repeated_rows); else on all
// of x.  `may_repeat` false (an output row that depends on more than its input row)
// always computes every row.
template <typename T, typename Compute>
void on_distinct_rows(const Ort::KernelContext& ctx, const T* x, T* y, int64_t M, int64_t K, int64_t N,
                      Compute&& compute, bool may_repeat = true) {
  std::vector<int64_t> starts;
  if (may_repeat && repeated_rows(x, M, K, &starts)) {
    on_run_starts(ctx, x, y, K, N, starts, compute);
  } else {
    compute(x, M, y);
  }
}

// Whether the dense path's own GEMM (dense_matmul, weight packed once) is at least as fast
// as onnxruntime's MatMul/Gemm run from the op (which repacks the weight every call).
// Measured at 100 % density, 1 thread, AVX-512 (ms, onnxruntime's MatMul node / own /
// onnxruntime's run from the op): M x K x N = 1600x1024x1024 33.9 / 32.1 / 35.7,
// 320x16384x256 27.1 / 29.0 / 28.9, 32x1024x1024 0.65 / 0.65 / 0.83; but a narrow output
// pads the own GEMM's panels to 32 columns: 1600x1024x10 0.63 / 1.64 / 0.62; and up to
// 128 columns onnxruntime's kernel is faster over many rows (Gemm with bias, Gemm node /
// own / run from the op): 100000x64x64 13.0 / 15.3 / 13.3, 6250x1024x64 9.4 / 12.3 / 9.4,
// 1600x1024x128 4.5 / 4.7 / 4.5, 1600x1024x256 8.7 / 8.7 / 9.8.
inline bool own_gemm_wins(int64_t N) { return N >= 128; }

// A weight as `pack()` lays it out: `packed`, laid out when the kernel was created from
// the constant at `source`, when `w` is that constant; else packed now, into *local.
template <typename Packed, typename Pack>
const Packed& packed_or_now(const Packed& packed, const void* source, const InputView& w, Packed* local,
                            const Pack& pack) {
  if (!packed.empty() && w.data == source) return packed;
  *local = pack();
  return *local;
}

// The machine's hardware threads, at least 1 (looked up once: each lookup reads sysfs,
// about 6 us).
int64_t cpu_cores();

// How the columns (tiles or panels) of a product are split into groups so that row blocks
// times groups give at least `items` work items for the pool: {groups, columns per group}.
struct ColumnGroups {
  int64_t groups, per_group;
};
inline ColumnGroups column_groups(int64_t row_blocks, int64_t columns, int64_t items) {
  int64_t groups = 1;
  if (row_blocks < items) groups = std::min(columns, (items + row_blocks - 1) / row_blocks);
  const int64_t per_group = (columns + groups - 1) / groups;
  return {(columns + per_group - 1) / per_group, per_group};
}

// Event-driven product y = x w for x (M, K) and w (K, N), both row-major, followed by
// `finish(row, y_row, c0, c1)` for every output row's columns [c0, c1) (bias, scaling).
// First every block of rows lists its rows' nonzeros (once, vectorised), then rows are
// split into blocks and columns into groups so that every pool thread gets work; each
// item sweeps its columns tile by tile (the tile's accumulators stay in registers).  A
// weight whose tile column (K rows) is larger than L2 is swept in blocks of K rows, all
// of the block's rows per K block, so that the rows the nonzeros pick stay in L2 (the
// partial sums then go through y).
template <typename T, typename Finish>
void event_matmul(const Ort::KernelContext& ctx, const T* x, const T* w, T* y, int64_t M, int64_t K, int64_t N,
                  Finish& finish) {
  const EventLoops& loops = event_loops();
  const int64_t tile = loops.tile_width(T(0));
  const int64_t tiles = (N + tile - 1) / tile;
  constexpr int64_t kRowBlock = 256;
  constexpr int64_t kLineValues = 64 / static_cast<int64_t>(sizeof(T));  // per cache line
  // Rows of w per K block: half of a 1 MiB L2 for the tile's columns of those rows
  // (measured on 320 x 16384 x 256 at 5-20 % density: 3x faster than one sweep).
  constexpr int64_t kBlockBytes = int64_t{512} * 1024;
  const int64_t kblock = std::max<int64_t>(256, kBlockBytes / (tile * static_cast<int64_t>(sizeof(T))));
  const int64_t kblocks = K > 2 * kblock ? (K + kblock - 1) / kblock : 1;
  // Blocks of equal size (at most kRowBlock rows), at least one per core when there are
  // 32 rows for each: 320 rows as 256 + 64 kept the second of two threads idle for most
  // of the call.
  const int64_t row_blocks = std::max((M + kRowBlock - 1) / kRowBlock, std::min(cpu_cores(), (M + 31) / 32));
  const int64_t block_rows = row_blocks > 0 ? (M + row_blocks - 1) / row_blocks : 1;
  struct Block {
    std::vector<int32_t> idx;
    std::vector<T> val;
    std::vector<int64_t> start;
    std::vector<int64_t> cuts;  // per row, kblocks + 1 list positions (K blocks only)
  };
  std::vector<Block> blocks(static_cast<size_t>(row_blocks));
  auto list = [&](size_t b) {
    Block& blk = blocks[b];
    const int64_t r0 = static_cast<int64_t>(b) * block_rows;
    const int64_t r1 = std::min(M, r0 + block_rows);
    blk.start.assign(static_cast<size_t>(r1 - r0 + 1), 0);
    // Room for one full row past what is listed (nonzeros() writes at most K per row).
    size_t used = 0;
    for (int64_t r = r0; r < r1; ++r) {
      if (blk.idx.size() < used + static_cast<size_t>(K)) {
        const size_t grown = std::max(used + static_cast<size_t>(K), 2 * blk.idx.size());
        blk.idx.resize(grown);
        blk.val.resize(grown);
      }
      used += static_cast<size_t>(loops.nonzeros(x + r * K, K, blk.idx.data() + used, blk.val.data() + used));
      blk.start[static_cast<size_t>(r - r0 + 1)] = static_cast<int64_t>(used);
    }
    if (kblocks > 1) {
      blk.cuts.resize(static_cast<size_t>((r1 - r0) * (kblocks + 1)));
      for (int64_t r = 0; r < r1 - r0; ++r) {
        const int32_t* first = blk.idx.data() + blk.start[static_cast<size_t>(r)];
        const int32_t* last = blk.idx.data() + blk.start[static_cast<size_t>(r + 1)];
        int64_t* cut = blk.cuts.data() + r * (kblocks + 1);
        for (int64_t k = 0; k <= kblocks; ++k) {
          const int64_t bound = std::min(K, k * kblock);
          cut[k] = std::lower_bound(first, last, static_cast<int32_t>(bound)) - blk.idx.data();
        }
      }
    }
  };
  parallel_for(ctx, static_cast<size_t>(row_blocks), list);
  // Column groups only when there are few row blocks (small batches): at least 16 items.
  const ColumnGroups split = column_groups(row_blocks, tiles, 16);
  const int64_t groups = split.groups, tiles_per_group = split.per_group;
  auto work = [&](size_t item) {
    const int64_t block = static_cast<int64_t>(item) / groups;
    const int64_t group = static_cast<int64_t>(item) % groups;
    const Block& blk = blocks[static_cast<size_t>(block)];
    const int64_t r0 = block * block_rows;
    const int64_t r1 = std::min(M, r0 + block_rows);
    const int64_t c0 = group * tiles_per_group * tile;
    const int64_t c1 = std::min(N, c0 + tiles_per_group * tile);
    std::vector<T> part(kblocks > 1 ? static_cast<size_t>(tile) : 0);
    for (int64_t j = c0; j < c1; j += tile) {
      const int64_t width = std::min(tile, c1 - j);
      if (kblocks == 1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t s = blk.start[static_cast<size_t>(r - r0)];
          const int64_t e = blk.start[static_cast<size_t>(r - r0 + 1)];
          loops.tile(blk.idx.data() + s, blk.val.data() + s, e - s, w + j, N, width, y + r * N + j);
        }
        continue;
      }
      for (int64_t k = 0; k < kblocks; ++k) {
        // The next K block's weight rows are fetched in order while this one runs, a share
        // before each row: otherwise the first touch of a weight row is a miss to memory
        // at a random place, which the hardware prefetchers cannot foresee (at 1 % density
        // almost every touch is a first one).  Only when the next block's nonzeros are
        // enough to touch most of its rows (a few rows of x pick a few weight rows).
        const int64_t n0 = std::min(K, (k + 1) * kblock), n1 = std::min(K, n0 + kblock);
        int64_t listed = 0;
        for (int64_t r = 0; k + 1 < kblocks && r < r1 - r0; ++r) {
          const int64_t* cut = blk.cuts.data() + r * (kblocks + 1);
          listed += cut[k + 2] - cut[k + 1];
        }
        const int64_t ahead = 2 * listed >= n1 - n0 ? (n1 - n0 + (r1 - r0) - 1) / (r1 - r0) : 0;
        int64_t next = n0;
        for (int64_t r = r0; r < r1; ++r) {
          for (int64_t q = 0; q < ahead && next < n1; ++q, ++next) {
            for (int64_t c = 0; c < width; c += kLineValues) __builtin_prefetch(w + next * N + j + c, 0, 2);
          }
          const int64_t* cut = blk.cuts.data() + (r - r0) * (kblocks + 1);
          const int64_t s = cut[k], e = cut[k + 1];
          T* out = y + r * N + j;
          if (k == 0) {
            loops.tile(blk.idx.data() + s, blk.val.data() + s, e - s, w + j, N, width, out);
          } else if (e > s) {
            loops.tile(blk.idx.data() + s, blk.val.data() + s, e - s, w + j, N, width, part.data());
            for (int64_t c = 0; c < width; ++c) out[c] += part[static_cast<size_t>(c)];
          }
        }
      }
    }
    for (int64_t r = r0; r < r1; ++r) finish(r, y + r * N, c0, c1);
  };
  parallel_for(ctx, static_cast<size_t>(row_blocks * groups), work);
}

// The dense float32 path: B (K, N) packed once into panels of event_loops().gemm_panel_width()
// columns (k-major inside a panel, zero-padded past column N, 64-byte aligned), so that
// every product with it streams B contiguously.  Denser inputs than the break-even run
// here instead of in onnxruntime's MatMul/Gemm (which, invoked from a custom op, would
// repack the weight at every call).
class PackedPanels {
 public:
  PackedPanels() = default;
  // b is (K, N) row-major, or (N, K) row-major with `transposed` (then B = b^T).
  PackedPanels(const float* b, int64_t K, int64_t N, bool transposed);
  bool empty() const { return storage_.empty(); }
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }
  const float* data() const { return storage_.data() + offset_; }
  float* data() { return storage_.data() + offset_; }

 private:
  std::vector<float> storage_;
  size_t offset_ = 0;
  int64_t k_ = 0, n_ = 0;
};

// C[r0:r1, panels p0:p1] = A[r0:r1, :K] B for B packed (bp, K rows per panel) and N
// columns in all; A row-major (lda), C row-major (ldc).  Blocked over K so that a panel
// block of B stays in L1 while the rows' register tiles run over it.
void dense_block(const float* a, int64_t lda, const float* bp, int64_t K, int64_t N, float* c, int64_t ldc,
                 int64_t r0, int64_t r1, int64_t p0, int64_t p1);

// y = x B for x (M, K) float32 row-major on the pool, then `finish(row, y_row, c0, c1)`
// for each output row's computed columns [c0, c1) (bias, scaling).
template <typename Finish>
void dense_matmul(const Ort::KernelContext& ctx, const float* x, const PackedPanels& b, float* y, int64_t M,
                  Finish& finish) {
  const EventLoops& loops = event_loops();
  const int64_t P = loops.gemm_panel_width();
  const int64_t K = b.k(), N = b.n();
  const int64_t panels = (N + P - 1) / P;
  const int64_t row_block = loops.gemm_rows() * 8;
  const int64_t row_blocks = (M + row_block - 1) / row_block;
  // Column groups only to give a few threads work: each group packs its rows of x again.
  const ColumnGroups split = column_groups(row_blocks, panels, 4);
  const int64_t groups = split.groups, per_group = split.per_group;
  auto work = [&](size_t item) {
    const int64_t block = static_cast<int64_t>(item) / groups;
    const int64_t group = static_cast<int64_t>(item) % groups;
    const int64_t r0 = block * row_block, r1 = std::min(M, r0 + row_block);
    const int64_t p0 = group * per_group, p1 = std::min(panels, p0 + per_group);
    dense_block(x, K, b.data(), K, N, y, N, r0, r1, p0, p1);
    const int64_t c0 = p0 * P, c1 = std::min(N, p1 * P);
    for (int64_t r = r0; r < r1; ++r) finish(r, y + r * N, c0, c1);
  };
  parallel_for(ctx, static_cast<size_t>(row_blocks * groups), work);
}

}  // namespace spikeonnx

namespace spikeonnx {

// Type and shape of input `index` during shape inference (ok == false if unavailable).
// A dimension is "known" if it is a number or named.
struct InferredShape {
  bool ok = false;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> dims;
  std::vector<std::string> symbols;
  bool known(size_t k) const { return dims[k] >= 0 || !symbols[k].empty(); }
};

InferredShape inferred_input(OrtShapeInferContext* ctx, size_t index);

// Declares output `index` (no-op on failure: onnxruntime then infers the type itself).
void set_inferred_output(OrtShapeInferContext* ctx, size_t index, ONNXTensorElementDataType type,
                         const std::vector<int64_t>& dims, const std::vector<std::string>& symbols);

// An attribute during shape inference (false if absent or of another type).
bool inferred_int_attribute(OrtShapeInferContext* ctx, const char* name, int64_t* out);
bool inferred_ints_attribute(OrtShapeInferContext* ctx, const char* name, std::vector<int64_t>* out);
bool inferred_string_attribute(OrtShapeInferContext* ctx, const char* name, std::string* out);

// Custom-op descriptor for an event op: inputs/outputs typed at run time (the kernel
// checks them), leading ones required, and Kernel::infer for the output's type and shape.
template <typename Kernel>
struct EventOp : Ort::Custom::OrtLiteCustomStruct<Kernel> {
  explicit EventOp(const char* name) : Ort::Custom::OrtLiteCustomStruct<Kernel>(name, "CPUExecutionProvider") {
    this->input_types_.assign(Kernel::kInputs, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED);
    this->output_types_.assign(1, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED);
    OrtCustomOp::GetInputCharacteristic = [](const OrtCustomOp*, size_t index) {
      return index < Kernel::kRequiredInputs ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
    };
    OrtCustomOp::GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
    OrtCustomOp::InferOutputShapeFn = &Kernel::infer;
  }
};

// The event op `Kernel` followed by Relu (relu_value): Kernel's protected constructor
// (api, info, op name, relu) with its kReluOp.  The lite API takes the Compute of the
// kernel type itself, hence the forwarding.
template <typename Kernel>
struct ReluFused : Kernel {
  ReluFused(const OrtApi* api, const OrtKernelInfo* info) : Kernel(api, info, Kernel::kReluOp, true) {}
  Ort::Status Compute(OrtKernelContext* context) { return Kernel::Compute(context); }
};

// Descriptors of the event ops (process lifetime, never modified).
const OrtCustomOp* event_matmul_op();
const OrtCustomOp* event_matmul_relu_op();
const OrtCustomOp* event_gemm_op();
const OrtCustomOp* event_gemm_relu_op();
const OrtCustomOp* event_conv_op();
const OrtCustomOp* event_conv_relu_op();
const OrtCustomOp* event_conv_spiking_op();

// Checks that `input` is present and float32/float64 (`type` == UNDEFINED) or of `type`.
void check_float_input(const std::string& at, const char* name, const InputView& input,
                       ONNXTensorElementDataType type, const char* shape_label);

}  // namespace spikeonnx
