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
