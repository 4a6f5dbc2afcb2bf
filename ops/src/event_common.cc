#include "event_common.h"

#include <sstream>
#include <thread>
#include <utility>

namespace spikeonnx {
namespace {

// Releases a status we only test for success.
bool ok(const OrtApi* api, OrtStatus* status) {
  if (status == nullptr) return true;
  api->ReleaseStatus(status);
  return false;
}

// Whether the node has an attribute `name` of any type (the array getters succeed for any
// existing attribute in the onnxruntime versions we know; the scalar ones are tried too).
bool has_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* name) {
  size_t size = 0;
  float f = 0.0f;
  int64_t i = 0;
  return ok(api, api->KernelInfoGetAttribute_float(info, name, &f)) ||
         ok(api, api->KernelInfoGetAttribute_int64(info, name, &i)) ||
         ok(api, api->KernelInfoGetAttribute_string(info, name, nullptr, &size)) ||
         ok(api, api->KernelInfoGetAttributeArray_int64(info, name, nullptr, &size)) ||
         ok(api, api->KernelInfoGetAttributeArray_float(info, name, nullptr, &size));
}

[[noreturn]] void wrong_type(const std::string& at, const char* name, const char* expected) {
  // Only used while the kernel is created, where errors travel as Ort::Exception.
  throw Ort::Exception(at + ": attribute '" + name + "' must be of type " + expected, ORT_INVALID_ARGUMENT);
}

}  // namespace

std::string event_node_name(const OrtApi* api, const OrtKernelInfo* info) {
  size_t size = 0;
  if (!ok(api, api->KernelInfo_GetNodeName(info, nullptr, &size))) return {};
  std::string name(size, '\0');
  if (!ok(api, api->KernelInfo_GetNodeName(info, name.data(), &size))) return {};
  if (!name.empty() && name.back() == '\0') name.pop_back();
  return name;
}

bool event_int_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at, const char* name,
                         int64_t* out) {
  if (ok(api, api->KernelInfoGetAttribute_int64(info, name, out))) return true;
  if (has_attribute(api, info, name)) wrong_type(at, name, "INT");
  return false;
}

bool event_float_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at,
                           const char* name, float* out) {
  if (ok(api, api->KernelInfoGetAttribute_float(info, name, out))) return true;
  if (has_attribute(api, info, name)) wrong_type(at, name, "FLOAT");
  return false;
}

bool event_ints_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at, const char* name,
                          std::vector<int64_t>* out) {
  // An INT attribute also answers the array getter: rule it out first.
  int64_t scalar = 0;
  if (ok(api, api->KernelInfoGetAttribute_int64(info, name, &scalar))) wrong_type(at, name, "INTS");
  size_t size = 0;
  if (!ok(api, api->KernelInfoGetAttributeArray_int64(info, name, nullptr, &size))) {
    if (has_attribute(api, info, name)) wrong_type(at, name, "INTS");
    return false;
  }
  out->assign(size, 0);
  if (size > 0 && !ok(api, api->KernelInfoGetAttributeArray_int64(info, name, out->data(), &size))) {
    wrong_type(at, name, "INTS");
  }
  return true;
}

bool event_string_attribute(const OrtApi* api, const OrtKernelInfo* info, const std::string& at,
                            const char* name, std::string* out) {
  size_t size = 0;
  if (!ok(api, api->KernelInfoGetAttribute_string(info, name, nullptr, &size))) {
    if (has_attribute(api, info, name)) wrong_type(at, name, "STRING");
    return false;
  }
  std::string value(size, '\0');
  if (!ok(api, api->KernelInfoGetAttribute_string(info, name, value.data(), &size))) wrong_type(at, name, "STRING");
  if (!value.empty() && value.back() == '\0') value.pop_back();
  *out = value;
  return true;
}

namespace {
constexpr size_t kAlignFloats = 16;  // 64 bytes

size_t aligned_offset(const std::vector<float>& v) {
  const auto address = reinterpret_cast<uintptr_t>(v.data());
  return ((64 - address % 64) % 64) / sizeof(float);
}
}  // namespace

int64_t cpu_cores() {
  static const int64_t cores = std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  return cores;
}

