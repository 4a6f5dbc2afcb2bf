// EventMatMul: y = x W for x (..., K) and a weight W (K, N), event-driven (see
// event_common.h).  The value is exactly ONNX MatMul's for a 2-D W; tf2onnx's Dense on a
// sequence arrives here as x (B*T, K).
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "event_common.h"

namespace spikeonnx {
namespace {

constexpr const char* kOp = "EventMatMul";

struct EventMatMulKernel {
  static constexpr size_t kInputs = 2;  // x, W
  static constexpr size_t kRequiredInputs = 2;
  static constexpr const char* kReluOp = "EventMatMulRelu";  // with a fused Relu (ReluFused)

  EventMatMulKernel(const OrtApi* api, const OrtKernelInfo* info) : EventMatMulKernel(api, info, kOp, false) {}

 protected:  // ReluFused's constructor
  EventMatMulKernel(const OrtApi* api, const OrtKernelInfo* info, const char* op, bool relu)
      : at_(where(op, event_node_name(api, info))),
        relu_(relu),
        dense_double_(api, info, "MatMul", 13, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, {}, 2),
        dense_float_(api, info, "MatMul", 13, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, {}, 2) {
    // A constant float32 weight is packed for the dense path once, here (not a narrow one:
    // onnxruntime's MatMul serves those, see own_gemm_wins).
    const InputView w = constant_input(api, info, 1);
    if (w.present && w.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT && w.shape.size() == 2 &&
        own_gemm_wins(w.shape[1])) {
      packed_ = PackedPanels(static_cast<const float*>(w.data), w.shape[0], w.shape[1], false);
      packed_source_ = w.data;
    }
  }

 public:
  Ort::Status Compute(OrtKernelContext* context) {
    try {
      Ort::KernelContext ctx(context);
      const InputView x = get_input(ctx, 0);
      const InputView w = get_input(ctx, 1);
      check_float_input(at_, "x", x, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED, "(..., K)");
      check_float_input(at_, "W", w, x.type, "(K, N)");
      if (w.shape.size() != 2) {
        throw OpError(at_ + ": input 'W' must be a 2-D weight matrix (K, N); got shape " + shape_str(w.shape));
      }
      if (x.shape.empty()) throw OpError(at_ + ": input 'x' must have rank >= 1 (..., K); got a scalar");
      const int64_t K = x.shape.back();
      const int64_t N = w.shape[1];
      if (K != w.shape[0]) {
        throw OpError(at_ + ": x (..., K) and W (K, N) disagree on K: x has shape " + shape_str(x.shape) +
                      ", W has shape " + shape_str(w.shape));
      }
      if (K > std::numeric_limits<int32_t>::max()) {
        throw OpError(at_ + ": K = " + std::to_string(K) + " is too large (at most 2**31 - 1)");
      }
      std::vector<int64_t> shape(x.shape.begin(), x.shape.end() - 1);
      int64_t M = 1;
      for (int64_t d : shape) M *= d;
      shape.push_back(N);
      Ort::UnownedValue out = ctx.GetOutput(0, shape);
      if (M == 0 || N == 0) return Ort::Status{nullptr};
      if (x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
        run_float(context, ctx, x, w, out, M, K, N);
      } else {
        run_double(context, ctx, x, w, out, M, K, N);
      }
    } catch (const std::exception& e) {
      return Ort::Status(e.what(), ORT_INVALID_ARGUMENT);
    }
    return Ort::Status{nullptr};
  }

  // Output type and shape: (..., N) from x (..., K) and W (K, N).
  static OrtStatusPtr infer(const OrtCustomOp*, OrtShapeInferContext* ctx) {
    const InferredShape x = inferred_input(ctx, 0);
    const InferredShape w = inferred_input(ctx, 1);
    if (!x.ok || !w.ok || x.dims.empty() || w.dims.size() != 2 || !w.known(1)) return nullptr;
    std::vector<int64_t> dims(x.dims.begin(), x.dims.end() - 1);
    std::vector<std::string> symbols(x.symbols.begin(), x.symbols.end() - 1);
    for (size_t k = 0; k < dims.size(); ++k) {
      if (!x.known(k)) return nullptr;
    }
    dims.push_back(w.dims[1]);
    symbols.push_back(w.symbols[1]);
    set_inferred_output(ctx, 0, x.type, dims, symbols);
    return nullptr;
  }

