#include "kernel_common.h"

#include <sstream>

namespace spikeonnx {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '(';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out << ", ";
    out << shape[i];
  }
  if (shape.size() == 1) out << ',';
  out << ')';
  return out.str();
}

const char* dtype_str(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return "bfloat16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: return "int16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return "uint16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32: return "uint32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64: return "uint64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING: return "string";
    default: return "an unsupported element type";
  }
}

std::string where(const char* op, const std::string& node) {
  std::string out = op;
  if (!node.empty()) out += " (node '" + node + "')";
  return out;
}

std::vector<int64_t> SeqGeometry::state_shape(int64_t extra) const {
  std::vector<int64_t> out{batch};
  if (extra > 0) out.push_back(extra);
  out.insert(out.end(), unit_shape.begin(), unit_shape.end());
  return out;
}

std::vector<int64_t> SeqGeometry::unit_param_shape() const {
  std::vector<int64_t> out{1};
  out.insert(out.end(), unit_shape.begin(), unit_shape.end());
  return out;
}

namespace {

// Attribute lookups through the C API so that a missing attribute is a status we can turn
// into our own message rather than an exception from deep inside the C++ wrapper.
bool try_float(const OrtApi* api, const OrtKernelInfo* info, const char* name, float* out) {
  OrtStatus* status = api->KernelInfoGetAttribute_float(info, name, out);
  if (status == nullptr) return true;
  api->ReleaseStatus(status);
  return false;
}

bool try_int(const OrtApi* api, const OrtKernelInfo* info, const char* name, int64_t* out) {
  OrtStatus* status = api->KernelInfoGetAttribute_int64(info, name, out);
  if (status == nullptr) return true;
  api->ReleaseStatus(status);
  return false;
}

bool try_string(const OrtApi* api, const OrtKernelInfo* info, const char* name) {
  size_t size = 0;
  OrtStatus* status = api->KernelInfoGetAttribute_string(info, name, nullptr, &size);
  if (status == nullptr) return true;
  api->ReleaseStatus(status);
  return false;
}

bool try_float_array(const OrtApi* api, const OrtKernelInfo* info, const char* name) {
  size_t size = 0;
  OrtStatus* status = api->KernelInfoGetAttributeArray_float(info, name, nullptr, &size);
  if (status == nullptr) return true;
  api->ReleaseStatus(status);
  return false;
}

bool try_int_array(const OrtApi* api, const OrtKernelInfo* info, const char* name) {
  size_t size = 0;
  OrtStatus* status = api->KernelInfoGetAttributeArray_int64(info, name, nullptr, &size);
  if (status == nullptr) return true;
  api->ReleaseStatus(status);
  return false;
}

// What the node stores under `name` when it is not of the expected type: "a FLOAT",
// "an INT", ..., or nullptr if the node has no such attribute.  The kernel API cannot list
// a node's attributes or tell their type, so each typed getter is tried in turn (the
// scalar getters fail on a type mismatch; the array getters succeed for any attribute that
// exists in the onnxruntime versions we know, and otherwise only for arrays).
const char* other_attribute_type(const OrtApi* api, const OrtKernelInfo* info, const char* name) {
  float f = 0.0f;
  int64_t i = 0;
  if (try_float(api, info, name, &f)) return "a FLOAT";
  if (try_int(api, info, name, &i)) return "an INT";
  if (try_string(api, info, name)) return "a STRING";
  if (try_float_array(api, info, name) || try_int_array(api, info, name)) return "a non-scalar";
  return nullptr;
}

[[noreturn]] void wrong_type(const std::string& where_text, const char* name, const char* expected,
                             const char* got, const char* hint = "") {
  throw Ort::Exception(where_text + ": attribute '" + name + "' must be of type " + expected + "; got " + got +
                           " attribute" + hint,
                       ORT_INVALID_ARGUMENT);
}

bool output_named(const OrtApi* api, const OrtKernelInfo* info, size_t index) {
  size_t count = 0;
  OrtStatus* status = api->KernelInfo_GetOutputCount(info, &count);
  if (status != nullptr) {
    api->ReleaseStatus(status);
    return true;  // cannot tell: compute it
  }
  if (index >= count) return false;
  size_t size = 0;
  status = api->KernelInfo_GetOutputName(info, index, nullptr, &size);
  if (status != nullptr) {
    api->ReleaseStatus(status);
    return true;
  }
  return size > 1;  // the size counts the terminating NUL
}

std::string node_name(const OrtApi* api, const OrtKernelInfo* info) {
  size_t size = 0;
  OrtStatus* status = api->KernelInfo_GetNodeName(info, nullptr, &size);
  if (status != nullptr) {
    api->ReleaseStatus(status);
    return {};
  }
  std::string name(size, '\0');
  status = api->KernelInfo_GetNodeName(info, name.data(), &size);
  if (status != nullptr) {
    api->ReleaseStatus(status);
    return {};
  }
  if (!name.empty() && name.back() == '\0') name.pop_back();
  return name;
}

}  // namespace

