"""Export a (pruned) Hugging Face classifier to ONNX with Optimum."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from attr_compress.compressor.errors import VerificationError
from attr_compress.compressor.models.families import family_of, with_attention
from attr_compress.compressor.models.loading import save_tokenizer
from attr_compress.compressor.pruning.prune import without_empty_blocks

ONNX_FP32 = "model.onnx"
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


def export_onnx(model: Any, tokenizer: Any, onnx_dir: str | Path, *, opset: int | None = None) -> Path:
    """Optimum's exporter, from the model in memory (pruned FFN layers keep their real widths), writes
    model.onnx plus the config and tokenizer files ORTModel needs to load it (the tokenizer's own files, byte
    for byte, when it was loaded from a folder).

    The graph is traced with the attention implementation whose graph onnxruntime fuses for the model's family
    (``Family.traced_attention``) and without the matrix products of emptied blocks (``without_empty_blocks``).
    Optimum's own validation is skipped: our parity gate checks the same logits on real inputs.
    """
    from optimum.exporters.onnx import onnx_export_from_model

    traced = without_empty_blocks(with_attention(model, family_of(model).traced_attention))
    try:
        with quiet():
            onnx_export_from_model(traced, str(onnx_dir), task="text-classification", opset=opset, do_validation=False)
    except OSError:
        raise  # the machine's fault (a full disk, a forbidden file): the command line says so in its own words
    except (RuntimeError, ValueError) as err:
        raise VerificationError(f"ONNX export failed: {str(err).splitlines()[0]}") from err
    save_tokenizer(tokenizer, onnx_dir)
    path = Path(onnx_dir) / ONNX_FP32
    if not path.is_file():
        raise VerificationError(f"ONNX export wrote no {ONNX_FP32} in '{onnx_dir}'")
    return path
