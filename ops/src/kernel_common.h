// Glue shared by the three kernels: reading attributes, checking inputs (with error
// messages that name the op, the input and the expected shape), broadcasting the small
// parameter tensors and running work items on onnxruntime's intra-op thread pool.
#pragma once

#include <onnxruntime_lite_custom_op.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace spikeonnx {

// Invalid input or attribute; Compute turns it into an OrtStatus, kernel creation lets it
// propagate as Ort::Exception.
class OpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "(2, 3, 4)"; "()" for scalars.
std::string shape_str(const std::vector<int64_t>& shape);

// "float32", "int64", ... for messages.
const char* dtype_str(ONNXTensorElementDataType type);

// Most units per work item; the state of one block (a few KiB) stays in L1 while the
// kernel walks through time.
constexpr int64_t kBlockUnits = 1024;

// Units per work item for a (batch, units) problem: kBlockUnits, or smaller blocks (whole
// multiples of 64 units) when there are too few batch entries to keep several threads
// busy.  The split never changes results: every unit is computed the same way in any block.
inline int64_t block_units(int64_t batch, int64_t units) {
  constexpr int64_t kMinItems = 8;
  constexpr int64_t kQuantum = 64;
  if (batch <= 0 || units <= 0) return kBlockUnits;
  const int64_t per_batch = (kMinItems + batch - 1) / batch;  // blocks wanted per entry
  int64_t block = (units + per_batch - 1) / per_batch;
  block = (block + kQuantum - 1) / kQuantum * kQuantum;
  return block < kBlockUnits ? block : kBlockUnits;
}

// 4 KiB aliasing: x86 cores compare only the low 12 address bits when checking a load
// against the stores still in flight, so a load whose address matches a recent store's
// modulo 4 KiB waits for it, as if it depended on it.  A time loop reads its state and
// coefficient buffers while streaming its output row; if a buffer happens to sit just
// below the output row modulo 4 KiB, every load stalls (measured: Lowpass 3x slower, and
// where the buffers land depends on the stack and heap layout of the process).  So each
// work item keeps its buffers in a PlacedBuffer, at a fixed distance modulo 4 KiB after
// the first output row; the loops assume that the input rows share the output rows'
// offset (true for row strides of whole pages, as with numpy/onnxruntime allocations).
constexpr uintptr_t kAliasPage = 4096;

// Room for one block of T, placeable at any offset modulo 4 KiB.
template <typename T>
struct PlacedBuffer {
  alignas(kAliasPage) T storage[kBlockUnits + kAliasPage / sizeof(T)];

  // The buffer starting `distance` bytes after `anchor` modulo 4 KiB (rounded down to
  // whole elements); it holds kBlockUnits elements.
  T* at(const void* anchor, uintptr_t distance) {
    const uintptr_t offset = (reinterpret_cast<uintptr_t>(anchor) + distance) % kAliasPage;
    return storage + offset / sizeof(T);
  }
};

// Sequence outputs of at least this many bytes are written with streaming (non-temporal)
// stores: too big to still be in cache when the next node reads them, so fetching their
// cache lines before overwriting them (write-allocate) would only cost bandwidth.  Smaller
// outputs keep ordinary stores and stay in cache for the next node.
#ifndef SPIKEONNX_STREAM_MIN_BYTES
#define SPIKEONNX_STREAM_MIN_BYTES (4 << 20)
#endif
constexpr int64_t kStreamMinBytes = SPIKEONNX_STREAM_MIN_BYTES;

// Whether a sequence output of `elements` values of `element_size` bytes is streamed.
inline bool stream_output(int64_t elements, int64_t element_size) {
  return elements >= kStreamMinBytes / element_size;
}

// Attributes shared by all ops, read once when the kernel is created.
struct CommonAttributes {
  float dt = 0.0f;
  bool time_major = false;
  std::string node;  // node name, for messages
  // Whether the node names its output 1 (the final state): an optional output left out or
  // given the empty name is never computed.
  bool state_output = false;
};

// Reads `dt` (required FLOAT, finite, > 0) and `time_major` (INT, 0 or 1), and whether
// output 1 is named.  An attribute of another type (e.g. `time_major=1.0`, `dt=1`) is an
// error, never a silent default.  Throws Ort::Exception naming `op` on any problem.
CommonAttributes read_common_attributes(const OrtApi* api, const OrtKernelInfo* info, const char* op);

// Reads an optional INT attribute; throws Ort::Exception naming `op`, the node and the
// attribute when the node has it with another type (e.g. `seed=3.0`).
int64_t read_int_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* op, const char* name,
                           int64_t fallback);

// The same without an op name for messages (they then name the node only).
int64_t read_int_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* name,
                           int64_t fallback);

// Number of elements of a tensor of shape `dims`: 0 if any dimension is 0, -1 if the product
// does not fit in int64.
int64_t checked_count(const std::vector<int64_t>& dims);

// One input as the kernel sees it (`present` is false for an omitted optional input).
struct InputView {
  bool present = false;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

InputView get_input(const Ort::KernelContext& ctx, size_t index);

// Geometry of a (B, T, *S) or (T, B, *S) sequence.
struct SeqGeometry {
  int64_t batch = 0;
  int64_t time = 0;
  // prod(S); -1 when it does not fit in int64, which only an empty sequence (B = 0 or
  // T = 0) can have: such a sequence has no work, and its state output is refused by
  // allocate_output when it cannot be sized.
  int64_t units = 0;
  bool time_major = false;
  std::vector<int64_t> shape;       // as given
  std::vector<int64_t> unit_shape;  // S

