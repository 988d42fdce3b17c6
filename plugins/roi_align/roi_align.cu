// Thin CUDA wrappers around roi_align.cuh (one thread per pooled element, grid-stride loop).
// Loaded by CuPy RawModule (edgeseg.plugins.roi_align) and compiled to PTX for TensorRT's AOT plugin.
#include "roi_align.cuh"

#define EDGESEG_ROI_KERNEL(SUFFIX, T)                                                             \
    extern "C" __global__ void roi_align_##SUFFIX(const T* in, const T* rois, T* out, int N, int C, \
                                                  int H, int W, int R, int PH, int PW, float scale, \
                                                  int sampling, int aligned) {                    \
        const edgeseg_roi::Params p = {N, C, H, W, R, PH, PW, scale, sampling, aligned};          \
        const long total = (long)R * C * PH * PW;                                                 \
        for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total;                 \
             idx += (long)gridDim.x * blockDim.x)                                                 \
            edgeseg_roi::roi_align_one(in, rois, out, p, idx);                                   \
    }

EDGESEG_ROI_KERNEL(f32, float)
EDGESEG_ROI_KERNEL(f16, __half)

// TensorRT AOT plugin entry (edgeseg::RoIAlign): TensorRT passes input pointers, then the scalar
// arguments (int32 only: the float spatial_scale travels as its bit pattern), then output pointers.
#define EDGESEG_ROI_AOT_KERNEL(SUFFIX, T)                                                        \
    extern "C" __global__ void roi_align_aot_##SUFFIX(const T* in, const T* rois, int N, int C, int H, \
                                                      int W, int R, int PH, int PW, int scale_bits, \
                                                      int sampling, int aligned, T* out) {         \
        const edgeseg_roi::Params p = {N, C, H, W, R, PH, PW, __int_as_float(scale_bits), sampling,  \
                                       aligned};                                                  \
        const long total = (long)R * C * PH * PW;                                                 \
        for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < total;                 \
             idx += (long)gridDim.x * blockDim.x)                                                 \
            edgeseg_roi::roi_align_one(in, rois, out, p, idx);                                   \
    }

EDGESEG_ROI_AOT_KERNEL(f32, float)
EDGESEG_ROI_AOT_KERNEL(f16, __half)
