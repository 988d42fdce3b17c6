"""Latency benchmarking users can trust: per-stage and end-to-end timings, the environment, comparisons."""
