"""The windowed-CRF kernels read the image as bytes: both launchers (host and CuPy) must hand them
uint8, whatever dtype the caller passes (the DenseCRF plugin passes float32 frames)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.plugins.dense_crf import image_bytes

FRAME = np.array([[[0.0, 17.9, 255.0], [128.4, 3.0, 254.99]]], dtype=np.float32)  # (1, 2, 3) float32


def test_float_image_becomes_contiguous_bytes():
    got = image_bytes(np, FRAME[:, ::-1])  # a non-contiguous view, as a slice of a batch would be
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, [[[128, 3, 254], [0, 17, 255]]])


def test_grey_image_gets_one_channel():
    got = image_bytes(np, np.full((2, 3), 9.0, np.float32))
    assert got.shape == (2, 3, 1) and got.dtype == np.uint8 and int(got[1, 2, 0]) == 9


@pytest.mark.cupy
def test_cupy_launcher_casts_a_float_frame_like_the_host():
    import cupy as cp

    from edgeseg.plugins.dense_crf import windowed_crf_cupy, windowed_crf_host

    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (19, 23, 3)).astype(np.float32)
    energy = rng.normal(0, 1, (3, 19, 23)).astype(np.float32)
    g = np.eye(3, dtype=np.float32)
    args = (5, 3, (3.0, 3.0), (20.0, 20.0), (10.0, 10.0, 10.0), g, g)
    expected = windowed_crf_host(energy, image, *args)
    got = windowed_crf_cupy(cp.asarray(energy), cp.asarray(image), *args)
    np.testing.assert_allclose(cp.asnumpy(got), expected, atol=1e-5)
