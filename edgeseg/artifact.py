"""The artifact: a model file plus the JSON sidecar that says how to feed it and read it.

A sidecar sits next to its model as ``<model file name>.json`` (``hc18.onnx`` -> ``hc18.onnx.json``).
Preprocessing, class names and output kind are read from here, never hard-coded at a call site.

>>> art = Artifact.load("edgeseg/assets/hc18_fastseg.onnx")   # doctest: +SKIP
>>> art.preprocess.size, art.classes                          # doctest: +SKIP
((256, 256), ['background', 'head'])
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import bare_onnx
from .errors import ArtifactError, InputError
from .model_cache import selfie_model_path
from .sidecar import (COLOR_ORDERS, OUTPUT_KINDS, RESIZE_MODES, Preprocess, TensorSpec, class_count_problems, is_int,
                      sidecar_path)

# The value types and accepted values live in edgeseg.sidecar (below bare_onnx); they stay importable from here.
__all__ = ["COLOR_ORDERS", "DEFAULT_PALETTE", "FORMATS", "MODEL_NAMES", "OUTPUT_KINDS", "RESIZE_MODES",
           "SCHEMA_VERSION", "Artifact", "Preprocess", "TensorSpec", "class_count_problems", "resolve_model",
           "sidecar_path"]

SCHEMA_VERSION = 1
FORMATS = {".onnx": "onnx", ".engine": "engine", ".plan": "engine", ".pt": "pt", ".safetensors": "safetensors"}
# Sane bounds, checked at load so a corrupt or hostile sidecar fails with a message instead of exhausting memory.
MAX_CLASSES = 4096  # ADE20K has 150, LVIS 1203
MAX_SIDE = 8192  # preprocess.size and every fixed input dim (8K video is 7680 wide)
MAX_TENSOR_ELEMENTS = 1 << 28  # an output's fixed dims multiplied (1 GiB of float32): boxes/anchors may pass MAX_SIDE
MAX_MODEL_KWARG = 4096  # any number in model_kwargs (widths, kernel sizes, strides)
MIN_STD, MAX_STD, MAX_ABS_MEAN = 1e-6, 1e6, 1e3  # x = (pixel / 255 - mean) / std stays finite and meaningful

# Model names that resolve_model turns into files: name -> selfie variant (`edgeseg fetch-selfie` caches them).
MODEL_NAMES = {"selfie": "general", "selfie-landscape": "landscape"}

# A distinct, readable colour per class (BGR). Class 0 is background and drawn black.
DEFAULT_PALETTE = [
    (0, 0, 0), (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44),
    (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82),
    (255, 56, 203), (200, 149, 255), (199, 55, 255),
]


@dataclass
class Artifact:
    """A model file and its sidecar. ``path`` is the model file; everything else is the sidecar.

    An Artifact stands for its model file where a path is expected: ``os.fspath``/``str`` give the path and
    ``Artifact.load(artifact)`` returns a copy, so an Artifact built in code (``Artifact.from_onnx(...)``) goes
    wherever a model path goes.
    """

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

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

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
        side = sidecar_path(path)
        version = data.pop("schema_version", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ArtifactError(f"{side}: schema_version is {version!r}, expected a positive integer "
                                f"(this edgeseg writes {SCHEMA_VERSION})")
        if version > SCHEMA_VERSION:
            raise ArtifactError(
                f"{side}: schema_version {version} is newer than this edgeseg understands "
                f"({SCHEMA_VERSION}); upgrade edgeseg"
            )
        data.pop("file", None)
        known = set(cls.__dataclass_fields__) - {"path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArtifactError(f"{side}: unknown sidecar fields {unknown}; expected only {sorted(known)}")
        problems = _type_problems(data)
        if problems:
            raise ArtifactError(f"{side}: " + "; ".join(problems))
        try:
            pre = data.get("preprocess", {})
            data["preprocess"] = Preprocess(**{**pre, "size": tuple(pre.get("size", (256, 256)))})
            data["inputs"] = [TensorSpec(**t) for t in data.get("inputs", [])]
            data["outputs"] = [TensorSpec(**t) for t in data.get("outputs", [])]
            data["colors"] = [tuple(c) for c in data.get("colors", [])]
        except TypeError as exc:
            raise ArtifactError(f"{side}: malformed sidecar ({exc})") from exc
        artifact = cls(path=Path(path), **data)
        artifact.validate()
        return artifact

    @classmethod
    def load(cls, path: str | Path | Artifact) -> "Artifact":
        """Read the sidecar of the model at ``path`` (or a name in :data:`MODEL_NAMES`, see :func:`resolve_model`);
        raise :class:`ArtifactError` saying what is wrong. An Artifact gives a copy of itself."""
        if isinstance(path, Artifact):
            return copy.deepcopy(path)
        path = resolve_model(path)
        if not path.exists():
            raise ArtifactError(f"model file not found: {path} (expected a model file with its sidecar, or one of "
                                f"the model names {sorted(MODEL_NAMES)})")
        side = sidecar_path(path)
        if not side.exists():
            if path.suffix.lower() == ".onnx":  # a third-party model: read what the graph says, announce the rest
                return cls.from_onnx(path)
            raise ArtifactError(
                f"sidecar not found: {side}. Every model but a bare .onnx needs its JSON sidecar next to it "
                "(written by `edgeseg export`, `edgeseg train` or `edgeseg import-tflite`)."
            )
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{side}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ArtifactError(f"{side}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(path, data)

    @classmethod
    def from_onnx(cls, path: str | Path, **assume: Any) -> "Artifact":
        """The artifact of an ``.onnx`` without a sidecar, read from its graph; ``assume`` sets what a graph cannot
        say: ``classes``, ``mean``, ``std``, ``color``, ``size`` (H, W), ``output_kind``. Logs one line naming what
        was assumed unless ``announce=False`` (see :mod:`edgeseg.bare_onnx`)."""
        announce = assume.pop("announce", True)
        fields, assumed = bare_onnx.fields_from_onnx(path, **assume)
        artifact = cls(path=Path(path), **fields)
        try:
            artifact.validate()
        except ArtifactError as exc:  # the values came from options or assumptions, not from a sidecar file
            problem = str(exc).removeprefix(f"{artifact.sidecar_path}: ")
            raise InputError(f"{artifact.path.name} (no sidecar): {problem}") from exc
        if announce:
            bare_onnx.announce(artifact.path, fields, assumed)
        return artifact

    def validate(self) -> None:
        """Check the sidecar's values against each other and sane bounds; raise :class:`ArtifactError` listing
        every problem found."""
        pre = self.preprocess
        problems = []
        if self.output_kind not in OUTPUT_KINDS:
            problems.append(f"output_kind is {self.output_kind!r}, expected one of {OUTPUT_KINDS}")
        if pre.resize not in RESIZE_MODES:
            problems.append(f"preprocess.resize is {pre.resize!r}, expected one of {RESIZE_MODES}")
        if pre.color not in COLOR_ORDERS:
            problems.append(f"preprocess.color is {pre.color!r}, expected one of {COLOR_ORDERS}")
        if len(pre.size) != 2 or any(not is_int(s) or not 0 < s <= MAX_SIDE for s in pre.size):
            problems.append(f"preprocess.size is {list(pre.size)!r}, expected [height, width] of ints in "
                            f"1..{MAX_SIDE}")
        if len(pre.mean) != pre.channels or len(pre.std) != pre.channels:
            problems.append(
                f"preprocess.mean/std have {len(pre.mean)}/{len(pre.std)} values, expected {pre.channels} "
                f"for color {pre.color!r}"
            )
        problems += _normalisation_problems(pre)
        if not self.classes:
            problems.append("classes is empty, expected at least one class name")
        if len(self.classes) > MAX_CLASSES:
            problems.append(f"classes has {len(self.classes)} names, expected at most {MAX_CLASSES}")
        if len(self.colors) != len(self.classes):
            problems.append(f"colors has {len(self.colors)} entries, expected one per class ({len(self.classes)})")
        problems += _model_kwargs_problems(self.model_kwargs)
        for kind, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
            for i, spec in enumerate(specs):
                fixed = [d for d in spec.shape if not isinstance(d, str)]
                if kind == "inputs":  # images: every side bounded
                    ok, expected = all(is_int(d) and 0 < d <= MAX_SIDE for d in fixed), f"in 1..{MAX_SIDE}"
                else:  # outputs may list many anchors or boxes: bound the size in all
                    ok = all(is_int(d) and d > 0 for d in fixed) and math.prod(fixed) <= MAX_TENSOR_ELEMENTS
                    expected = f"positive, at most {MAX_TENSOR_ELEMENTS} elements in all,"
                if not ok:
                    problems.append(f"{kind}[{i}].shape is {spec.shape!r}, expected fixed dims {expected} "
                                    "and names (strings) for dynamic dims")
        if not problems and self.extra.get("task") != "instances":
            problems += self._class_count_problems()
        if problems:
            raise ArtifactError(f"{self.sidecar_path}: " + "; ".join(problems))

    def _class_count_problems(self) -> list[str]:
        """Class names against ``model_kwargs.num_classes`` and a fixed output channel count (semantic models)."""
        n, problems = len(self.classes), []
        declared = self.model_kwargs.get("num_classes")
        if declared is not None and declared != n:
            problems.append(f"classes has {n} names but model_kwargs.num_classes is {declared}")
        if self.outputs and len(self.outputs[0].shape) == 4:
            problems += class_count_problems(self.outputs[0].shape[1], n, f"outputs[0] {self.outputs[0].name!r}")
        return problems

    def with_path(self, path: str | Path, **changes: Any) -> "Artifact":
        """A copy describing another model file (an export, a quantized or compiled version)."""
        data = self.to_dict()
        for key in ("file", "schema_version"):
            data.pop(key)
        data.update(changes)
        return Artifact.from_dict(path, data)


def resolve_model(model: str | Path) -> Path:
    """A model reference -> its file: a name in :data:`MODEL_NAMES` (``"selfie"``: the cached MediaPipe selfie
    model, its SHA-256 checked against the one ``edgeseg fetch-selfie`` recorded) or a path, returned as a Path.

    The one resolver behind :meth:`Artifact.load`, so the CLI's ``--model selfie``, ``Segmenter("selfie")`` and
    ``edgeseg.stream(src, "selfie")`` all mean the same file.
    """
    if isinstance(model, str) and model in MODEL_NAMES:
        return selfie_model_path(MODEL_NAMES[model])
    return Path(model)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _normalisation_problems(pre: Preprocess) -> list[str]:
    problems = []
    if any(not _is_number(s) or not MIN_STD <= s <= MAX_STD for s in pre.std):  # NaN fails both comparisons
        problems.append(f"preprocess.std is {pre.std!r}, expected finite numbers in [{MIN_STD:g}, {MAX_STD:g}] "
                        "(x = (pixel / 255 - mean) / std; a tiny std turns every input into inf or NaN)")
    if any(not _is_number(m) or not abs(m) <= MAX_ABS_MEAN for m in pre.mean):
        problems.append(f"preprocess.mean is {pre.mean!r}, expected finite numbers in "
                        f"[-{MAX_ABS_MEAN:g}, {MAX_ABS_MEAN:g}] (in units of pixel / 255)")
    return problems


def _model_kwargs_problems(kwargs: dict[str, Any]) -> list[str]:
    """Bounds on what rebuilds a checkpoint's network, checked before torch allocates anything."""
    problems = []
    for key, low, high in (("num_classes", 1, MAX_CLASSES), ("in_channels", 1, MAX_MODEL_KWARG)):
        if key in kwargs and not (is_int(kwargs[key]) and low <= kwargs[key] <= high):
            problems.append(f"model_kwargs.{key} is {kwargs[key]!r}, expected an int in {low}..{high}")
    for key, value in kwargs.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in values if _is_number(v)]
        if key not in ("num_classes", "in_channels") and any(
                not math.isfinite(v) or abs(v) > MAX_MODEL_KWARG for v in numbers):
            problems.append(f"model_kwargs.{key} is {value!r}, expected finite numbers within "
                            f"+-{MAX_MODEL_KWARG}")
    return problems


