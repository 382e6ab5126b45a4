"""Accuracy with heads masked out: equal to structural pruning (tested), and cheap enough for sweeps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from attr_compress.compressor.data.encoded import EncodedData
from attr_compress.evaluation.metrics import classification_metrics


def masked_predictions(model: torch.nn.Module, encoded: EncodedData, head_mask: np.ndarray | None) -> np.ndarray:
    """Predicted classes with ``head_mask`` ([layers, heads], 1 keeps, 0 prunes) applied; eager attention."""
    mask = None if head_mask is None else torch.as_tensor(np.asarray(head_mask), dtype=torch.float32)
    with torch.inference_mode():
        return np.concatenate(
            [
                model(**{k: torch.from_numpy(v) for k, v in batch.items()}, head_mask=mask).logits.argmax(-1).numpy()
                for batch in encoded.batches
            ]
        )


def masked_metrics(
    model: torch.nn.Module, encoded: EncodedData, head_masks: Sequence[np.ndarray | None], *, with_f1: bool
) -> list[dict[str, float]]:
    return [
        classification_metrics(masked_predictions(model, encoded, mask), encoded.labels, with_f1=with_f1)
        for mask in head_masks
    ]
