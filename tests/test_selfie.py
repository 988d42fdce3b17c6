"""The selfie segmenter imported from MediaPipe: parity with LiteRT on real photos and video frames, the model
cache, and the background effect. Parity tests skip (with the reason) until `edgeseg fetch-selfie` has run."""

from __future__ import annotations

import functools
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import ArtifactError, InputError
from edgeseg.pipeline import Segmentation

cv2 = pytest.importorskip("cv2")

MEGAMIND = Path("/usr/share/doc/opencv-doc/examples/data/Megamind.avi")
VARIANTS = ["general", "landscape"]


def _model_or_skip(variant: str, fmt: str) -> Path:
    from edgeseg.apps.selfie import selfie_model_path

    try:
        return selfie_model_path(variant, fmt)
    except ArtifactError as exc:
        pytest.skip(str(exc))


@functools.cache
def _real_images() -> dict[str, np.ndarray]:
    """RGB uint8 photos with people (scikit-image) and frames of a real video (close-up faces)."""
    data = pytest.importorskip("skimage.data")
    images = {"astronaut": data.astronaut(), "coffee": data.coffee(),
              "camera": np.repeat(data.camera()[:, :, None], 3, axis=2)}
    if MEGAMIND.is_file():
        cap = cv2.VideoCapture(str(MEGAMIND))
        for index in range(226):
            ok, frame = cap.read()
            if not ok:
                break
            if index in (45, 90, 135, 180, 225):
                images[f"megamind_{index}"] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        cap.release()
    return images


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_and_onnx_match_litert_on_real_images(variant, one_torch_thread):
    tflite_path = _model_or_skip(variant, "tflite")
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from edgeseg.models import load_checkpoint

    interp = litert.Interpreter(model_path=str(tflite_path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    height, width = inp["shape"][1:3]
    model, artifact = load_checkpoint(_model_or_skip(variant, "safetensors"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(_model_or_skip(variant, "onnx")), options, providers=["CPUExecutionProvider"])
    assert artifact.output_kind == "probs" and artifact.classes == ["background", "person"]
    assert tuple(artifact.preprocess.size) == (height, width) and artifact.preprocess.color == "rgb"
    images = _real_images()
    assert len(images) >= 3
    for name, image in images.items():
        x = cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        interp.set_tensor(inp["index"], x[None])
        interp.invoke()
        reference = interp.get_tensor(out["index"])[0, :, :, 0]
        nchw = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        with torch.no_grad():
            ours_torch = model(torch.from_numpy(nchw))[0, 0].numpy()
        ours_onnx = session.run(None, {session.get_inputs()[0].name: nchw})[0][0, 0]
        assert 0.05 < (reference > 0.5).mean(), f"{name}: expected a person in the reference mask"
        for label, ours in (("torch", ours_torch), ("onnx", ours_onnx)):
            diff = float(np.abs(ours - reference).max())
            assert diff <= 1e-3, f"{variant}/{name}/{label}: max abs difference {diff:.2e} > 1e-3"
            assert _iou(ours, reference) >= 0.99, f"{variant}/{name}/{label}: IoU {_iou(ours, reference):.4f}"


def test_segmenter_runs_the_selfie_model_at_frame_size():
    from edgeseg.pipeline import Segmenter

    data = pytest.importorskip("skimage.data")
    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    with Segmenter(_model_or_skip("general", "onnx")) as seg:
        result = seg(frame)
    assert result.probs.shape == (2, 512, 512) and result.labels.shape == (512, 512)
    # the astronaut's face (centre-top) is person, the top-left corner (sky/flag background) is not
    assert result.labels[150:200, 200:260].mean() > 0.95
    assert result.labels[:40, :40].mean() < 0.05


def test_fetch_is_a_quick_no_op_when_the_cache_is_complete(monkeypatch):
    from edgeseg.tflite import mediapipe

    _model_or_skip("general", "onnx")
    if not mediapipe.is_complete():
        pytest.skip(f"selfie cache at {mediapipe.selfie_home()} is incomplete; run `edgeseg fetch-selfie`")

    def no_download(*args, **kwargs):
        raise AssertionError("fetch_selfie downloaded although the cache is complete")

    monkeypatch.setattr(mediapipe, "download_wheel", no_download)
    manifest = mediapipe.fetch_selfie(log=lambda message: None)
    assert manifest["licence"] == "Apache-2.0"
    assert manifest["models"]["general"]["tflite_sha256"] == mediapipe.MODELS["general"][1]


# --- the cache and the wheel, without the real model ------------------------------------------------
def test_missing_model_names_the_fetch_command(tmp_path, monkeypatch):
    from edgeseg.apps.selfie import selfie_model_path

    monkeypatch.setenv("EDGESEG_HOME", str(tmp_path))
    with pytest.raises(ArtifactError, match="edgeseg fetch-selfie") as info:
        selfie_model_path("general")
    assert str(tmp_path / "models" / "selfie") in str(info.value)
    with pytest.raises(InputError, match="variant"):
        selfie_model_path("portrait")


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_extract_rejects_a_wheel_whose_model_hash_differs(tmp_path):
    from edgeseg.tflite.mediapipe import MODELS, WHEEL_DIR, extract_models

    wheel = _fake_wheel(tmp_path / "mediapipe-0.10.21-py3-none-any.whl",
                        {WHEEL_DIR + file: b"not the real model" for file, _ in MODELS.values()})
    with pytest.raises(ArtifactError, match="SHA-256"):
        extract_models(wheel, tmp_path / "home")
    assert not list((tmp_path / "home" / "tflite").glob("*.tflite"))  # the bad file is not left behind


def test_extract_names_the_missing_member(tmp_path):
    from edgeseg.tflite.mediapipe import extract_models

    wheel = _fake_wheel(tmp_path / "mediapipe-0.10.21-py3-none-any.whl", {"mediapipe/__init__.py": b""})
    with pytest.raises(ArtifactError, match="selfie_segmentation.tflite"):
        extract_models(wheel, tmp_path / "home")


# --- the background effect --------------------------------------------------------------------------
def _scene(height=60, width=80):
    """A textured frame and a Segmentation whose left half is person (hard mask)."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    person = np.zeros((height, width), np.float32)
    person[:, : width // 2] = 1.0
    probs = np.stack([1.0 - person, person])
    return frame, Segmentation(labels=person.astype(np.uint8), probs=probs)


def test_color_background_keeps_the_person_and_paints_the_rest():
    from edgeseg.apps.selfie import BackgroundEffect

    frame, result = _scene()
    out = BackgroundEffect(color="0,255,0", feather=0)(frame, result)
    assert out.shape == frame.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :40], frame[:, :40])
    assert (out[:, 40:] == np.array([0, 255, 0], np.uint8)).all()


def test_replacement_image_is_resized_to_the_frame():
    from edgeseg.apps.selfie import BackgroundEffect

    frame, result = _scene()
    backdrop = np.full((10, 20, 3), 200, np.uint8)
    out = BackgroundEffect(replace=backdrop, feather=0)(frame, result)
    np.testing.assert_array_equal(out[:, :40], frame[:, :40])
    assert (out[:, 40:] == 200).all()


def test_blur_smooths_only_the_background():
    from edgeseg.apps.selfie import BackgroundEffect

    frame, result = _scene(120, 160)
    out = BackgroundEffect(blur=21, feather=0)(frame, result)
    np.testing.assert_array_equal(out[:, :80], frame[:, :80])
    # random texture: blurring removes most of the pixel-to-pixel variation
    def roughness(img):
        return float(np.abs(np.diff(img[:, 100:].astype(np.float32), axis=1)).mean())

    assert roughness(out) < 0.3 * roughness(frame)


def test_feather_softens_the_mask_edge_only():
    from edgeseg.apps.selfie import BackgroundEffect

    frame, result = _scene()
    effect = BackgroundEffect(color=(0, 0, 0), feather=3)
    alpha = effect.feathered(effect.person(frame, result))
    assert alpha[:, 38].min() < 1.0 and alpha[:, 41].max() > 0.0  # blended across the boundary
    assert (alpha[:, :30] == 1.0).all() and (alpha[:, 50:] == 0.0).all()  # unchanged away from it


@pytest.mark.parametrize("kwargs, field", [
    ({"blur": 20}, "blur"), ({"blur": 1}, "blur"), ({"feather": -1}, "feather"),
    ({"color": "0,300,0"}, "color"), ({"color": (0, 0, 0), "replace": np.zeros((4, 4, 3), np.uint8)}, "replace/color"),
    ({"replace": "/nonexistent/backdrop.png"}, "replace"), ({"replace": np.zeros((4, 4), np.float32)}, "replace"),
])
def test_bad_effect_options_name_the_field(kwargs, field):
    from edgeseg.apps.selfie import BackgroundEffect

    with pytest.raises(InputError, match=f"^{field}"):
        BackgroundEffect(**kwargs)


def test_mask_of_another_size_is_rejected():
    from edgeseg.apps.selfie import BackgroundEffect

    frame, result = _scene()
    with pytest.raises(InputError, match="result.foreground"):
        BackgroundEffect()(frame[:30], result)
    with pytest.raises(InputError, match="result.probs"):           # a result object that only has probs
        BackgroundEffect()(frame[:30], types.SimpleNamespace(probs=result.probs))


def test_selfie_command_blurs_a_real_video(tmp_path):
    from edgeseg.cli import main

    _model_or_skip("general", "onnx")
    if not MEGAMIND.is_file():
        pytest.skip(f"{MEGAMIND} not found (Debian package opencv-doc)")
    out = tmp_path / "frames"
    code = main(["selfie", "--source", str(MEGAMIND), "--blur", "31", "--smooth", "0.5", "--threads", "1",
                 "--max-frames", "4", "--sink", str(out) + "/"])
    assert code == 0
    written = sorted(out.iterdir())
    assert len(written) >= 4
    image = cv2.imread(str(written[-1]))
    assert image is not None and image.shape == (528, 720, 3)


def test_denormal_mask_values_blend_as_zero():
    # LiteRT's sigmoid underflows to denormals far from the person; they must not change (or slow) the result
    from edgeseg.apps.selfie import BackgroundEffect

    frame, result = _scene()
    effect = BackgroundEffect(color=(0, 0, 255), feather=2)
    person = result.probs[1].copy()
    tiny = person.copy()
    tiny[person == 0] = np.float32(1e-40)
    assert (tiny[person == 0] != 0).all()  # really denormal, not flushed
    np.testing.assert_array_equal(effect.composite(frame, tiny), effect.composite(frame, person))


def test_download_stops_at_the_first_network_error(tmp_path, monkeypatch):
    from edgeseg.tflite import mediapipe

    calls = []

    class Failed:
        returncode, stdout = 1, ""
        stderr = ("WARNING: Retrying ... NewConnectionError('Failed to establish a new connection')\n"
                  "ERROR: No matching distribution found for mediapipe==0.10.21")

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return Failed()

    monkeypatch.setattr(mediapipe.subprocess, "run", fake_run)
    with pytest.raises(ArtifactError, match="after 1 attempt.*network access to PyPI.*--wheel"):
        mediapipe.download_wheel(tmp_path, log=lambda message: None)
    assert len(calls) == 1 and "mediapipe==0.10.21" in calls[0] and "--no-deps" in calls[0]
