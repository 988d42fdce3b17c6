// The bodies of crf_window.cuh in plain loops, compiled with g++ into a shared library: CI checks them
// against the NumPy windowed CRF through ctypes, and it is a fast CPU path for the windowed CRF.
#include <cstring>
#include <vector>

#include "crf_window.cuh"

extern "C" void crf_window_norms_host(const unsigned char* image, float* norms, int height, int width, int channels,
                                      int radius, const float* widths) {
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            crf_window_norm_at(x, y, image, norms, height, width, channels, radius, widths);
}

extern "C" void crf_window_step_host(const float* q, const float* unary, const unsigned char* image,
                                     const float* norms, const float* gg, const float* gb, float* out, int height,
                                     int width, int channels, int classes, int radius, const float* widths) {
    for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x)
            crf_window_step_at(x, y, q, unary, image, norms, gg, gb, out, height, width, channels, classes, radius,
                               widths);
}

// Full inference: q0 = softmax(-unary), then `iterations` steps. q_out (C, H, W) receives the result.
extern "C" void crf_window_inference_host(const float* unary, const unsigned char* image, const float* gg,
                                          const float* gb, float* q_out, int height, int width, int channels,
                                          int classes, int radius, const float* widths, int iterations) {
    const size_t hw = (size_t)height * width;
    std::vector<float> norms(2 * hw), a(classes * hw), b(classes * hw);
    crf_window_norms_host(image, norms.data(), height, width, channels, radius, widths);
    for (size_t p = 0; p < hw; ++p) {
        float top = -3.402823466e38f, total = 0.f;
        for (int l = 0; l < classes; ++l) top = -unary[l * hw + p] > top ? -unary[l * hw + p] : top;
        for (int l = 0; l < classes; ++l) total += (a[l * hw + p] = expf(-unary[l * hw + p] - top));
        for (int l = 0; l < classes; ++l) a[l * hw + p] /= total;
    }
    for (int it = 0; it < iterations; ++it) {
        crf_window_step_host(a.data(), unary, image, norms.data(), gg, gb, b.data(), height, width, channels, classes,
                             radius, widths);
        a.swap(b);
    }
    std::memcpy(q_out, a.data(), classes * hw * sizeof(float));
}
