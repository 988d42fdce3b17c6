"""GPU side of edgeseg's ops: CUDA kernels launched through CuPy, TensorRT plugins.

Nothing here imports CuPy or TensorRT at package import time.
"""
