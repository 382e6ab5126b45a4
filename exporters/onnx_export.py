"""Export a (pruned) Hugging Face classifier folder to ONNX with Optimum."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compressor.errors import VerificationError

ONNX_FP32 = "model.onnx"
ONNX_OPTIMIZED = "model_optimized.onnx"
ONNX_INT8 = "model_quantized.onnx"


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters' tracer warnings and the optimiser's log chatter; our checks report what matters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def export_onnx(model_dir: str | Path, onnx_dir: str | Path, *, opset: int | None = None) -> Path:
    """Optimum's exporter writes model.onnx plus the config and tokenizer files ORTModel needs to load it.

    Optimum's own validation is skipped: our parity gate checks the same logits on real inputs.
    """
    from optimum.exporters.onnx import main_export

    try:
        with quiet():
            main_export(
                str(model_dir),
                str(onnx_dir),
                task="text-classification",
                opset=opset,
                do_validation=False,
                local_files_only=True,
                trust_remote_code=False,
            )
    except (RuntimeError, ValueError, OSError) as err:
        raise VerificationError(f"ONNX export of '{model_dir}' failed: {str(err).splitlines()[0]}") from err
    path = Path(onnx_dir) / ONNX_FP32
    if not path.is_file():
        raise VerificationError(f"ONNX export wrote no {ONNX_FP32} in '{onnx_dir}'")
    return path
