"""Old home of the TensorRT flavour adapter; it lives in :mod:`edgeseg.runtime.tensorrt_env` so that the
runtime never imports ``export/``. These names stay importable from here."""

from __future__ import annotations

from edgeseg.runtime.tensorrt_env import (  # noqa: F401 - re-exported under the old module name
    CHOICES,
    FLAVOURS,
    RTX_DEFAULT_TARGETS,
    RTX_PIN,
    CapturingLogger,
    Flavour,
    install_route,
    is_jetson,
    load_flavour,
    log_text,
    process_logger,
)
