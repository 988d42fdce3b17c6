// One mean-field step of the windowed dense CRF (ConvCRF-style): messages only from the
// (2r+1) x (2r+1) neighbourhood, with exact Gaussian kernels.
//
// Math, for pixel p and each neighbour q = p + (dx, dy) inside the image and the window (self included):
//   k_g(p,q) = exp(-((dx/sgx)^2 + (dy/sgy)^2) / 2)
//   k_b(p,q) = exp(-((dx/sbx)^2 + (dy/sby)^2 + sum_c ((I_pc - I_qc)/s_c)^2) / 2)
//   n_k(p)   = 1 / sqrt(sum_q k_k(p,q))                       (symmetric normalisation)
//   m_k(p,l) = n_k(p) sum_q k_k(p,q) n_k(q) Q(q,l)
//   Q'(p,l)  = softmax_l( -U(p,l) + sum_l' Gg[l][l'] m_g(p,l') + Gb[l][l'] m_b(p,l') )
// G = w * I for a Potts model. This is exactly edgeseg.ops.dense_crf_windowed's NumPy iteration.
//
// Memory layout: q, unary, out: (C, H, W) float32 planar; image: (H, W, K) uint8 interleaved;
// norms: (2, H, W) float32 (gaussian, bilateral); gg, gb: (C, C) float32 row-major;
// widths: 4 + K float32 = 1/sgx, 1/sgy, 1/sbx, 1/sby, 1/s_0 .. 1/s_{K-1}.
#pragma once

#include "edgeseg_cuda.cuh"

#if !defined(__CUDACC__)
#include <cmath>
#endif

#define CRF_WINDOW_MAX_CLASSES 32
#define CRF_WINDOW_MAX_CHANNELS 4

EDGESEG_HD void crf_window_kernels(const unsigned char* image, int p, int q, int dx, int dy, int channels,
                                   const float* widths, float* k_gauss, float* k_bilat) {
    float gx = dx * widths[0], gy = dy * widths[1];
    *k_gauss = expf(-0.5f * (gx * gx + gy * gy));
    float bx = dx * widths[2], by = dy * widths[3];
    float e = bx * bx + by * by;
    for (int c = 0; c < channels; ++c) {
        float t = ((float)image[p * channels + c] - (float)image[q * channels + c]) * widths[4 + c];
        e += t * t;
    }
    *k_bilat = expf(-0.5f * e);
}

// norms[0][p] and norms[1][p] for pixel p = y * width + x.
EDGESEG_HD void crf_window_norm_at(int x, int y, const unsigned char* image, float* norms, int height, int width,
                                   int channels, int radius, const float* widths) {
    const int p = y * width + x;
    float sum_g = 0.f, sum_b = 0.f;
    for (int dy = -radius; dy <= radius; ++dy) {
        const int yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (int dx = -radius; dx <= radius; ++dx) {
            const int xx = x + dx;
            if (xx < 0 || xx >= width) continue;
            float kg, kb;
            crf_window_kernels(image, p, yy * width + xx, dx, dy, channels, widths, &kg, &kb);
            sum_g += kg;
            sum_b += kb;
        }
    }
    norms[p] = 1.f / sqrtf(sum_g);
    norms[height * width + p] = 1.f / sqrtf(sum_b);
}

// One mean-field step at pixel p = y * width + x: reads q (all pixels in the window), writes out[:, p].
EDGESEG_HD void crf_window_step_at(int x, int y, const float* q, const float* unary, const unsigned char* image,
                                   const float* norms, const float* gg, const float* gb, float* out, int height,
                                   int width, int channels, int classes, int radius, const float* widths) {
    const int hw = height * width;
    const int p = y * width + x;
    float msg_g[CRF_WINDOW_MAX_CLASSES], msg_b[CRF_WINDOW_MAX_CLASSES];
    for (int l = 0; l < classes; ++l) msg_g[l] = msg_b[l] = 0.f;
    for (int dy = -radius; dy <= radius; ++dy) {
        const int yy = y + dy;
        if (yy < 0 || yy >= height) continue;
        for (int dx = -radius; dx <= radius; ++dx) {
            const int xx = x + dx;
            if (xx < 0 || xx >= width) continue;
            const int n = yy * width + xx;
            float kg, kb;
            crf_window_kernels(image, p, n, dx, dy, channels, widths, &kg, &kb);
            const float wg = kg * norms[n], wb = kb * norms[hw + n];
            for (int l = 0; l < classes; ++l) {
                const float v = q[l * hw + n];
                msg_g[l] += wg * v;
                msg_b[l] += wb * v;
            }
        }
    }
    const float ng = norms[p], nb = norms[hw + p];
    float logits[CRF_WINDOW_MAX_CLASSES];
    float top = -3.402823466e38f;
    for (int l = 0; l < classes; ++l) {
        float s = -unary[l * hw + p];
        for (int m = 0; m < classes; ++m) s += gg[l * classes + m] * (ng * msg_g[m]) + gb[l * classes + m] * (nb * msg_b[m]);
        logits[l] = s;
        top = s > top ? s : top;
    }
    float total = 0.f;
    for (int l = 0; l < classes; ++l) {
        logits[l] = expf(logits[l] - top);
        total += logits[l];
    }
    for (int l = 0; l < classes; ++l) out[l * hw + p] = logits[l] / total;
}
