"""PyTorch -> ONNX export, ONNX checks and parity, ONNX -> TensorRT engines."""
