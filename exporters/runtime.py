"""Running a classifier and timing it: PyTorch or onnxruntime runners (numpy inputs in, logits out) and
batch-1 timing of each runner on its own, in rounds, so every latency in the project is measured one way."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from attr_compress.compressor.progress import progress_bar


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


def create_session(path: str | Path, *, threads: int = 1) -> Any:
    """An onnxruntime CPU session with a fixed thread count (0: onnxruntime's own choice, as in a default
    session), otherwise as a default session builds it (every graph optimisation on): the shipped graphs need
    no session flags."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def default_session_operators(path: str | Path) -> dict[str, int]:
    """Operator counts of the graph a default onnxruntime session runs for ``path`` (after its own fusions):
    what users get from ``InferenceSession(path)`` or Optimum's ORTModel, whatever the file holds."""
    import tempfile
    from collections import Counter

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="attr-compress-session-") as scratch:
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    return dict(sorted(Counter(node.op_type for node in graph.node).items()))


def load_session(onnx_dir: str | Path, *, threads: int | None = None) -> Any:
    """The shipped int8 graph of an attr-compress ONNX folder with the session settings chosen for it
    (``runtime.json``): the way to run the folder outside attr-compress."""
    from attr_compress.compressor.artifacts import read_json

    folder = Path(onnx_dir)
    settings = read_json(folder / RUNTIME_FILE, "re-run the export")
    return create_session(
        folder / settings["file"],
        threads=threads or settings["intra_op_num_threads"],
    )


class OnnxRunner:
    """An onnxruntime CPU session (see ``create_session``), fed only the inputs the graph declares."""

    def __init__(self, name: str, path: str | Path, *, threads: int = 1) -> None:
        self.name = name
        self.path = Path(path)
        self.session = create_session(path, threads=threads)
        self.input_names = [item.name for item in self.session.get_inputs()]

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feeds = {name: inputs[name].astype(np.int64) for name in self.input_names}
        return self.session.run(None, feeds)[0]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Pin PyTorch's intra-op threads for the measurement (0: leave PyTorch's default), then restore them."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def batch1_latency(
    runners: Sequence[Runner],
    singles: Sequence[dict[str, np.ndarray]],
    *,
    warmup: int = 10,
    rounds: int = 1,
    progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """p50/p90 batch-1 latency per runner, each runner timed on its own: every example in turn after ``warmup``
    untimed ones (at most half), as a deployed session runs, one runner after the other, ``rounds`` times with
    the order reversed every other round so drift in the machine's load touches all alike. Interleaving runners
    example by example, as we once did, slowed small graphs more than large ones (the other sessions' threads
    still spinning): 3.0x measured that way against 3.3-3.6x one block at a time, on the demo model.

    Also per runner: ``round_p50_ms`` (each round's median), for ratios paired round by round. Call it inside
    ``torch_threads`` to fix PyTorch's thread count."""
    skip = min(warmup, len(singles) // 2)
    times = {runner.name: np.zeros((rounds, len(singles) - skip)) for runner in runners}
    bar = progress_bar(total=rounds * len(runners) * len(singles), desc="latency", unit="ex", enabled=progress)
    for round_index in range(rounds):
        for runner in runners if round_index % 2 == 0 else list(reversed(runners)):
            for index, inputs in enumerate(singles):
                started = time.perf_counter()
                runner.logits(inputs)
                if index >= skip:
                    times[runner.name][round_index, index - skip] = (time.perf_counter() - started) * 1000
            bar.update(len(singles))
    bar.close()
    return {
        name: {
            "latency_p50_ms": float(np.median(np.median(samples, axis=1))),
            "latency_p90_ms": float(np.median(np.percentile(samples, 90, axis=1))),
            "latency_examples": int(samples.shape[1]),
            "round_p50_ms": [float(value) for value in np.median(samples, axis=1)],
        }
        for name, samples in times.items()
    }
