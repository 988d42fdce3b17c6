// Shared macros for edgeseg kernels.
//
// Every kernel's per-element math is an EDGESEG_HD function in a header (<op>/<op>.cuh). The .cu file
// wraps it in a thin extern "C" __global__ kernel (compiled by nvcc, loaded by CuPy RawModule); a
// <op>_host.cpp wraps the same body in a plain loop (compiled by g++) so CI checks the math against
// the NumPy reference without a GPU.
#pragma once

#if defined(__CUDACC__)
#define EDGESEG_HD __host__ __device__ __forceinline__
#else
#define EDGESEG_HD inline
#endif

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

namespace edgeseg {

// Storage <-> FP32 arithmetic: kernels read float or __half tensors and compute in float.
template <typename T> EDGESEG_HD float load(const T* p, long i) { return static_cast<float>(p[i]); }
template <typename T> EDGESEG_HD void store(T* p, long i, float v) { p[i] = static_cast<T>(v); }
#if defined(__CUDACC__)
template <> EDGESEG_HD float load<__half>(const __half* p, long i) { return __half2float(p[i]); }
template <> EDGESEG_HD void store<__half>(__half* p, long i, float v) { p[i] = __float2half(v); }
#endif

}  // namespace edgeseg
