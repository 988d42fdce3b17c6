"""Slow, literal NumPy references of edgeseg's custom ops (float64 loops, one file per op).

They define what the ops mean: the PyTorch ops, the ONNX translations and the CUDA kernels are all tested
against them. They are written to be read, not to be fast.
"""
