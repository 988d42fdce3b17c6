#!/usr/bin/env bash
# Create the Triton venv that `edgeseg serve` re-executes itself in (default: .venv-triton/ in the checkout).
#
# Why a separate venv: the nvidia-pytriton wheel bundles `tritonserver` with only the Python backend;
# it declares numpy<2 (the main .venv has numpy 2), and its Python-backend stub embeds a libpython 3.11
# that crashes with pyenv's 3.11.7 stdlib (`'_thread.RLock' object has no attribute '_recursion_count'`)
# but works with Debian's /usr/bin/python3.11 (3.11.2). Needs glibc >= 2.35 (manylinux_2_35 wheel).
#
# Usage: bash scripts/setup_triton.sh [VENV_DIR]        (env PYTHON=/path/to/python3.11 to override)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-triton}"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x /usr/bin/python3.11 ]; then PYTHON=/usr/bin/python3.11; else PYTHON="$(command -v python3.11 || true)"; fi
fi
if [ -z "$PYTHON" ] || ! "$PYTHON" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  echo "setup_triton: need a Python 3.11 with venv (Debian: apt-get install python3.11-venv); got '${PYTHON:-none}'" >&2
  exit 1
fi
echo "setup_triton: creating $VENV from $PYTHON ($("$PYTHON" --version))"
# The main venv's constraints pin numpy 2, which this venv must not have: use only our own constraint.
unset PIP_CONSTRAINT
CONSTRAINTS="$(mktemp)"
# A venv left half-made would look usable (its python exists) and fail later: remove it unless all succeeds.
trap 'rc=$?; rm -f "$CONSTRAINTS"; if [ $rc -ne 0 ]; then rm -rf "$VENV"; echo "setup_triton: failed; removed $VENV" >&2; fi' EXIT
"$PYTHON" -m venv "$VENV"
echo "numpy<2" > "$CONSTRAINTS"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -c "$CONSTRAINTS" "nvidia-pytriton==0.7.0" -e "$ROOT[runtime]"
# Check: PyTriton imports and the server binary is there.
"$VENV/bin/python" - <<'PY'
import numpy, onnxruntime, pytriton
from pathlib import Path
binary = Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
assert binary.exists(), f"tritonserver binary missing at {binary}"
print(f"setup_triton: ok (pytriton {pytriton.__version__ if hasattr(pytriton, '__version__') else '?'}, "
      f"numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__})")
PY
echo "setup_triton: done. Serve a model with: edgeseg serve MODEL.onnx   (or $VENV/bin/python -m edgeseg.triton.server MODEL.onnx)"
