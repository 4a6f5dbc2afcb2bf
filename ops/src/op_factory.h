// Builds an onnxruntime custom-op descriptor from a lite-API kernel struct whose inputs and
// outputs are typed at run time (float32 or float64, checked by the kernel itself so that a
// wrong dtype gets a message naming the op, the input and the expected shape).
#pragma once

#include <onnxruntime_lite_custom_op.h>

#include <cstdint>
#include <vector>

namespace spikeonnx {

// Kernel must provide kInputs/kRequiredInputs/kOutputs/kRequiredOutputs, a constructor
// (const OrtApi*, const OrtKernelInfo*) and `Ort::Status Compute(OrtKernelContext*)`.
template <typename Kernel>
struct DynamicTypedOp : Ort::Custom::OrtLiteCustomStruct<Kernel> {
  explicit DynamicTypedOp(const char* name)
      : Ort::Custom::OrtLiteCustomStruct<Kernel>(name, "CPUExecutionProvider") {
    // UNDEFINED = any tensor type; onnxruntime gives the outputs the element type of the
    // inputs.  The lite API would call such slots variadic, so the characteristics are set
    // here explicitly: leading inputs/outputs required, the rest optional.
    this->input_types_.assign(Kernel::kInputs, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED);
    this->output_types_.assign(Kernel::kOutputs, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED);
    OrtCustomOp::GetInputCharacteristic = [](const OrtCustomOp*, size_t index) {
      return index < Kernel::kRequiredInputs ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
    };
    OrtCustomOp::GetOutputCharacteristic = [](const OrtCustomOp*, size_t index) {
      return index < Kernel::kRequiredOutputs ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
    };
    OrtCustomOp::InferOutputShapeFn = &infer;
  }

  // Type and shape inference: onnxruntime needs the element type of outputs whose type is
  // only known at run time.  The sequence output copies input 0; the state output is
  // (B, *S), or (B, 2, *S) for the alpha filter.  Problems are left to the kernel, which
  // reports them with a proper message when the model runs.
  static OrtStatusPtr infer(const OrtCustomOp*, OrtShapeInferContext* ctx) {
    const OrtApi& api = Ort::GetApi();
    auto ok = [&api](OrtStatus* status) {
      if (status == nullptr) return true;
      api.ReleaseStatus(status);
      return false;
    };
    // Owned by the context; not released here.
    OrtTensorTypeAndShapeInfo* in = nullptr;
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t rank = 0;
    if (!ok(api.ShapeInferContext_GetInputTypeShape(ctx, 0, &in)) || !ok(api.GetTensorElementType(in, &type)) ||
        !ok(api.GetDimensionsCount(in, &rank))) {
      return nullptr;
    }
    std::vector<int64_t> dims(rank);
    std::vector<const char*> symbols(rank, nullptr);
    if (!ok(api.GetDimensions(in, dims.data(), rank)) ||
        !ok(api.GetSymbolicDimensions(in, symbols.data(), rank))) {
      return nullptr;
    }
    int64_t time_major = 0;
    const OrtOpAttr* attr = nullptr;
    size_t read = 0;
    if (ok(api.ShapeInferContext_GetAttribute(ctx, "time_major", &attr))) {
      if (!ok(api.ReadOpAttr(attr, ORT_OP_ATTR_INT, &time_major, sizeof(time_major), &read))) time_major = 0;
    }
    // An input without a shape shows up with rank 0; a rank below 2 is an error the kernel
    // reports at run time.  Either way no shape can be stated.
    // Saying nothing leaves the type to onnxruntime's own inference (the inputs' type).
    if (rank < 2) return nullptr;
    // A dimension that is neither a number nor named cannot be passed on: onnxruntime would
    // turn it into a fixed -1.  Outputs that need such a dimension get no shape.
    std::vector<bool> dim_known(rank);
    for (size_t k = 0; k < rank; ++k) dim_known[k] = dims[k] >= 0 || (symbols[k] != nullptr && *symbols[k] != '\0');
    bool units_known = true;
    for (size_t k = 2; k < rank; ++k) units_known = units_known && dim_known[k];
    if (units_known && dim_known[0] && dim_known[1]) set_output(api, ctx, 0, type, dims, symbols);
    const size_t b_axis = time_major == 1 ? 1 : 0;
    if (Kernel::kOutputs > 1 && units_known && dim_known[b_axis]) {
      std::vector<int64_t> state_dims{dims[b_axis]};
      std::vector<const char*> state_symbols{symbols[b_axis]};
      if (Kernel::kStateStack > 0) {
        state_dims.push_back(Kernel::kStateStack);
        state_symbols.push_back("");
      }
      state_dims.insert(state_dims.end(), dims.begin() + 2, dims.end());
      state_symbols.insert(state_symbols.end(), symbols.begin() + 2, symbols.end());
      set_output(api, ctx, 1, type, state_dims, state_symbols);  // no-op if the node lacks it
    }
    return nullptr;
  }

 private:
  static void set_output(const OrtApi& api, OrtShapeInferContext* ctx, size_t index,
                         ONNXTensorElementDataType type, const std::vector<int64_t>& dims,
                         std::vector<const char*> symbols) {
    OrtTensorTypeAndShapeInfo* info = nullptr;
    if (OrtStatus* status = api.CreateTensorTypeAndShapeInfo(&info)) {
      api.ReleaseStatus(status);
      return;
    }
    for (auto& symbol : symbols) {
      if (symbol == nullptr) symbol = "";
    }
    OrtStatus* status = api.SetTensorElementType(info, type);
    if (status == nullptr) status = api.SetDimensions(info, dims.data(), dims.size());
    if (status == nullptr) status = api.SetSymbolicDimensions(info, symbols.data(), symbols.size());
    if (status == nullptr) status = api.ShapeInferContext_SetOutputTypeShape(ctx, index, info);
    if (status != nullptr) api.ReleaseStatus(status);
    api.ReleaseTensorTypeAndShapeInfo(info);
  }
};

// Descriptors of the three ops; each lives for the whole process (onnxruntime keeps
// pointers to them in every session that uses the domain) and is never modified after
// construction.
const OrtCustomOp* spiking_activation_op();
const OrtCustomOp* lowpass_op();
const OrtCustomOp* alpha_op();

}  // namespace spikeonnx