# field -> (accepted types, what to say); None allowed where the dataclass default is None
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((str,), "a string"), "model_kwargs": ((dict,), "an object"), "inputs": ((list,), "a list"),
    "outputs": ((list,), "a list"), "preprocess": ((dict,), "an object"), "classes": ((list,), "a list"),
    "colors": ((list,), "a list"), "output_kind": ((str,), "a string"), "precision": ((str,), "a string"),
    "opset": ((int, type(None)), "an integer or null"), "versions": ((dict,), "an object"),
    "engine": ((dict, type(None)), "an object or null"), "extra": ((dict,), "an object"),
}


def _type_problems(data: dict[str, Any]) -> list[str]:
    """JSON types of the sidecar's fields, so a wrong type is named instead of failing later as a TypeError."""
    problems = []
    for key, (types, what) in _FIELD_TYPES.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool)):
            problems.append(f"{key} is {data[key]!r}, expected {what}")
    if problems:
        return problems
    for kind in ("inputs", "outputs"):
        for i, spec in enumerate(data.get(kind, [])):
            if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("shape"), list)
                    and isinstance(spec.get("dtype", ""), str)):
                problems.append(f"{kind}[{i}] is {spec!r}, expected {{\"name\": str, \"shape\": [int | str, ...], "
                                "\"dtype\": str}")
    if not all(isinstance(c, str) for c in data.get("classes", [])):
        problems.append(f"classes is {data['classes']!r}, expected a list of class names (strings)")
    if not all(isinstance(c, list) and len(c) == 3 and all(is_int(v) and 0 <= v <= 255 for v in c)
               for c in data.get("colors", [])):
        problems.append("colors: expected a list of [b, g, r] integers 0-255")
    pre = data.get("preprocess", {})
    for key in ("size", "mean", "std"):
        if key in pre and not (isinstance(pre[key], list) and all(_is_number(v) for v in pre[key])):
            problems.append(f"preprocess.{key} is {pre[key]!r}, expected a list of numbers")
    for key in ("resize", "color"):
        if key in pre and not isinstance(pre[key], str):
            problems.append(f"preprocess.{key} is {pre[key]!r}, expected a string")
    return problems
