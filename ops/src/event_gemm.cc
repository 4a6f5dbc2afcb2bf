// EventGemm: y = alpha * A B' + beta * C with A (M, K) (transA = 0), B' = B (K, N) or B^T
// for B (N, K) (transB = 1), and C broadcastable to (M, N); event-driven over the
// nonzeros of A (see event_common.h).  The value is exactly ONNX Gemm's with transA = 0.
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "event_common.h"

namespace spikeonnx {
namespace {

constexpr const char* kOp = "EventGemm";

// (K, N) row-major copy of B^T, B being (N, K).
template <typename T>
std::vector<T> transposed(const T* b, int64_t n, int64_t k) {
  std::vector<T> out(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) out[static_cast<size_t>(j * n + i)] = b[i * k + j];
  }
  return out;
}

struct EventGemmKernel {
  static constexpr size_t kInputs = 3;  // A, B, C
  static constexpr size_t kRequiredInputs = 2;
  static constexpr const char* kReluOp = "EventGemmRelu";  // with a fused Relu (ReluFused)

  EventGemmKernel(const OrtApi* api, const OrtKernelInfo* info) : EventGemmKernel(api, info, kOp, false) {}

 protected:  // ReluFused's constructor
  EventGemmKernel(const OrtApi* api, const OrtKernelInfo* info, const char* op, bool relu)
      : at_(where(op, event_node_name(api, info))), relu_(relu) {
    int64_t trans_a = 0;
    event_int_attribute(api, info, at_, "transA", &trans_a);
    if (trans_a != 0) {
      throw Ort::Exception(at_ + ": attribute 'transA' must be 0 (the event path runs over the rows of A); got " +
                               std::to_string(trans_a),
                           ORT_INVALID_ARGUMENT);
    }
    event_int_attribute(api, info, at_, "transB", &trans_b_);
    if (trans_b_ != 0 && trans_b_ != 1) {
      throw Ort::Exception(at_ + ": attribute 'transB' must be 0 or 1; got " + std::to_string(trans_b_),
                           ORT_INVALID_ARGUMENT);
    }
    event_float_attribute(api, info, at_, "alpha", &alpha_);
    event_float_attribute(api, info, at_, "beta", &beta_);
    const std::vector<NativeOp::Attribute> attrs{
        {"alpha", ORT_OP_ATTR_FLOAT, {}, alpha_, {}},
        {"beta", ORT_OP_ATTR_FLOAT, {}, beta_, {}},
        {"transA", ORT_OP_ATTR_INT, {0}, 0.0f, {}},
        {"transB", ORT_OP_ATTR_INT, {trans_b_}, 0.0f, {}},
    };
    for (int inputs = 2; inputs <= 3; ++inputs) {
      dense_double_[inputs - 2] =
          std::make_unique<NativeOp>(api, info, "Gemm", 13, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, attrs, inputs);
      dense_float_[inputs - 2] =
          std::make_unique<NativeOp>(api, info, "Gemm", 13, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, attrs, inputs);
    }
    // A constant B^T is transposed once, here, instead of at every call; a constant
    // float32 B is packed for the dense path (not a narrow one: see own_gemm_wins).
    const InputView b = constant_input(api, info, 1);
    if (b.present && b.shape.size() == 2 && b.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
        own_gemm_wins(trans_b_ ? b.shape[0] : b.shape[1])) {
      panels_ = trans_b_ ? PackedPanels(static_cast<const float*>(b.data), b.shape[1], b.shape[0], true)
                         : PackedPanels(static_cast<const float*>(b.data), b.shape[0], b.shape[1], false);
      panels_source_ = b.data;
    }
    if (trans_b_ == 1 && b.present && b.shape.size() == 2) {
      packed_source_ = b.data;
      if (b.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        packed_float_ = transposed(static_cast<const float*>(b.data), b.shape[0], b.shape[1]);
      } else if (b.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE) {
        packed_double_ = transposed(static_cast<const double*>(b.data), b.shape[0], b.shape[1]);
      }
    }
  }

