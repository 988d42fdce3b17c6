"""Parity of an exported ONNX artifact with its PyTorch source on real images.

Both backends get the same preprocessed inputs (the sidecar's preprocess, as the Segmenter feeds them).
Reported: max absolute and relative logit difference, argmax agreement, and the mean-IoU difference
(against the ground-truth masks next to the images when there are any, else ONNX vs PyTorch labels).

>>> report = parity_report("hc18_fastseg.onnx", images="../shared/data/hc18/images", limit=8)   # doctest: +SKIP
>>> report.passed, report.max_abs, report.agreement                                          # doctest: +SKIP
(True, 3.1e-06, 1.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg._deps import require
from edgeseg.artifact import Artifact
from edgeseg.errors import ArtifactError, InputError

DEFAULT_ATOL = 1e-4
DEFAULT_MIN_AGREEMENT = 0.999
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
HC18_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18" / "images"


@dataclass
class ParityReport:
    """Numbers from one parity run. ``rel`` is max |onnx - torch| / max |torch| (scale-free)."""

    model: str
    images: int
    input_shape: list[int]
    max_abs: float
    max_rel: float
    agreement: float
    miou_torch: float
    miou_onnx: float
    miou_reference: str
    atol: float = DEFAULT_ATOL
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    source: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def miou_diff(self) -> float:
        return abs(self.miou_torch - self.miou_onnx)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "miou_diff": self.miou_diff, "passed": self.passed}

    def text(self) -> str:
        lines = [
            f"model      {self.model}  (PyTorch source: {self.source})",
            f"inputs     {self.images} images, input {tuple(self.input_shape)}",
            f"max abs    {self.max_abs:.3e}   (tolerance {self.atol:.0e})",
            f"max rel    {self.max_rel:.3e}   (|diff| / max |torch logit|)",
            f"argmax     {100 * self.agreement:.4f} % agree   (tolerance {100 * self.min_agreement:.2f} %)",
            (f"mIoU       torch {self.miou_torch:.4f}  onnx {self.miou_onnx:.4f}  diff {self.miou_diff:.2e}"
             f"   (vs {self.miou_reference})"),
            "result     " + ("PASS" if self.passed else "FAIL: " + "; ".join(self.problems)),
        ]
        return "\n".join(lines)


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files in ``folder``, sorted by name, at most ``limit``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"images: got {str(folder)!r}, expected a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"images: {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    return files[:limit] if limit else files


def torch_model_for(artifact: Artifact, checkpoint: str | Path | None = None):
    """The PyTorch model an ONNX artifact came from: ``checkpoint``, else the sidecar's source file next to it."""
    from edgeseg.models import load_checkpoint

    if checkpoint is None:
        source = artifact.extra.get("export", {}).get("source")
        candidate = artifact.path.parent / source if source else artifact.path.with_suffix(".safetensors")
        if not candidate.exists():
            raise ArtifactError(
                f"{artifact.path}: its PyTorch checkpoint {candidate} does not exist; "
                "pass --checkpoint CKPT.safetensors"
            )
        checkpoint = candidate
    model, _ = load_checkpoint(checkpoint)
    return model, Path(checkpoint)


