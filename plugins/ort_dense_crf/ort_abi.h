// The few parts of the ONNX Runtime C ABI this custom-op library uses, declared here (the onnxruntime wheel
// ships no headers). The ABI is stable: OrtApi is an append-only table of function pointers, so a slot's index
// never changes; OrtCustomOp's `version` tells ONNX Runtime which trailing fields it may read.
// Slot indices are those of onnxruntime_c_api.h's `struct OrtApi` (all from API version 1, the frozen first
// block); OrtCustomOp's field order is that header's (1 uint32 + 25 function pointers as of API 18+).
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {
struct OrtStatus;
struct OrtSessionOptions;
struct OrtCustomOpDomain;
struct OrtKernelInfo;
struct OrtKernelContext;
struct OrtValue;
struct OrtTensorTypeAndShapeInfo;
struct OrtApi;  // opaque here: used through ort_abi::slot()

struct OrtApiBase {
    const OrtApi* (*GetApi)(uint32_t version);
    const char* (*GetVersionString)();
};

enum OrtErrorCode { ORT_OK = 0, ORT_FAIL = 1, ORT_INVALID_ARGUMENT = 2 };
enum { ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1 };
enum { INPUT_OUTPUT_REQUIRED = 0 };
enum { OrtMemTypeDefault = 0 };

struct OrtCustomOp {
    uint32_t version;
    void* (*CreateKernel)(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*);
    const char* (*GetName)(const OrtCustomOp*);
    const char* (*GetExecutionProviderType)(const OrtCustomOp*);
    int (*GetInputType)(const OrtCustomOp*, size_t);
    size_t (*GetInputTypeCount)(const OrtCustomOp*);
    int (*GetOutputType)(const OrtCustomOp*, size_t);
    size_t (*GetOutputTypeCount)(const OrtCustomOp*);
    void (*KernelCompute)(void*, OrtKernelContext*);
    void (*KernelDestroy)(void*);
    int (*GetInputCharacteristic)(const OrtCustomOp*, size_t);   // version >= 8
    int (*GetOutputCharacteristic)(const OrtCustomOp*, size_t);  // version >= 8
    int (*GetInputMemoryType)(const OrtCustomOp*, size_t);       // version >= 13
    int (*GetVariadicInputMinArity)(const OrtCustomOp*);         // version >= 14 (four fields)
    int (*GetVariadicInputHomogeneity)(const OrtCustomOp*);
    int (*GetVariadicOutputMinArity)(const OrtCustomOp*);
    int (*GetVariadicOutputHomogeneity)(const OrtCustomOp*);
    OrtStatus* (*CreateKernelV2)(const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*, void**);  // version >= 16
    OrtStatus* (*KernelComputeV2)(void*, OrtKernelContext*);                                       // version >= 16
    void* InferOutputShapeFn;  // left null: ONNX Runtime then takes the output shape from the graph
    void* GetStartVersion;
    void* GetEndVersion;
    void* GetMayInplace;
    void* ReleaseMayInplace;
    void* GetAliasMap;
    void* ReleaseAliasMap;
};
}

namespace ort_abi {

// The API version requested from GetApi and written into OrtCustomOp::version: 16 is the first with
// CreateKernelV2/KernelComputeV2 (errors as OrtStatus); fields after KernelComputeV2 stay unread.
constexpr uint32_t kApiVersion = 16;

enum Slot : size_t {
    CreateStatus = 0,
    GetErrorMessage = 2,
    CreateCustomOpDomain = 26,
    CustomOpDomain_Add = 27,
    AddCustomOpDomain = 28,
    GetTensorMutableData = 51,
    GetTensorElementType = 60,
    GetDimensionsCount = 61,
    GetDimensions = 62,
    GetTensorTypeAndShape = 65,
    KernelInfoGetAttribute_string = 87,
    KernelContext_GetInputCount = 88,
    KernelContext_GetInput = 90,
    KernelContext_GetOutput = 91,
    ReleaseStatus = 93,
    ReleaseTensorTypeAndShapeInfo = 99,
};

template <typename Fn>
inline Fn slot(const OrtApi* api, Slot index) {
    return reinterpret_cast<Fn>(reinterpret_cast<void* const*>(api)[index]);
}

}  // namespace ort_abi
