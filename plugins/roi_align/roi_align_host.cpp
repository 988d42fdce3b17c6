// Host build of the roi_align.cuh body (g++), for CI checks against the NumPy reference via ctypes.
#include "roi_align.cuh"

extern "C" void roi_align_f32(const float* in, const float* rois, float* out, int N, int C, int H, int W,
                              int R, int PH, int PW, float scale, int sampling, int aligned) {
    const edgeseg_roi::Params p = {N, C, H, W, R, PH, PW, scale, sampling, aligned};
    const long total = (long)R * C * PH * PW;
    for (long idx = 0; idx < total; ++idx) edgeseg_roi::roi_align_one(in, rois, out, p, idx);
}
