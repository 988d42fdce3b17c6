"""The artifact: a model file plus the JSON sidecar that says how to feed it and read it.

A sidecar sits next to its model as ``<model file name>.json`` (``hc18.onnx`` -> ``hc18.onnx.json``).
Preprocessing, class names and output kind are read from here, never hard-coded at a call site.

>>> art = Artifact.load("edgeseg/assets/hc18_fastseg.onnx")   # doctest: +SKIP
>>> art.preprocess.size, art.classes                          # doctest: +SKIP
((256, 256), ['background', 'head'])
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArtifactError

SCHEMA_VERSION = 1
FORMATS = {".onnx": "onnx", ".engine": "engine", ".plan": "engine", ".pt": "pt", ".safetensors": "safetensors"}
OUTPUT_KINDS = ("logits", "probs")
RESIZE_MODES = ("stretch", "letterbox")
COLOR_ORDERS = ("bgr", "rgb", "gray")

# A distinct, readable colour per class (BGR). Class 0 is background and drawn black.
DEFAULT_PALETTE = [
    (0, 0, 0), (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44),
    (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82),
    (255, 56, 203), (200, 149, 255), (199, 55, 255),
]


@dataclass
class TensorSpec:
    """Name, shape and dtype of one model input or output. Dynamic dims are strings ("batch", "height")."""

    name: str
    shape: list[int | str]
    dtype: str = "float32"


@dataclass
class Preprocess:
    """How a BGR uint8 HWC frame becomes the model's NCHW float input.

    ``x = (pixel / 255 - mean) / std`` per channel, in ``color`` order, after resizing to ``size`` (H, W).
    """

    size: tuple[int, int] = (256, 256)
    resize: str = "stretch"
    color: str = "rgb"
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


@dataclass
class Artifact:
    """A model file and its sidecar. ``path`` is the model file; everything else is the sidecar."""

    path: Path
    model: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    preprocess: Preprocess = field(default_factory=Preprocess)
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    colors: list[tuple[int, int, int]] = field(default_factory=list)
    output_kind: str = "logits"
    precision: str = "fp32"
    opset: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    engine: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.colors:
            self.colors = [DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)] for i in range(len(self.classes))]

    # --- derived facts -------------------------------------------------------------------------
    @property
    def format(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix not in FORMATS:
            raise ArtifactError(f"{self.path}: unknown model file type {suffix!r}, expected one of {sorted(FORMATS)}")
        return FORMATS[suffix]

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path(self.path)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        data["file"] = self.path.name
        data["schema_version"] = SCHEMA_VERSION
        data["preprocess"]["size"] = list(self.preprocess.size)
        data["colors"] = [list(c) for c in self.colors]
        return data

    def save(self) -> Path:
        """Write the sidecar next to the model file and return its path."""
        self.validate()
        self.sidecar_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return self.sidecar_path

    @classmethod
    def from_dict(cls, path: str | Path, data: dict[str, Any]) -> "Artifact":
        data = dict(data)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{sidecar_path(path)}: schema_version {version} is newer than this edgeseg understands "
                f"({SCHEMA_VERSION}); upgrade edgeseg"
            )
        data.pop("file", None)
        known = set(cls.__dataclass_fields__) - {"path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArtifactError(f"{sidecar_path(path)}: unknown sidecar fields {unknown}; expected only {sorted(known)}")
        try:
            pre = data.get("preprocess", {})
            data["preprocess"] = Preprocess(**{**pre, "size": tuple(pre.get("size", (256, 256)))})
            data["inputs"] = [TensorSpec(**t) for t in data.get("inputs", [])]
            data["outputs"] = [TensorSpec(**t) for t in data.get("outputs", [])]
            data["colors"] = [tuple(c) for c in data.get("colors", [])]
        except TypeError as exc:
            raise ArtifactError(f"{sidecar_path(path)}: malformed sidecar ({exc})") from exc
        artifact = cls(path=Path(path), **data)
        artifact.validate()
        return artifact

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        """Read the sidecar of the model at ``path``; raise :class:`ArtifactError` saying what is wrong."""
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"model file not found: {path}")
        side = sidecar_path(path)
        if not side.exists():
            raise ArtifactError(
                f"sidecar not found: {side}. Every model needs its JSON sidecar next to it "
                "(written by `edgeseg export`, `edgeseg train` or `edgeseg import-tflite`)."
            )
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{side}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{side}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(path, data)

    def validate(self) -> None:
        """Check the sidecar's values against each other; raise :class:`ArtifactError` on the first problem."""
        pre = self.preprocess
        problems = []
        if self.output_kind not in OUTPUT_KINDS:
            problems.append(f"output_kind is {self.output_kind!r}, expected one of {OUTPUT_KINDS}")
        if pre.resize not in RESIZE_MODES:
            problems.append(f"preprocess.resize is {pre.resize!r}, expected one of {RESIZE_MODES}")
        if pre.color not in COLOR_ORDERS:
            problems.append(f"preprocess.color is {pre.color!r}, expected one of {COLOR_ORDERS}")
        if len(pre.size) != 2 or any(not isinstance(s, int) or s <= 0 for s in pre.size):
            problems.append(f"preprocess.size is {list(pre.size)!r}, expected [height, width] of positive ints")
        if len(pre.mean) != pre.channels or len(pre.std) != pre.channels:
            problems.append(
                f"preprocess.mean/std have {len(pre.mean)}/{len(pre.std)} values, expected {pre.channels} "
                f"for color {pre.color!r}"
            )
        if any(s == 0 for s in pre.std):
            problems.append(f"preprocess.std is {pre.std!r}, expected non-zero values")
        if not self.classes:
            problems.append("classes is empty, expected at least one class name")
        if len(self.colors) != len(self.classes):
            problems.append(f"colors has {len(self.colors)} entries, expected one per class ({len(self.classes)})")
        if problems:
            raise ArtifactError(f"{self.sidecar_path}: " + "; ".join(problems))

    def with_path(self, path: str | Path, **changes: Any) -> "Artifact":
        """A copy describing another model file (an export, a quantized or compiled version)."""
        data = self.to_dict()
        for key in ("file", "schema_version"):
            data.pop(key)
        data.update(changes)
        return Artifact.from_dict(path, data)


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")
