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

// Inputs denser than this go to onnxruntime's MatMul (measured with one-node models and benchmarks/bench_events.py on an AVX-512 machine, 1024 x 1024 weights).  The
// event path sweeps the weight once per block of 256 rows, so it pays off at higher
// densities when there are many rows.
double break_even(int64_t rows) { return rows >= 1024 ? 0.25 : 0.15; }

struct EventMatMulKernel {
  static constexpr size_t kInputs = 2;  // x, W
  static constexpr size_t kRequiredInputs = 2;

  EventMatMulKernel(const OrtApi* api, const OrtKernelInfo* info)
      : at_(where(kOp, event_node_name(api, info))),
        dense_float_(api, info, "MatMul", 13, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, {}, 2),
        dense_double_(api, info, "MatMul", 13, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, {}, 2) {}

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
        run<float>(context, ctx, x, w, out, M, K, N, dense_float_);
      } else {
        run<double>(context, ctx, x, w, out, M, K, N, dense_double_);
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
  template <typename T>
  void run(OrtKernelContext* context, const Ort::KernelContext& ctx, const InputView& x_in, const InputView& w_in,
           Ort::UnownedValue& out, int64_t M, int64_t K, int64_t N, const NativeOp& dense) const {
    const T* x = static_cast<const T*>(x_in.data);
    const int64_t nonzeros = count_nonzero(ctx, x, M * K);
    if (dense.available() && !use_events(nonzeros, M * K, break_even(M))) {
      dense.run(context, 2, out);
      return;
    }
    auto finish = [](int64_t, T*, int64_t, int64_t) {};
    event_matmul(ctx, x, static_cast<const T*>(w_in.data), out.GetTensorMutableData<T>(), M, K, N, finish);
  }

  std::string at_;
  NativeOp dense_float_;
  NativeOp dense_double_;
};

}  // namespace

const OrtCustomOp* event_matmul_op() {
  static const EventOp<EventMatMulKernel> op(kOp);
  return &op;
}

}  // namespace spikeonnx
