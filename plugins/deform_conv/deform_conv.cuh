// Modulated deformable convolution (DCNv2), torchvision semantics.
//
// Math: out[n, co, y, x] = bias[co] + sum_{c in group(co), i < KH, j < KW}
//         weight[co, c - c0, i, j] * mask[n, m(c,i,j), y, x] * bilinear(in[n, c], py, px)
//   py = y*SH - PH + i*DH + offset[n, og*2K + 2(i*KW+j),     y, x]
//   px = x*SW - PW + j*DW + offset[n, og*2K + 2(i*KW+j) + 1, y, x]
// with K = KH*KW and og = c / (C / OG) the offset group of input channel c. Bilinear sampling reads
// zeros outside the image (a sample at py <= -1 or py >= H is 0; corners outside are 0).
//
// Layout: all tensors contiguous NCHW; offset (N, OG*2*K, HO, WO); mask (N, OG*K, HO, WO) or null
// (all ones); weight (CO, C/G, KH, KW); bias (CO) or null. Arithmetic is FP32 for every storage type
// (float, __half), so FP16 differs from FP32 only by rounding of loads and the final store.
//
// Two bodies share the sampling code:
//  * dcn_im2col_one: fills the column matrix cols[(c*KH+i)*KW+j, (n*HO+y)*WO+x] for one (c, n, y, x);
//    a GEMM with weight viewed as (G, CO/G, C/G*K) then gives the output (the fast route).
//  * dcn_direct_one: one output element, loops over its receptive field (no scratch memory).
#pragma once
#include "edgeseg_cuda.cuh"

#if !defined(__CUDACC__)  // NVRTC (CuPy) has no C headers; its device math is built in
#include <cmath>
#endif

namespace edgeseg_dcn {

using edgeseg::load;
using edgeseg::store;

struct Shape {
    int N, C, H, W;        // input
    int CO, HO, WO;        // output
    int KH, KW;            // kernel
    int SH, SW, PH, PW, DH, DW;
    int G, OG;             // groups, offset groups
};

// Bilinear sample of one H x W plane at (y, x); zero outside (torchvision's deform_conv2d rule).
template <typename T>
EDGESEG_HD float bilinear(const T* plane, int H, int W, float y, float x) {
    if (y <= -1.0f || y >= (float)H || x <= -1.0f || x >= (float)W) return 0.0f;
    const int y0 = (int)floorf(y), x0 = (int)floorf(x);
    const int y1 = y0 + 1, x1 = x0 + 1;
    const float ly = y - (float)y0, lx = x - (float)x0, hy = 1.0f - ly, hx = 1.0f - lx;
    const float v00 = (y0 >= 0 && x0 >= 0) ? load(plane, (long)y0 * W + x0) : 0.0f;
    const float v01 = (y0 >= 0 && x1 <= W - 1) ? load(plane, (long)y0 * W + x1) : 0.0f;
    const float v10 = (y1 <= H - 1 && x0 >= 0) ? load(plane, (long)y1 * W + x0) : 0.0f;
    const float v11 = (y1 <= H - 1 && x1 <= W - 1) ? load(plane, (long)y1 * W + x1) : 0.0f;
    return hy * hx * v00 + hy * lx * v01 + ly * hx * v10 + ly * lx * v11;
}

// mask * bilinear sample for input channel c, kernel tap (i, j), output pixel (n, y, x).
template <typename T>
EDGESEG_HD float sample(const T* in, const T* offset, const T* mask, const Shape& s,
                        int n, int c, int i, int j, int y, int x) {
    const int K = s.KH * s.KW, k = i * s.KW + j;
    const int og = c / (s.C / s.OG);
    const long plane = (long)s.HO * s.WO, pix = (long)y * s.WO + x;
    const long off_base = ((long)n * s.OG * 2 * K + (long)og * 2 * K + 2 * k) * plane + pix;
    const float dy = load(offset, off_base);
    const float dx = load(offset, off_base + plane);
    const float m = mask ? load(mask, ((long)n * s.OG * K + (long)og * K + k) * plane + pix) : 1.0f;
    const float py = (float)(y * s.SH - s.PH + i * s.DH) + dy;
    const float px = (float)(x * s.SW - s.PW + j * s.DW) + dx;
    const T* src = in + ((long)n * s.C + c) * s.H * s.W;
    return m * bilinear(src, s.H, s.W, py, px);
}

// idx in [0, C*N*HO*WO): writes the K column entries of input channel c at output pixel (n, y, x).
template <typename T>
EDGESEG_HD void im2col_one(const T* in, const T* offset, const T* mask, T* cols, const Shape& s, long idx) {
    const int x = idx % s.WO;
    const int y = (idx / s.WO) % s.HO;
    const int n = (idx / ((long)s.WO * s.HO)) % s.N;
    const int c = idx / ((long)s.WO * s.HO * s.N);
    const long ncols = (long)s.N * s.HO * s.WO;
    const long col = ((long)n * s.HO + y) * s.WO + x;
    for (int i = 0; i < s.KH; ++i)
        for (int j = 0; j < s.KW; ++j) {
            const long row = ((long)c * s.KH + i) * s.KW + j;
            store(cols, row * ncols + col, sample(in, offset, mask, s, n, c, i, j, y, x));
        }
}

// idx in [0, N*CO*HO*WO): one output element, summing its whole receptive field.
template <typename T>
EDGESEG_HD void direct_one(const T* in, const T* offset, const T* mask, const T* weight, const T* bias,
                           T* out, const Shape& s, long idx) {
    const int x = idx % s.WO;
    const int y = (idx / s.WO) % s.HO;
    const int co = (idx / ((long)s.WO * s.HO)) % s.CO;
    const int n = idx / ((long)s.WO * s.HO * s.CO);
    const int cin_g = s.C / s.G, cout_g = s.CO / s.G;
    const int c0 = (co / cout_g) * cin_g;
    float acc = bias ? load(bias, co) : 0.0f;
    for (int cl = 0; cl < cin_g; ++cl)
        for (int i = 0; i < s.KH; ++i)
            for (int j = 0; j < s.KW; ++j) {
                const float w = load(weight, (((long)co * cin_g + cl) * s.KH + i) * s.KW + j);
                acc += w * sample(in, offset, mask, s, n, c0 + cl, i, j, y, x);
            }
    store(out, idx, acc);
}

}  // namespace edgeseg_dcn
