"""Output paths the CLI writes to: checked before the work starts, and image writes that cannot fail silently."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError

# Suffixes OpenCV's imwrite has an encoder for in every build we ship.
IMAGE_WRITE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def ensure_writable(path: str | Path, field: str, folder: bool = False, suffixes: tuple[str, ...] = ()) -> Path:
    """Check that ``path`` (a file, or a folder with ``folder=True``) can be written, before a long run.

    Writes and removes a probe file in the nearest folder that exists on the way to ``path`` (missing
    folders can then be created there), which catches read-only mounts, ``/proc`` and permissions even for
    root; nothing is left behind. With ``suffixes``, the file name must end in one of them. Raises
    :class:`InputError` naming ``field``.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{field}: got {str(path)!r}, expected a file name ending in one of {suffixes}")
    if not folder and path.is_dir():
        raise InputError(f"{field}: got {str(path)!r}, which is a folder, expected a file path")
    if folder and path.exists() and not path.is_dir():
        raise InputError(f"{field}: got {str(path)!r}, which is a file, expected a folder")
    place = path if folder else path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        if not place.is_dir():
            raise NotADirectoryError(f"{place} is a file, not a folder")
        with tempfile.NamedTemporaryFile(dir=place, prefix=".edgeseg-write-check-"):
            pass
        if not folder and path.exists() and not os.access(path, os.W_OK):
            raise PermissionError("the file exists and is read-only")
    except OSError as exc:
        reason = str(exc) if isinstance(exc, NotADirectoryError) else exc.strerror or str(exc)
        raise InputError(f"{field}: got {str(path)!r}, expected a writable path ({reason})") from None
    return path


def write_image(path: str | Path, image, field: str = "path") -> Path:
    """``cv2.imwrite`` (parent folders created) that raises :class:`InputError` naming ``field`` and the path
    when nothing was written."""
    import cv2

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = cv2.imwrite(str(path), image)
    except OSError as exc:
        raise InputError(f"{field}: cannot write an image to {str(path)!r}: {exc.strerror or exc}") from None
    except cv2.error as exc:
        raise InputError(f"{field}: cannot write an image to {str(path)!r}: {exc}") from None
    if not ok:
        raise InputError(f"{field}: cannot write an image to {str(path)!r} (folder missing or not writable, "
                         f"or a suffix other than {IMAGE_WRITE_SUFFIXES})")
    return path


def write_json(path: str | Path, data) -> Path:
    """``data`` as indented JSON (one trailing newline) at ``path``, its folder made if missing."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
