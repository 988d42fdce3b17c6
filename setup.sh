#!/usr/bin/env bash
# Set up edgeseg on a fresh machine: system sample videos, a virtual environment, the CPU stack.
#   bash setup.sh            # CPU workstation (torch CPU build, ONNX, ONNX Runtime, OpenCV, dev tools)
# Re-running is cheap: everything already present is skipped.
set -euo pipefail
cd "$(dirname "$0")"

# Real sample videos (Megamind.avi, vtest.avi) from Debian's opencv-doc, used by `edgeseg demo`.
if [ ! -d /usr/share/doc/opencv-doc/examples/data ] && command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  if [ -z "$SUDO" ] || command -v sudo >/dev/null; then
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends opencv-doc >/dev/null \
      || echo "setup: could not install opencv-doc; the demo will fall back to a synthetic clip" >&2
  fi
fi

PY=${PYTHON:-python3}
# Every pip install below resolves inside constraints.txt (the versions the tests pass with);
# scripts/refresh_constraints.sh moves them forward deliberately.
export PIP_CONSTRAINT="$PWD/constraints.txt"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to the CPU build; a bare `torch` requirement would pull a multi-GB CUDA build.
# TensorRT for RTX (extra "rtx") gives every machine a real TensorRT builder, GPU or not.
.venv/bin/python -m pip install -q "torch==2.13.0" -e ".[cpu,dev,rtx]"
# Triton client (TritonRunner, config checks). Installed without its pins: tritonclient[grpc] asks for
# protobuf<7 and ml-dtypes<=0.5.4, which would downgrade the ONNX stack; it works with protobuf 7 (tested).
# Its dependencies go first, so pip's resolver never sees tritonclient's pins (it would print an "ERROR:"
# conflict line on every fresh install although nothing is broken).
.venv/bin/python -m pip install -q "grpcio>=1.60" python-rapidjson "geventhttpclient>=2.3.3" "greenlet<3.4" "urllib3>=2.0.7"
.venv/bin/python -m pip install -q --no-deps "tritonclient==2.73.0"
# A local Triton server (PyTriton) lives in its own venv: it needs numpy<2 and Debian's Python 3.11.
if [ -x /usr/bin/python3.11 ] && ! .venv-triton/bin/python -c "import pytriton" 2>/dev/null; then
  rm -rf .venv-triton   # absent, or left incomplete by an interrupted setup
  bash scripts/setup_triton.sh || echo "setup: Triton server venv skipped; the Triton server tests will say so" >&2
fi

# The real pretrained selfie model (MediaPipe, Apache-2.0) from the mediapipe==0.10.21 wheel on PyPI:
# only the two .tflite files are kept (SHA-256 pinned), imported to PyTorch and exported to ONNX.
.venv/bin/edgeseg fetch-selfie || echo "setup: fetch-selfie failed; the selfie demo and its tests will say so" >&2
echo "setup: done. Try: .venv/bin/edgeseg demo"
