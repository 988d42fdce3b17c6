"""Registering TensorRT plugins before a network is parsed, built or deserialized.

NVIDIA's plugin library (``ModulatedDeformConv2d``, ``ROIAlign_TRT``) always; edgeseg's ``tensorrt.plugin``
definitions (``edgeseg.plugins.tensorrt``) when asked for. Apart from :mod:`tensorrt_env` because those
plugins import it (version parsing, GPU identity): this module sits above both.
"""

from __future__ import annotations

from ..errors import InputError
from .tensorrt_env import Flavour

PLUGIN_CHOICES = ("native", "edgeseg")


def register_plugins(flavour: Flavour, plugins: str = "native") -> None:
    """Register NVIDIA's plugin library (always) and edgeseg's plugins (``plugins="edgeseg"``).

    Must run before parsing, building or deserializing a network that uses them.
    """
    if plugins not in PLUGIN_CHOICES:
        raise InputError(f"plugins: got {plugins!r}, expected one of {PLUGIN_CHOICES}")
    flavour.init_plugins()
    if plugins == "edgeseg":
        if not flavour.python_plugins:
            raise InputError(
                f"plugins: got 'edgeseg', but {flavour.label} cannot run Python-defined plugins (tensorrt.plugin is "
                "standard TensorRT only); export with standard-op routes or use --flavour tensorrt"
            )
        from edgeseg.plugins.tensorrt import register_all

        register_all()