 public:
  Ort::Status Compute(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const InputView a = get_input(ctx, 0);
      const InputView b = get_input(ctx, 1);
      const InputView c = get_input(ctx, 2);
      check_float_input(at_, "A", a, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED, "(M, K)");
      const char* b_label = trans_b_ ? "(N, K)" : "(K, N)";
      check_float_input(at_, "B", b, a.type, b_label);
      if (a.shape.size() != 2) throw OpError(at_ + ": input 'A' must be 2-D (M, K); got shape " + shape_str(a.shape));
      if (b.shape.size() != 2) {
        throw OpError(at_ + ": input 'B' must be 2-D " + b_label + "; got shape " + shape_str(b.shape));
      }
      const int64_t M = a.shape[0];
      const int64_t K = a.shape[1];
      const int64_t N = trans_b_ ? b.shape[0] : b.shape[1];
      if ((trans_b_ ? b.shape[1] : b.shape[0]) != K) {
        throw OpError(at_ + ": A (M, K) and B " + b_label + " disagree on K: A has shape " + shape_str(a.shape) +
                      ", B has shape " + shape_str(b.shape) + " (transB = " + std::to_string(trans_b_) + ")");
      }
      if (K > std::numeric_limits<int32_t>::max()) {
        throw OpError(at_ + ": K = " + std::to_string(K) + " is too large (at most 2**31 - 1)");
      }
      if (c.present) {
        check_float_input(at_, "C", c, a.type, "");
        const size_t r = c.shape.size();
        const bool fits = r <= 2 && (r < 1 || c.shape[r - 1] == 1 || c.shape[r - 1] == N) &&
                          (r < 2 || c.shape[0] == 1 || c.shape[0] == M);
        if (!fits) {
          throw OpError(at_ + ": input 'C' of shape " + shape_str(c.shape) + " does not broadcast to (M, N) = " +
                        shape_str({M, N}));
        }
      }
      Ort::UnownedValue out = ctx.GetOutput(0, {M, N});
      if (M == 0 || N == 0) return Ort::Status{nullptr};
      if (a.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        // float32 dense inputs: onnxruntime's Gemm unless dense_matmul is as fast (own_gemm_wins)
        const NativeOp* native = own_gemm_wins(N) ? nullptr : dense_float_[c.present ? 1 : 0].get();
        run<float>(context, ctx, a, b, c, out, M, K, N, native, packed_float_);
      } else {
        run<double>(context, ctx, a, b, c, out, M, K, N, dense_double_[c.present ? 1 : 0].get(), packed_double_);
      }
    } catch (const std::exception& e) {
      return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }

  // Output type and shape: (M, N).
  static OrtStatusPtr infer(const OrtCustomOp*, OrtShapeInferContext* ctx) {
    const InferredShape a = inferred_input(ctx, 0);
    const InferredShape b = inferred_input(ctx, 1);
    int64_t trans_b = 0;
    inferred_int_attribute(ctx, "transB", &trans_b);
    if (!a.ok || !b.ok || a.dims.size() != 2 || b.dims.size() != 2) return nullptr;
    const size_t n_axis = trans_b ? 0 : 1;
    if (!a.known(0) || !b.known(n_axis)) return nullptr;
    set_inferred_output(ctx, 0, a.type, {a.dims[0], b.dims[n_axis]}, {a.symbols[0], b.symbols[n_axis]});
    return nullptr;
  }

