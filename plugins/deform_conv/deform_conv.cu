// Thin CUDA wrappers around deform_conv.cuh (one thread per element, grid-stride loop).
// Loaded by CuPy RawModule (edgeseg.plugins.deform_conv) and compiled to PTX for TensorRT's AOT plugin.
#include "deform_conv.cuh"

#define EDGESEG_DCN_SHAPE_ARGS                                                                   \
    int N, int C, int H, int W, int CO, int HO, int WO, int KH, int KW, int SH, int SW, int PH,   \
        int PW, int DH, int DW, int G, int OG
#define EDGESEG_DCN_SHAPE {N, C, H, W, CO, HO, WO, KH, KW, SH, SW, PH, PW, DH, DW, G, OG}

#define EDGESEG_DCN_KERNELS(SUFFIX, T)                                                           \
    extern "C" __global__ void deform_im2col_##SUFFIX(const T* in, const T* offset, const T* mask, \
                                                      T* cols, EDGESEG_DCN_SHAPE_ARGS) {          \
        const edgeseg_dcn::Shape s = EDGESEG_DCN_SHAPE;                                            \
        const long total = (long)C * N * HO * WO;                                                 \
        for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total;                 \
             idx += (long)gridDim.x * blockDim.x)                                                 \
            edgeseg_dcn::im2col_one(in, offset, mask, cols, s, idx);                             \
    }                                                                                             \
    extern "C" __global__ void deform_conv_direct_##SUFFIX(                                      \
        const T* in, const T* offset, const T* mask, const T* weight, const T* bias, T* out,      \
        EDGESEG_DCN_SHAPE_ARGS) {                                                                 \
        const edgeseg_dcn::Shape s = EDGESEG_DCN_SHAPE;                                            \
        const long total = (long)N * CO * HO * WO;                                                \
        for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total;                 \
             idx += (long)gridDim.x * blockDim.x)                                                 \
            edgeseg_dcn::direct_one(in, offset, mask, weight, bias, out, s, idx);                \
    }

EDGESEG_DCN_KERNELS(f32, float)
EDGESEG_DCN_KERNELS(f16, __half)

// TensorRT AOT plugin entry (edgeseg::DeformConv2d, direct route): TensorRT passes input pointers,
// then the int32 scalar arguments, then output pointers.
#define EDGESEG_DCN_AOT_KERNEL(SUFFIX, T)                                                        \
    extern "C" __global__ void deform_conv_aot_##SUFFIX(                                         \
        const T* in, const T* offset, const T* mask, const T* weight, const T* bias,              \
        EDGESEG_DCN_SHAPE_ARGS, T* out) {                                                         \
        const edgeseg_dcn::Shape s = EDGESEG_DCN_SHAPE;                                            \
        const long total = (long)N * CO * HO * WO;                                                \
        for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total;                 \
             idx += (long)gridDim.x * blockDim.x)                                                 \
            edgeseg_dcn::direct_one(in, offset, mask, weight, bias, out, s, idx);                \
    }

EDGESEG_DCN_AOT_KERNEL(f32, float)
EDGESEG_DCN_AOT_KERNEL(f16, __half)
