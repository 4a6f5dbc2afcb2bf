// The library's only exported symbol: onnxruntime calls RegisterCustomOps when a session's
// options load this file (SessionOptions.register_custom_ops_library).
#include <onnxruntime_lite_custom_op.h>

#include "event_common.h"
#include "op_factory.h"

// KernelContext_ParallelFor and the shape-inference API arrived with API version 17.
static_assert(ORT_API_VERSION >= 17, "spikeonnx ops need onnxruntime headers >= 1.17");

namespace {

constexpr const char* kDomain = "spikeonnx";

// The domain is built once per process and shared by every session: onnxruntime only keeps
// a pointer to it, so it must outlive them all, and it is never changed after creation.
OrtStatus* build_domain(const OrtApi* api, OrtCustomOpDomain** out) {
  OrtCustomOpDomain* domain = nullptr;
  if (OrtStatus* status = api->CreateCustomOpDomain(kDomain, &domain)) return status;
  for (const OrtCustomOp* op : {spikeonnx::spiking_activation_op(), spikeonnx::lowpass_op(),
                                spikeonnx::alpha_op(), spikeonnx::event_matmul_op(),
                                spikeonnx::event_gemm_op(), spikeonnx::event_conv_op(),
                                spikeonnx::event_matmul_relu_op(), spikeonnx::event_gemm_relu_op(),
                                spikeonnx::event_conv_relu_op(), spikeonnx::event_conv_spiking_op()}) {
    if (OrtStatus* status = api->CustomOpDomain_Add(domain, op)) {
      api->ReleaseCustomOpDomain(domain);
      return status;
    }
  }
  *out = domain;
  return nullptr;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // Runtime older than the headers: report through the oldest API, which always exists.
    return api_base->GetApi(1)->CreateStatus(
        ORT_FAIL, "spikeonnx ops: this onnxruntime is older than the API version the library was built for");
  }
  struct Built {
    OrtCustomOpDomain* domain = nullptr;
    OrtStatus* error = nullptr;
  };
  // Runs once per process (thread-safe static initialisation).  The C++ wrappers used in
  // the kernels reach the API through Ort::Global; the library is not linked against
  // libonnxruntime, so that pointer is set here, once, to the API handed to us.
  static const Built built = [api] {
    Ort::InitApi(api);
    Built b;
    b.error = build_domain(api, &b.domain);
    return b;
  }();
  if (built.error != nullptr) {
    return api->CreateStatus(api->GetErrorCode(built.error), api->GetErrorMessage(built.error));
  }
  return api->AddCustomOpDomain(options, built.domain);
}
