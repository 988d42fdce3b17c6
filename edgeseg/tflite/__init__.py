"""Import TFLite models (e.g. MediaPipe's selfie segmenter) into PyTorch, with no TensorFlow.

``reader`` parses the flatbuffer (NumPy + the ``tflite`` schema package), ``convert`` turns it into a JSON
graph description in NCHW plus PyTorch-layout weights, ``graph_model`` runs that description as an
``nn.Module`` (zoo name ``tflite_graph``), ``importer`` writes a checkpoint + sidecar (+ ONNX), and
``mediapipe`` obtains the selfie models from the ``mediapipe==0.10.21`` wheel.

>>> from edgeseg.tflite.importer import import_tflite                       # doctest: +SKIP
>>> paths = import_tflite("selfie_segmentation.tflite", "out/", classes=["background", "person"])  # doctest: +SKIP
"""
