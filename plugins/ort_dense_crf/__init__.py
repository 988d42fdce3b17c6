"""ONNX Runtime custom-op library for the ``edgeseg:DenseCRF`` node (the windowed CRF of ``plugins/dense_crf``).

``library_path()`` compiles ``dense_crf_op.cpp`` with the host C++ compiler on first use (cached like the other
host libraries, keyed by the sources' hash) and returns the ``.so`` for
``onnxruntime.SessionOptions.register_custom_ops_library``. ``opset_domains(path)`` reads an ``.onnx`` file's
opset imports without the ``onnx`` package, so a runner can tell whether a graph needs the library.

>>> import onnxruntime as ort                                                   # doctest: +SKIP
>>> options = ort.SessionOptions()                                              # doctest: +SKIP
>>> options.register_custom_ops_library(str(library_path()))                    # doctest: +SKIP
"""

from __future__ import annotations

import functools
import mmap
from pathlib import Path

from edgeseg.ops.onnx_translations import DOMAIN  # noqa: F401 - the node's domain, which runners look for
SOURCE = Path(__file__).with_name("dense_crf_op.cpp")
_CRF_DIR = SOURCE.parents[1] / "dense_crf"


@functools.cache
def library_path() -> Path:
    """The compiled custom-op library (built with g++ on first use, then cached); raises KernelBuildError."""
    from edgeseg.plugins.common import build

    return build.host_library_path(
        SOURCE, ("-fvisibility=hidden", f"-I{_CRF_DIR}"),
        depends=(SOURCE.with_name("ort_abi.h"), _CRF_DIR / "crf_window_host.cpp", *_CRF_DIR.glob("*.cuh")),
        what="the ONNX Runtime DenseCRF op library")


def opset_domains(path: str | Path) -> set[str]:
    """The domains in an ``.onnx`` file's ``opset_import`` (ModelProto field 8), read from the protobuf wire
    format directly: the graph (field 7) is skipped by its length, never parsed."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        domains, pos = set(), 0
        while pos < len(data):
            key, pos = _varint(data, pos)
            field, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(data, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _varint(data, pos)
                if field == 8:
                    domains.add(_opset_domain(data[pos:pos + size]))
                pos += size
            else:
                raise ValueError(f"{path}: not an ONNX model (protobuf wire type {wire} at byte {pos})")
        return domains


def _opset_domain(entry: bytes) -> str:
    pos = 0
    while pos < len(entry):
        key, pos = _varint(entry, pos)
        if key & 7 == 2:
            size, pos = _varint(entry, pos)
            if key >> 3 == 1:
                return entry[pos:pos + size].decode("utf-8", "replace")
            pos += size
        elif key & 7 == 0:
            _, pos = _varint(entry, pos)
        else:
            break
    return ""  # the default (ai.onnx) domain


def _varint(data, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated protobuf varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
