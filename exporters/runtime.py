"""One way to run a classifier, PyTorch or onnxruntime: numpy inputs in, logits out."""

from __future__ import annotations

from collections.abc import Sequence
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


RUNTIME_FILE = "runtime.json"


def create_session(path: str | Path, *, threads: int = 1, disabled_optimizers: Sequence[str] = ()) -> Any:
    """An onnxruntime CPU session with a fixed thread count and, optionally, some session fusions turned off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled_optimizers)
    )


def load_session(onnx_dir: str | Path, *, threads: int | None = None) -> Any:
    """The shipped int8 graph of an attr-compress ONNX folder with the session settings chosen for it
    (``runtime.json``): the way to run the folder outside attr-compress."""
    from compressor.artifacts import read_json

    folder = Path(onnx_dir)
    settings = read_json(folder / RUNTIME_FILE, "re-run the export")
    return create_session(
        folder / settings["file"],
        threads=threads or settings["intra_op_num_threads"],
        disabled_optimizers=settings["disabled_optimizers"],
    )


class OnnxRunner:
    """An onnxruntime CPU session (see ``create_session``), fed only the inputs the graph declares."""

    def __init__(
        self, name: str, path: str | Path, *, threads: int = 1, disabled_optimizers: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.session = create_session(path, threads=threads, disabled_optimizers=disabled_optimizers)
        self.input_names = [item.name for item in self.session.get_inputs()]

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: inputs[name].astype(np.int64) for name in self.input_names}
        return self.session.run(None, feeds)[0]