def parity_report(onnx_path: str | Path, checkpoint: str | Path | None = None, images: str | Path | None = None,
                  limit: int = 16, atol: float = DEFAULT_ATOL, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                  model: Any = None, size: tuple[int, int] | None = None) -> ParityReport:
    """Run PyTorch and ONNX Runtime on the same real images and compare.

    Args:
        onnx_path: the exported ``.onnx`` (sidecar next to it).
        checkpoint: the PyTorch ``.safetensors`` it came from (default: the sidecar's source next to it).
        images: a folder of images (default: HC18 when present); masks in ``../masks`` with the same
            names give a ground-truth mIoU.
        limit: images used (first ``limit`` by name).
        model: an ``nn.Module`` to compare against instead of loading ``checkpoint``.
        size: (H, W) model input size instead of the sidecar's ``preprocess.size``.
    """
    from edgeseg.after_engine import after_engine_step
    from edgeseg.metrics import ConfusionMatrix
    from edgeseg.preprocess import Preprocessor
    from edgeseg.runtime import OnnxRuntimeRunner, TorchRunner

    artifact = onnx_path if isinstance(onnx_path, Artifact) else Artifact.load(onnx_path)
    finish = after_engine_step(artifact)  # a decomposed graph is compared with the step the Segmenter runs after it
    if model is None:
        model, source = torch_model_for(artifact, checkpoint)
    else:
        source = f"<{type(model).__name__}>"
    if size is not None:
        artifact.preprocess.size = tuple(size)
    files = list_images(images if images is not None else _default_images(), limit)
    pre = Preprocessor(artifact.preprocess)
    k = artifact.num_classes
    torch_cm, onnx_cm = ConfusionMatrix(max(k, 2)), ConfusionMatrix(max(k, 2))
    max_abs = max_ref = 0.0
    agree = total = 0
    reference = "ground-truth masks"
    torch_art = artifact.with_path(source if isinstance(source, Path) else "model.safetensors")
    with TorchRunner(model, torch_art) as torch_runner, OnnxRuntimeRunner(artifact) as ort_runner:
        for file in files:
            blob, _ = pre(_read_bgr(file))
            a = torch_runner.infer({torch_runner.input_names[0]: blob})[torch_runner.output_names[0]]
            b = ort_runner.infer({ort_runner.input_names[0]: blob})[ort_runner.output_names[0]]
            if finish is not None:
                b = finish(b, blob)
            if a.shape != b.shape:
                raise ArtifactError(f"{file.name}: ONNX output {b.shape} != PyTorch output {a.shape}")
            max_abs = max(max_abs, float(np.abs(a - b).max()))
            max_ref = max(max_ref, float(np.abs(a).max()))
            la, lb = _labels(a[0]), _labels(b[0])
            agree += int((la == lb).sum())
            total += la.size
            mask = _mask_for(file, la.shape, k)
            if mask is None:
                reference = "PyTorch labels (no masks found)"
                mask = la
            torch_cm.update(la, mask)
            onnx_cm.update(lb, mask)
    report = ParityReport(
        model=artifact.path.name, images=len(files), input_shape=list(blob.shape), max_abs=max_abs,
        max_rel=max_abs / max(max_ref, 1e-12), agreement=agree / total, miou_torch=float(torch_cm.mean_iou),
        miou_onnx=float(onnx_cm.mean_iou), miou_reference=reference, atol=atol, min_agreement=min_agreement,
        source=str(source),
    )
    if report.max_abs > atol:
        report.problems.append(f"max abs diff {report.max_abs:.3e} > {atol:.0e}")
    if report.agreement < min_agreement:
        report.problems.append(f"argmax agreement {100 * report.agreement:.4f} % < {100 * min_agreement:.2f} %")
    return report


def _default_images() -> Path:
    if HC18_IMAGES.is_dir():
        return HC18_IMAGES
    raise InputError(f"images: none given and the HC18 images are not at {HC18_IMAGES}; pass --images DIR")


def _read_bgr(path: Path) -> np.ndarray:
    cv2 = require("cv2", "reading images")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"image file {path}: cannot be read (missing or not an image)")
    return image


def _labels(output: np.ndarray) -> np.ndarray:
    """(K, H, W) -> (H, W) labels; a 1-channel output is a sigmoid foreground (logit > 0)."""
    return (output[0] > 0).astype(np.int64) if output.shape[0] == 1 else output.argmax(axis=0)


def _mask_for(image: Path, shape: tuple[int, int], num_classes: int) -> np.ndarray | None:
    """Binary ground truth from ``../masks/<name>`` (pixels > 0 are foreground) for 2-class models."""
    if num_classes > 2:
        return None
    path = image.parent.parent / "masks" / image.name
    if not path.exists():
        return None
    cv2 = require("cv2", "reading masks")
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        return None
    return (cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0).astype(np.int64)