PackedPanels::PackedPanels(const float* b, int64_t K, int64_t N, bool transposed) : k_(K), n_(N) {
  const int64_t P = event_loops().gemm_panel_width();
  const int64_t panels = (N + P - 1) / P;
  storage_.assign(static_cast<size_t>(panels * K * P) + kAlignFloats, 0.0f);
  offset_ = aligned_offset(storage_);
  float* out = data();
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t j0 = p * P, width = std::min(P, N - j0);
    for (int64_t k = 0; k < K; ++k) {
      float* dst = out + (p * K + k) * P;
      if (transposed) {
        for (int64_t j = 0; j < width; ++j) dst[j] = b[(j0 + j) * K + k];
      } else {
        std::copy(b + k * N + j0, b + k * N + j0 + width, dst);
      }
    }
  }
}

void dense_block(const float* a, int64_t lda, const float* bp, int64_t K, int64_t N, float* c, int64_t ldc,
                 int64_t r0, int64_t r1, int64_t p0, int64_t p1) {
  const EventLoops& loops = event_loops();
  const int64_t P = loops.gemm_panel_width();
  const int64_t R = loops.gemm_rows();
  // 512 k values of a panel (64 KiB with AVX-512's 32-float panels) stay in L2 while the
  // block's register tiles run over them (256 and 128 measured no faster).
  constexpr int64_t kKBlock = 512;
  if (K == 0) {
    for (int64_t r = r0; r < r1; ++r) std::fill(c + r * ldc + p0 * P, c + r * ldc + std::min(N, p1 * P), 0.0f);
    return;
  }
  // The block's rows of A are copied per k block, each register tile's R rows
  // interleaved (element (r, k) at [k * R + r]): the tile's loads are then consecutive,
  // where rows a power-of-two stride apart would all fall into one L1 set.
  std::vector<float> ap(static_cast<size_t>((r1 - r0 + R) * std::min(kKBlock, K)));
  for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
    const int64_t kc = std::min(kKBlock, K - k0);
    for (int64_t r = r0; r < r1; r += R) {
      float* tile = ap.data() + (r - r0) * kc;
      const int64_t rows = std::min(R, r1 - r);
      for (int64_t i = 0; i < rows; ++i) {
        const float* src = a + (r + i) * lda + k0;
        for (int64_t k = 0; k < kc; ++k) tile[k * R + i] = src[k];
      }
    }
    for (int64_t p = p0; p < p1; ++p) {
      const float* panel = bp + (p * K + k0) * P;
      const int64_t cols = std::min(P, N - p * P);
      for (int64_t r = r0; r < r1; r += R) {
        loops.gemm_tile(ap.data() + (r - r0) * kc, 1, R, panel, kc, c + r * ldc + p * P, ldc, std::min(R, r1 - r),
                        cols, k0 > 0);
      }
    }
  }
}

InputView constant_input(const OrtApi* api, const OrtKernelInfo* info, size_t index) {
  InputView view;
  size_t count = 0;
  if (!ok(api, api->KernelInfo_GetInputCount(info, &count)) || index >= count) return view;
  int is_constant = 0;
  const OrtValue* value = nullptr;
  if (!ok(api, api->KernelInfoGetConstantInput_tensor(info, index, &is_constant, &value))) return view;
  if (!is_constant || value == nullptr) return view;
  Ort::ConstValue v(value);
  if (!v.IsTensor()) return view;
  auto shape_info = v.GetTensorTypeAndShapeInfo();
  view.present = true;
  view.type = shape_info.GetElementType();
  view.shape = shape_info.GetShape();
  view.data = v.GetTensorRawData();
  return view;
}