 private:
  void run_float(OrtKernelContext* context, const Ort::KernelContext& ctx, const InputView& x_in,
                 const InputView& w_in, Ort::UnownedValue& out, int64_t M, int64_t K, int64_t N) const {
    const float* x = static_cast<const float*>(x_in.data);
    float* y = out.GetTensorMutableData<float>();
    // rows (M', K) of x -> (M', N): onnxruntime's MatMul for a dense product it does faster
    auto product = [&](const float* xs, int64_t rows, float* ys) {
      const bool events = sparse_rows(ctx, xs, rows, K, N);
      if (!events && !own_gemm_wins(N) && dense_float_.available()) {
        dense_float_.run(context, 2, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, xs, {rows, K}, ys, {rows, N});
        if (relu_) relu_in_place(ys, rows * N);
      } else {
        own_product(ctx, xs, w_in, ys, rows, K, N, events);
      }
    };
    on_distinct_rows(ctx, x, y, M, K, N, product);
  }

  // y (M, N) = x w by the op's own kernels: the event product, or dense_matmul.
  void own_product(const Ort::KernelContext& ctx, const float* x, const InputView& w_in, float* y, int64_t M,
                   int64_t K, int64_t N, bool events) const {
    const float* w = static_cast<const float*>(w_in.data);
    auto finish = [this](int64_t, float* y_row, int64_t c0, int64_t c1) {
      if (relu_) relu_in_place(y_row + c0, c1 - c0);
    };
    if (events) {
      event_matmul(ctx, x, w, y, M, K, N, finish);
    } else {
      PackedPanels local;
      dense_matmul(ctx, x, packed_or_now(packed_, packed_source_, w_in, &local, [&] { return PackedPanels(w, K, N, false); }),
                   y, M, finish);
    }
  }

  void run_double(OrtKernelContext* context, const Ort::KernelContext& ctx, const InputView& x_in,
                  const InputView& w_in, Ort::UnownedValue& out, int64_t M, int64_t K, int64_t N) const {
    const double* x = static_cast<const double*>(x_in.data);
    const double* w = static_cast<const double*>(w_in.data);
    double* y = out.GetTensorMutableData<double>();
    auto finish = [this](int64_t, double* y_row, int64_t c0, int64_t c1) {
      if (relu_) relu_in_place(y_row + c0, c1 - c0);
    };
    // rows (M', K) of x -> (M', N): float64 has only the event product of its own
    auto product = [&](const double* xs, int64_t rows, double* ys) {
      if (dense_double_.available() && !sparse_rows(ctx, xs, rows, K, N)) {
        dense_double_.run(context, 2, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, xs, {rows, K}, ys, {rows, N});
        if (relu_) relu_in_place(ys, rows * N);
      } else {
        event_matmul(ctx, xs, w, ys, rows, K, N, finish);
      }
    };
    on_distinct_rows(ctx, x, y, M, K, N, product);
  }

  std::string at_;
  bool relu_ = false;            // EventMatMulRelu
  NativeOp dense_double_;        // float64: onnxruntime's MatMul
  NativeOp dense_float_;         // float32 where it beats dense_matmul (see own_gemm_wins)
  PackedPanels packed_;          // float32: the constant weight, packed for dense_matmul
  const void* packed_source_ = nullptr;
};

}  // namespace

const OrtCustomOp* event_matmul_op() {
  static const EventOp<EventMatMulKernel> op(kOp);
  return &op;
}

const OrtCustomOp* event_matmul_relu_op() {
  static const EventOp<ReluFused<EventMatMulKernel>> op(EventMatMulKernel::kReluOp);
  return &op;
}

}  // namespace spikeonnx
