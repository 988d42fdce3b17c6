// Thin CUDA wrappers around crf_window.cuh: one thread per pixel. Loaded by CuPy RawModule
// (plugins/dense_crf/__init__.py); compiled to PTX for sm_87 / sm_90 in CI.
#include "crf_window.cuh"

extern "C" __global__ void crf_window_norms(const unsigned char* image, float* norms, int height, int width,
                                            int channels, int radius, const float* widths) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= height * width) return;
    crf_window_norm_at(p % width, p / width, image, norms, height, width, channels, radius, widths);
}

extern "C" __global__ void crf_window_step(const float* q, const float* unary, const unsigned char* image,
                                           const float* norms, const float* gg, const float* gb, float* out,
                                           int height, int width, int channels, int classes, int radius,
                                           const float* widths) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= height * width) return;
    crf_window_step_at(p % width, p / width, q, unary, image, norms, gg, gb, out, height, width, channels, classes,
                       radius, widths);
}