NativeOp::NativeOp(const OrtApi* api, const OrtKernelInfo* info, const char* op, int version,
                   ONNXTensorElementDataType type, const std::vector<Attribute>& attributes, int inputs)
    : api_(api) {
  std::vector<OrtOpAttr*> attrs;
  OrtStatus* status = nullptr;
  for (const Attribute& a : attributes) {
    OrtOpAttr* attr = nullptr;
    switch (a.type) {
      case ORT_OP_ATTR_INT:
      case ORT_OP_ATTR_INTS:
        status = api->CreateOpAttr(a.name.c_str(), a.ints.data(), static_cast<int>(a.ints.size()), a.type, &attr);
        break;
      case ORT_OP_ATTR_FLOAT:
        status = api->CreateOpAttr(a.name.c_str(), &a.f, 1, a.type, &attr);
        break;
      case ORT_OP_ATTR_STRING:
        status = api->CreateOpAttr(a.name.c_str(), a.s.c_str(), static_cast<int>(a.s.size()), a.type, &attr);
        break;
      default:
        break;
    }
    if (status != nullptr) break;
    if (attr != nullptr) attrs.push_back(attr);
  }
  if (status == nullptr) {
    const char* names[] = {"T"};
    ONNXTensorElementDataType types[] = {type};
    status = api->CreateOp(info, op, "", version, names, types, 1, attrs.data(), static_cast<int>(attrs.size()),
                           inputs, 1, &op_);
  }
  for (OrtOpAttr* attr : attrs) api->ReleaseOpAttr(attr);
  // No native kernel (e.g. a type onnxruntime's CPU kernel lacks): the event path serves
  // every density then.
  if (status != nullptr) {
    api->ReleaseStatus(status);
    op_ = nullptr;
  }
}

NativeOp::~NativeOp() {
  if (op_ != nullptr) api_->ReleaseOp(op_);
}

void NativeOp::run(OrtKernelContext* context, int inputs, ONNXTensorElementDataType type, const void* x,
                   const std::vector<int64_t>& x_shape, void* y, const std::vector<int64_t>& y_shape) const {
  // Owns what the C API hands out, so that an error releases it too.
  struct Owned {
    const OrtApi* api;
    OrtMemoryInfo* memory = nullptr;
    OrtValue* x = nullptr;
    OrtValue* y = nullptr;
    ~Owned() {
      if (x != nullptr) api->ReleaseValue(x);
      if (y != nullptr) api->ReleaseValue(y);
      if (memory != nullptr) api->ReleaseMemoryInfo(memory);
    }
  } owned{api_};
  auto check = [this](OrtStatus* status) {
    if (status == nullptr) return;
    std::string message = api_->GetErrorMessage(status);
    const OrtErrorCode code = api_->GetErrorCode(status);
    api_->ReleaseStatus(status);
    throw Ort::Exception(std::move(message), code);
  };
  const size_t element = type == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE ? sizeof(double) : sizeof(float);
  auto bytes = [element](const std::vector<int64_t>& shape) {
    size_t n = element;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  };
  check(api_->CreateCpuMemoryInfo(OrtDeviceAllocator, OrtMemTypeDefault, &owned.memory));
  // The C API takes a mutable pointer; the kernel only reads its inputs.
  check(api_->CreateTensorWithDataAsOrtValue(owned.memory, const_cast<void*>(x), bytes(x_shape), x_shape.data(),
                                             x_shape.size(), type, &owned.x));
  check(api_->CreateTensorWithDataAsOrtValue(owned.memory, y, bytes(y_shape), y_shape.data(), y_shape.size(), type,
                                             &owned.y));
  std::vector<const OrtValue*> in(static_cast<size_t>(inputs), nullptr);
  in[0] = owned.x;
  for (int i = 1; i < inputs; ++i) {
    check(api_->KernelContext_GetInput(context, static_cast<size_t>(i), &in[static_cast<size_t>(i)]));
  }
  check(api_->InvokeOp(context, op_, in.data(), inputs, &owned.y, 1));
}

}  // namespace spikeonnx

