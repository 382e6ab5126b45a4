"""One way to run a classifier, PyTorch or onnxruntime: numpy inputs in, logits out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Runner(Protocol):
    name: str

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class TorchRunner:
    """A PyTorch model in eval mode under ``torch.inference_mode``."""

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tensors = {key: torch.from_numpy(value) for key, value in inputs.items()}
            return self.model(**tensors).logits.float().numpy()


class OnnxRunner:
    """An onnxruntime CPU session with a fixed thread count, fed only the inputs the graph declares."""

    def __init__(self, name: str, path: str | Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.name = name
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [item.name for item in self.session.get_inputs()]

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: inputs[name].astype(np.int64) for name in self.input_names}
        return self.session.run(None, feeds)[0]
