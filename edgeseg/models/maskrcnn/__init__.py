"""Light Mask R-CNN for instance segmentation (registry name ``maskrcnn``); see :mod:`.model`.

Importing this package registers ``maskrcnn`` with :func:`edgeseg.models.create_model`.
"""

from .model import MaskRCNN, maskrcnn

__all__ = ["MaskRCNN", "maskrcnn"]
