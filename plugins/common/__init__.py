"""Shared CUDA helpers."""
