"""ONNX export, graph optimisation, int8 quantisation and parity checks: thin layers over Optimum/onnxruntime."""