  // Element distance between consecutive batch entries / time steps.
  int64_t batch_stride() const { return time_major ? units : time * units; }
  int64_t step() const { return time_major ? batch * units : units; }
  // (B, *S), and (B, extra, *S) for stacked states.
  std::vector<int64_t> state_shape(int64_t extra = 0) const;
  // (1, *S): what per-unit parameters broadcast to.
  std::vector<int64_t> unit_param_shape() const;
  std::string layout() const { return time_major ? "(T, B, *S)" : "(B, T, *S)"; }
  // No element to compute: B = 0, T = 0 or some unit axis is 0.
  bool empty() const { return batch == 0 || time == 0 || units == 0; }
};

// Checks the main sequence input (present, float32/float64, rank >= 2) and returns its
// geometry.
SeqGeometry check_sequence(const char* op, const std::string& node, const char* name,
                           const InputView& input, bool time_major);

// Checks that `input` has the sequence's element type and a shape that broadcasts (NumPy
// rules) to `target`, described as `label` (e.g. "(1, *S)").
void check_broadcast(const char* op, const std::string& node, const char* name,
                     const InputView& input, ONNXTensorElementDataType type,
                     const std::vector<int64_t>& target, const char* label);

// Rejects NaN values in a float32/float64 parameter tensor (a NaN time constant would
// silently turn a whole unit's output into NaN).
void check_not_nan(const char* op, const std::string& node, const char* name, const InputView& input,
                   const std::vector<int64_t>& target, const char* label);

// Checks the inputs every filter op shares: the sequence `x`, the required `tau`
// (broadcastable to (1, *S), no NaN) and the optional `initial_level` (broadcastable to
// (B, *S)); returns the geometry of `x`.
SeqGeometry check_filter_inputs(const char* op, const std::string& node, bool time_major, const InputView& x,
                                const InputView& tau, const InputView& initial_level);

// Checks that `input` has the sequence's element type and exactly the shape `target`,
// described as `label` (e.g. "(B, *S)"): no broadcasting.
void check_exact_shape(const char* op, const std::string& node, const char* name, const InputView& input,
                       ONNXTensorElementDataType type, const std::vector<int64_t>& target, const char* label);

// Writes `input` broadcast to `target` (already checked) into `out`, dense row-major.
template <typename T>
void broadcast_into(const InputView& input, const std::vector<int64_t>& target, T* out) {
  const int64_t total = checked_count(target);
  if (total <= 0) return;
  const T* src = static_cast<const T*>(input.data);
  const size_t rank = target.size();
  const size_t offset = rank - input.shape.size();
  // Source stride per target axis, zero on broadcast axes.
  std::vector<int64_t> stride(rank, 0);
  int64_t running = 1;
  for (size_t k = input.shape.size(); k-- > 0;) {
    stride[offset + k] = input.shape[k] == 1 ? 0 : running;
    running *= input.shape[k];
  }
  std::vector<int64_t> index(rank, 0);
  int64_t src_pos = 0;
  for (int64_t i = 0; i < total; ++i) {
    out[i] = src[src_pos];
    // Odometer step over the target index.
    for (size_t k = rank; k-- > 0;) {
      ++index[k];
      src_pos += stride[k];
      if (index[k] < target[k]) break;
      src_pos -= stride[k] * index[k];
      index[k] = 0;
    }
  }
}

// Copies `input` broadcast to `target` into a dense row-major vector.  Only called for
// targets no larger than an input or output tensor, so the size is representable.
template <typename T>
std::vector<T> broadcast_to(const InputView& input, const std::vector<int64_t>& target) {
  const int64_t total = checked_count(target);
  std::vector<T> out(static_cast<size_t>(total > 0 ? total : 0));
  broadcast_into<T>(input, target, out.data());
  return out;
}

// Output `index` if the node has it (optional outputs may be absent or unnamed).
void* get_output(const Ort::KernelContext& ctx, size_t index, const std::vector<int64_t>& shape,
                 bool required);

// Where an output's shape comes from, for messages: the op, the node, the output's name
// and the input whose shape determines it.
struct OutputOrigin {
  const char* op;
  const std::string& node;
  const char* output;
  const char* input;
  const std::vector<int64_t>& input_shape;
};

// get_output after checking that the output's element and byte counts fit in int64, and
// with allocation failures reported as errors naming the op, node, output and input
// (never a bare std::bad_alloc).
void* allocate_output(const Ort::KernelContext& ctx, size_t index, const std::vector<int64_t>& shape,
                      bool required, size_t element_size, const OutputOrigin& origin);

// Runs fn(i) for i in [0, total) on the session's intra-op thread pool (serially when the
// pool has one thread).  Every i must touch a disjoint part of the outputs, which keeps the
// result independent of the number of threads.
template <typename Fn>
void parallel_for(const Ort::KernelContext& ctx, size_t total, Fn& fn) {
  if (total == 0) return;
  struct Trampoline {
    static void call(void* user, size_t i) { (*static_cast<Fn*>(user))(i); }
  };
  ctx.ParallelFor(&Trampoline::call, total, 0, &fn);
}

// Prefix of every message: "Lowpass (node 'n0')".
std::string where(const char* op, const std::string& node);

}  // namespace spikeonnx