CommonAttributes read_common_attributes(const OrtApi* api, const OrtKernelInfo* info, const char* op) {
  CommonAttributes attrs;
  attrs.node = node_name(api, info);
  const std::string at = where(op, attrs.node);
  float dt = 0.0f;
  if (!try_float(api, info, "dt", &dt)) {
    if (const char* got = other_attribute_type(api, info, "dt")) {
      wrong_type(at, "dt", "FLOAT", got, " (write the time step in seconds as a float, e.g. dt=1.0)");
    }
    throw Ort::Exception(at + ": required attribute 'dt' (FLOAT > 0, the simulation time step) is missing",
                         ORT_INVALID_ARGUMENT);
  }
  if (!std::isfinite(dt) || !(dt > 0.0f)) {
    std::ostringstream msg;
    msg << at << ": attribute 'dt' must be a finite float > 0; got " << dt;
    throw Ort::Exception(msg.str(), ORT_INVALID_ARGUMENT);
  }
  attrs.dt = dt;
  const int64_t time_major = read_int_attribute(api, info, op, "time_major", 0);
  if (time_major != 0 && time_major != 1) {
    throw Ort::Exception(at + ": attribute 'time_major' must be 0 or 1; got " + std::to_string(time_major),
                         ORT_INVALID_ARGUMENT);
  }
  attrs.time_major = time_major == 1;
  attrs.state_output = output_named(api, info, 1);
  return attrs;
}

int64_t read_int_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* op, const char* name,
                           int64_t fallback) {
  int64_t value = fallback;
  if (try_int(api, info, name, &value)) return value;
  if (const char* got = other_attribute_type(api, info, name)) {
    wrong_type(where(op, node_name(api, info)), name, "INT", got);
  }
  return fallback;
}

int64_t read_int_attribute(const OrtApi* api, const OrtKernelInfo* info, const char* name,
                           int64_t fallback) {
  int64_t value = fallback;
  if (try_int(api, info, name, &value)) return value;
  if (const char* got = other_attribute_type(api, info, name)) {
    wrong_type("node '" + node_name(api, info) + "'", name, "INT", got);
  }
  return fallback;
}

int64_t checked_count(const std::vector<int64_t>& dims) {
  for (int64_t d : dims) {
    if (d == 0) return 0;
  }
  int64_t count = 1;
  for (int64_t d : dims) {
    if (d < 0 || count > INT64_MAX / d) return -1;
    count *= d;
  }
  return count;
}

InputView get_input(const Ort::KernelContext& ctx, size_t index) {
  InputView view;
  if (index >= ctx.GetInputCount()) return view;
  Ort::ConstValue value = ctx.GetInput(index);
  if (static_cast<const OrtValue*>(value) == nullptr) return view;  // omitted optional input
  view.present = true;
  if (!value.IsTensor()) return view;  // type stays UNDEFINED and is reported by the checks
  auto info = value.GetTensorTypeAndShapeInfo();
  view.type = info.GetElementType();
  view.shape = info.GetShape();
  view.data = value.GetTensorRawData();
  return view;
}

SeqGeometry check_sequence(const char* op, const std::string& node, const char* name,
                           const InputView& input, bool time_major) {
  const char* layout = time_major ? "(T, B, *S)" : "(B, T, *S)";
  if (!input.present) {
    throw OpError(where(op, node) + ": required input '" + name + "' of shape " + layout +
                  " is missing");
  }
  if (input.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT &&
      input.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE) {
    throw OpError(where(op, node) + ": input '" + name + "' must be a float32 or float64 tensor of shape " +
                  layout + "; got " + dtype_str(input.type) + " of shape " + shape_str(input.shape));
  }
  if (input.shape.size() < 2) {
    throw OpError(where(op, node) + ": input '" + name + "' must have rank >= 2 with shape " + layout +
                  " (time_major=" + (time_major ? "1" : "0") + "); got shape " + shape_str(input.shape));
  }
  SeqGeometry g;
  g.time_major = time_major;
  g.shape = input.shape;
  g.batch = input.shape[time_major ? 1 : 0];
  g.time = input.shape[time_major ? 0 : 1];
  g.unit_shape.assign(input.shape.begin() + 2, input.shape.end());
  g.units = checked_count(g.unit_shape);
  if (g.units < 0 && g.batch != 0 && g.time != 0) {
    // Unreachable through onnxruntime, which cannot hold such a tensor; kept so that no
    // loop below ever sees a wrapped size.
    throw OpError(where(op, node) + ": input '" + name + "' of shape " + shape_str(input.shape) +
                  " has more elements than int64 can count");
  }
  return g;
}

