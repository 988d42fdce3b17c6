"""Instance segmentation: the ``Instances`` result type, datasets (COCO JSON, instance-PNG folders, HC18),
COCO mask/box AP through pycocotools, and the Mask R-CNN training loop.

Importing this package needs only NumPy; the submodules load torch / pycocotools / OpenCV where used.
"""

from .types import Instances

__all__ = ["Instances"]
