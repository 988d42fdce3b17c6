// RoIAlign (Mask R-CNN), average pooling, torchvision semantics (also ONNX RoiAlign mode="avg").
//
// Math, for RoI r = (b, x1, y1, x2, y2) in input coordinates, output bin (py, px) of (PH, PW):
//   off = aligned ? 0.5 : 0;  sx = x1*scale - off;  sy = y1*scale - off
//   rw = x2*scale - off - sx;  rh = y2*scale - off - sy;  if !aligned: rw = max(rw, 1), rh = max(rh, 1)
//   gh = sampling > 0 ? sampling : ceil(rh / PH)   (adaptive grid), gw likewise
//   out[r, c, py, px] = mean over iy < gh, ix < gw of bilinear(in[b, c],
//                          sy + py*rh/PH + (iy + 0.5)*rh/PH/gh,  sx + px*rw/PW + (ix + 0.5)*rw/PW/gw)
// Bilinear: a sample with y < -1 or y > H (x likewise) is 0; otherwise coordinates clamp to [0, H-1].
// aligned=True is the half-pixel convention (ONNX coordinate_transformation_mode="half_pixel").
//
// Layout: input (N, C, H, W) contiguous; rois (R, 5) rows [batch_index, x1, y1, x2, y2] in the input's
// storage type; output (R, C, PH, PW). Arithmetic in FP32 for float and __half storage.
#pragma once
#include "edgeseg_cuda.cuh"

#if !defined(__CUDACC__)  // NVRTC (CuPy) has no C headers; its device math is built in
#include <cmath>
#endif

namespace edgeseg_roi {

using edgeseg::load;
using edgeseg::store;

struct Params {
    int N, C, H, W;    // input
    int R, PH, PW;     // rois, pooled size
    float scale;       // spatial_scale
    int sampling;      // sampling_ratio (<= 0: adaptive)
    int aligned;       // 1: half-pixel offset
};

template <typename T>
EDGESEG_HD float bilinear(const T* plane, int H, int W, float y, float x) {
    if (y < -1.0f || y > (float)H || x < -1.0f || x > (float)W) return 0.0f;
    if (y <= 0.0f) y = 0.0f;
    if (x <= 0.0f) x = 0.0f;
    int y0 = (int)y, x0 = (int)x, y1, x1;
    if (y0 >= H - 1) { y1 = y0 = H - 1; y = (float)y0; } else { y1 = y0 + 1; }
    if (x0 >= W - 1) { x1 = x0 = W - 1; x = (float)x0; } else { x1 = x0 + 1; }
    const float ly = y - (float)y0, lx = x - (float)x0, hy = 1.0f - ly, hx = 1.0f - lx;
    return hy * hx * load(plane, (long)y0 * W + x0) + hy * lx * load(plane, (long)y0 * W + x1) +
           ly * hx * load(plane, (long)y1 * W + x0) + ly * lx * load(plane, (long)y1 * W + x1);
}

// idx in [0, R*C*PH*PW): one pooled output element.
template <typename T>
EDGESEG_HD void roi_align_one(const T* in, const T* rois, T* out, const Params& p, long idx) {
    const int px = idx % p.PW;
    const int py = (idx / p.PW) % p.PH;
    const int c = (idx / ((long)p.PW * p.PH)) % p.C;
    const int r = idx / ((long)p.PW * p.PH * p.C);
    const T* roi = rois + (long)r * 5;
    const int b = (int)load(roi, 0);
    if (b < 0 || b >= p.N) { store(out, idx, 0.0f); return; }
    const float off = p.aligned ? 0.5f : 0.0f;
    const float sx = load(roi, 1) * p.scale - off, sy = load(roi, 2) * p.scale - off;
    float rw = load(roi, 3) * p.scale - off - sx, rh = load(roi, 4) * p.scale - off - sy;
    if (!p.aligned) { rw = fmaxf(rw, 1.0f); rh = fmaxf(rh, 1.0f); }
    const float bh = rh / p.PH, bw = rw / p.PW;
    const int gh = p.sampling > 0 ? p.sampling : (int)ceilf(rh / p.PH);
    const int gw = p.sampling > 0 ? p.sampling : (int)ceilf(rw / p.PW);
    const int count = gh * gw > 1 ? gh * gw : 1;
    const T* plane = in + ((long)b * p.C + c) * p.H * p.W;
    float acc = 0.0f;
    for (int iy = 0; iy < gh; ++iy) {
        const float y = sy + py * bh + (iy + 0.5f) * bh / gh;
        for (int ix = 0; ix < gw; ++ix) {
            const float x = sx + px * bw + (ix + 0.5f) * bw / gw;
            acc += bilinear(plane, p.H, p.W, y, x);
        }
    }
    store(out, idx, acc / count);
}

}  // namespace edgeseg_roi