void check_exact_shape(const char* op, const std::string& node, const char* name, const InputView& input,
                       ONNXTensorElementDataType type, const std::vector<int64_t>& target, const char* label) {
  const std::string expected = std::string(label) + " = " + shape_str(target);
  if (input.type != type) {
    throw OpError(where(op, node) + ": input '" + name + "' must be a " + dtype_str(type) +
                  " tensor (the element type of the sequence input) of shape " + expected + "; got " +
                  dtype_str(input.type) + " of shape " + shape_str(input.shape));
  }
  if (input.shape != target) {
    throw OpError(where(op, node) + ": input '" + name + "' must have exactly the shape " + expected +
                  " (no broadcasting); got shape " + shape_str(input.shape));
  }
}

void check_broadcast(const char* op, const std::string& node, const char* name,
                     const InputView& input, ONNXTensorElementDataType type,
                     const std::vector<int64_t>& target, const char* label) {
  const std::string expected = std::string(label) + " = " + shape_str(target);
  if (input.type != type) {
    throw OpError(where(op, node) + ": input '" + name + "' must be a " + dtype_str(type) +
                  " tensor (the element type of the sequence input) broadcastable to " + expected +
                  "; got " + dtype_str(input.type) + " of shape " + shape_str(input.shape));
  }
  bool ok = input.shape.size() <= target.size();
  for (size_t k = 0; ok && k < input.shape.size(); ++k) {
    const int64_t have = input.shape[input.shape.size() - 1 - k];
    const int64_t want = target[target.size() - 1 - k];
    ok = have == want || have == 1;
  }
  if (!ok) {
    throw OpError(where(op, node) + ": input '" + name + "' of shape " + shape_str(input.shape) +
                  " is not broadcastable to the expected shape " + expected);
  }
}

SeqGeometry check_filter_inputs(const char* op, const std::string& node, bool time_major, const InputView& x,
                                const InputView& tau, const InputView& initial_level) {
  const SeqGeometry g = check_sequence(op, node, "x", x, time_major);
  if (!tau.present) {
    throw OpError(where(op, node) + ": required input 'tau' (broadcastable to (1, *S) = " +
                  shape_str(g.unit_param_shape()) + ") is missing");
  }
  check_broadcast(op, node, "tau", tau, x.type, g.unit_param_shape(), "(1, *S)");
  check_not_nan(op, node, "tau", tau, g.unit_param_shape(), "(1, *S)");
  if (initial_level.present) {
    check_broadcast(op, node, "initial_level", initial_level, x.type, g.state_shape(), "(B, *S)");
  }
  return g;
}

void check_not_nan(const char* op, const std::string& node, const char* name, const InputView& input,
                   const std::vector<int64_t>& target, const char* label) {
  int64_t count = 1;
  for (int64_t d : input.shape) count *= d;
  bool nan = false;
  if (input.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    const float* p = static_cast<const float*>(input.data);
    for (int64_t i = 0; i < count && !nan; ++i) nan = std::isnan(p[i]);
  } else if (input.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE) {
    const double* p = static_cast<const double*>(input.data);
    for (int64_t i = 0; i < count && !nan; ++i) nan = std::isnan(p[i]);
  }
  if (nan) {
    throw OpError(where(op, node) + ": input '" + name + "' (shape " + shape_str(input.shape) +
                  ", broadcastable to " + label + " = " + shape_str(target) + ") contains NaN");
  }
}

void* allocate_output(const Ort::KernelContext& ctx, size_t index, const std::vector<int64_t>& shape,
                      bool required, size_t element_size, const OutputOrigin& origin) {
  const std::string context = where(origin.op, origin.node) + ": output '" + origin.output + "' of shape " +
                              shape_str(shape) + " (from input '" + origin.input + "' of shape " +
                              shape_str(origin.input_shape) + ")";
  const int64_t count = checked_count(shape);
  if (count < 0 || count > INT64_MAX / static_cast<int64_t>(element_size)) {
    throw OpError(context + " is too large: its size in bytes does not fit in int64");
  }
  try {
    return get_output(ctx, index, shape, required);
  } catch (const std::exception& e) {
    std::ostringstream msg;
    msg << context << " cannot be allocated (" << count * static_cast<int64_t>(element_size)
        << " bytes): " << e.what();
    throw OpError(msg.str());
  }
}

void* get_output(const Ort::KernelContext& ctx, size_t index, const std::vector<int64_t>& shape,
                 bool required) {
  if (index >= ctx.GetOutputCount()) {
    if (required) throw OpError("output " + std::to_string(index) + " is missing");
    return nullptr;
  }
  Ort::UnownedValue value = ctx.GetOutput(index, shape);
  OrtValue* raw = value;
  if (raw == nullptr) return nullptr;  // unnamed optional output
  return value.GetTensorMutableRawData();
}

}  // namespace spikeonnx