namespace spikeonnx {

InferredShape inferred_input(OrtShapeInferContext* ctx, size_t index) {
  const OrtApi* api = &Ort::GetApi();
  InferredShape out;
  OrtTensorTypeAndShapeInfo* info = nullptr;  // owned by the context
  size_t rank = 0;
  if (!ok(api, api->ShapeInferContext_GetInputTypeShape(ctx, index, &info)) || info == nullptr ||
      !ok(api, api->GetTensorElementType(info, &out.type)) || !ok(api, api->GetDimensionsCount(info, &rank))) {
    return out;
  }
  out.dims.assign(rank, -1);
  std::vector<const char*> symbols(rank, nullptr);
  if (!ok(api, api->GetDimensions(info, out.dims.data(), rank)) ||
      !ok(api, api->GetSymbolicDimensions(info, symbols.data(), rank))) {
    return out;
  }
  for (const char* s : symbols) out.symbols.emplace_back(s == nullptr ? "" : s);
  out.ok = true;
  return out;
}

void set_inferred_output(OrtShapeInferContext* ctx, size_t index, ONNXTensorElementDataType type,
                         const std::vector<int64_t>& dims, const std::vector<std::string>& symbols) {
  const OrtApi* api = &Ort::GetApi();
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (!ok(api, api->CreateTensorTypeAndShapeInfo(&info))) return;
  std::vector<const char*> names;
  for (const std::string& s : symbols) names.push_back(s.c_str());
  OrtStatus* status = api->SetTensorElementType(info, type);
  if (status == nullptr) status = api->SetDimensions(info, dims.data(), dims.size());
  if (status == nullptr) status = api->SetSymbolicDimensions(info, names.data(), names.size());
  if (status == nullptr) status = api->ShapeInferContext_SetOutputTypeShape(ctx, index, info);
  if (status != nullptr) api->ReleaseStatus(status);
  api->ReleaseTensorTypeAndShapeInfo(info);
}

namespace {

const OrtOpAttr* inferred_attribute(OrtShapeInferContext* ctx, const char* name) {
  const OrtApi* api = &Ort::GetApi();
  const OrtOpAttr* attr = nullptr;
  if (!ok(api, api->ShapeInferContext_GetAttribute(ctx, name, &attr))) return nullptr;
  return attr;
}

}  // namespace

bool inferred_int_attribute(OrtShapeInferContext* ctx, const char* name, int64_t* out) {
  const OrtOpAttr* attr = inferred_attribute(ctx, name);
  size_t read = 0;
  return attr != nullptr && ok(&Ort::GetApi(), Ort::GetApi().ReadOpAttr(attr, ORT_OP_ATTR_INT, out, sizeof(*out), &read));
}

bool inferred_ints_attribute(OrtShapeInferContext* ctx, const char* name, std::vector<int64_t>* out) {
  const OrtOpAttr* attr = inferred_attribute(ctx, name);
  if (attr == nullptr) return false;
  const OrtApi* api = &Ort::GetApi();
  size_t bytes = 0;
  OrtStatus* status = api->ReadOpAttr(attr, ORT_OP_ATTR_INTS, nullptr, 0, &bytes);
  if (status != nullptr) api->ReleaseStatus(status);  // expected: asks for the size
  out->assign(bytes / sizeof(int64_t), 0);
  if (out->empty()) return bytes == 0 && status == nullptr;
  return ok(api, api->ReadOpAttr(attr, ORT_OP_ATTR_INTS, out->data(), bytes, &bytes));
}

bool inferred_string_attribute(OrtShapeInferContext* ctx, const char* name, std::string* out) {
  const OrtOpAttr* attr = inferred_attribute(ctx, name);
  if (attr == nullptr) return false;
  const OrtApi* api = &Ort::GetApi();
  size_t bytes = 0;
  OrtStatus* status = api->ReadOpAttr(attr, ORT_OP_ATTR_STRING, nullptr, 0, &bytes);
  if (status != nullptr) api->ReleaseStatus(status);
  out->assign(bytes, '\0');
  if (bytes == 0) return status == nullptr;
  if (!ok(api, api->ReadOpAttr(attr, ORT_OP_ATTR_STRING, out->data(), bytes, &bytes))) return false;
  while (!out->empty() && out->back() == '\0') out->pop_back();
  return true;
}

void check_float_input(const std::string& at, const char* name, const InputView& input,
                       ONNXTensorElementDataType type, const char* shape_label) {
  if (!input.present) throw OpError(at + ": required input '" + name + "' " + shape_label + " is missing");
  const bool is_float = input.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ||
                        input.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED) {
    if (!is_float) {
      throw OpError(at + ": input '" + name + "' must be a float32 or float64 tensor; got " + dtype_str(input.type));
    }
  } else if (input.type != type) {
    throw OpError(at + ": input '" + name + "' must have the element type of the first input (" + dtype_str(type) +
                  "); got " + dtype_str(input.type));
  }
}

}  // namespace spikeonnx