 private:
  template <typename T>
  void run(OrtKernelContext* context, const Ort::KernelContext& ctx, const InputView& a_in, const InputView& b_in,
           const InputView& c_in, Ort::UnownedValue& out, int64_t M, int64_t K, int64_t N, const NativeOp* dense,
           const std::vector<T>& packed) const {
    const T* a = static_cast<const T*>(a_in.data);
    T* y = out.GetTensorMutableData<T>();
    const T* w = static_cast<const T*>(b_in.data);
    const T alpha = static_cast<T>(alpha_);
    const T beta = static_cast<T>(beta_);
    const T* c = static_cast<const T*>(c_in.data);
    // Element (r, j) of C broadcast to (M, N): strides are 0 along broadcast axes.
    const size_t rank = c_in.shape.size();
    const int64_t c_cols = rank >= 1 ? c_in.shape[rank - 1] : 1;
    const int64_t col_stride = c_cols == 1 ? 0 : 1;
    const int64_t row_stride = rank == 2 && c_in.shape[0] != 1 ? c_cols : 0;
    const bool add_c = c_in.present && beta != T(0);
    auto finish = [&](int64_t r, T* y_row, int64_t c0, int64_t c1) {
      if (alpha != T(1)) {
        for (int64_t j = c0; j < c1; ++j) y_row[j] *= alpha;
      }
      if (add_c) {
        const T* c_row = c + r * row_stride;
        for (int64_t j = c0; j < c1; ++j) y_row[j] += beta * c_row[j * col_stride];
      }
      if (relu_) relu_in_place(y_row + c0, c1 - c0);
    };
    // rows (M', K) of A -> (M', N) by the op's own kernels: float32's dense_matmul on the
    // packed weight, or the event product (float64's only one)
    auto own = [&](const T* xs, int64_t rows, T* ys, bool events) {
      if constexpr (std::is_same_v<T, float>) {
        if (!events) {
          PackedPanels local;
          dense_matmul(ctx, xs, packed_or_now(panels_, panels_source_, b_in, &local, [&] {
            return PackedPanels(w, K, N, trans_b_ != 0);
          }), ys, rows, finish);
          return;
        }
      }
      // (K, N) for the event path
      std::vector<T> local;
      const T* w_rows =
          trans_b_ ? packed_or_now(packed, packed_source_, b_in, &local, [&] { return transposed(w, N, K); }).data() : w;
      event_matmul(ctx, xs, w_rows, ys, rows, K, N, finish);
    };
    // rows (M', K) of A -> (M', N): onnxruntime's Gemm for a dense product it does faster
    auto product = [&](const T* xs, int64_t rows, T* ys) {
      const bool events = sparse_rows(ctx, xs, rows, K, N);
      if (dense != nullptr && dense->available() && !events) {
        const ONNXTensorElementDataType type =
            std::is_same_v<T, float> ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
        dense->run(context, c_in.present ? 3 : 2, type, xs, {rows, K}, ys, {rows, N});
        if (relu_) relu_in_place(ys, rows * N);
      } else {
        own(xs, rows, ys, events);
      }
    };
    on_distinct_rows(ctx, a, y, M, K, N, product, row_stride == 0);  // a C per row would differ along a run
  }

  std::string at_;
  bool relu_ = false;  // EventGemmRelu
  int64_t trans_b_ = 0;
  float alpha_ = 1.0f;
  float beta_ = 1.0f;
  std::unique_ptr<NativeOp> dense_double_[2];  // float64 dense: onnxruntime's Gemm without / with C
  std::unique_ptr<NativeOp> dense_float_[2];   // float32 dense where dense_matmul is slower
  PackedPanels panels_;                          // float32 dense: the constant B, packed
  const void* panels_source_ = nullptr;
  const void* packed_source_ = nullptr;
  std::vector<float> packed_float_;
  std::vector<double> packed_double_;
};

}  // namespace

const OrtCustomOp* event_gemm_op() {
  static const EventOp<EventGemmKernel> op(kOp);
  return &op;
}

const OrtCustomOp* event_gemm_relu_op() {
  static const EventOp<ReluFused<EventGemmKernel>> op(EventGemmKernel::kReluOp);
  return &op;
}

}  // namespace spikeonnx
