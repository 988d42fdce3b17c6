// Host build of the deform_conv.cuh bodies (g++), for CI checks against the NumPy reference via ctypes.
#include "deform_conv.cuh"

#define EDGESEG_DCN_SHAPE_ARGS                                                                   \
    int N, int C, int H, int W, int CO, int HO, int WO, int KH, int KW, int SH, int SW, int PH,   \
        int PW, int DH, int DW, int G, int OG
#define EDGESEG_DCN_SHAPE {N, C, H, W, CO, HO, WO, KH, KW, SH, SW, PH, PW, DH, DW, G, OG}

extern "C" void deform_im2col_f32(const float* in, const float* offset, const float* mask, float* cols,
                                  EDGESEG_DCN_SHAPE_ARGS) {
    const edgeseg_dcn::Shape s = EDGESEG_DCN_SHAPE;
    const long total = (long)C * N * HO * WO;
    for (long idx = 0; idx < total; ++idx) edgeseg_dcn::im2col_one(in, offset, mask, cols, s, idx);
}

extern "C" void deform_conv_direct_f32(const float* in, const float* offset, const float* mask,
                                       const float* weight, const float* bias, float* out,
                                       EDGESEG_DCN_SHAPE_ARGS) {
    const edgeseg_dcn::Shape s = EDGESEG_DCN_SHAPE;
    const long total = (long)N * CO * HO * WO;
    for (long idx = 0; idx < total; ++idx) edgeseg_dcn::direct_one(in, offset, mask, weight, bias, out, s, idx);
}
