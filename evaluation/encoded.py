"""Tokenise evaluation data once, so every variant is timed on the same model inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compressor.data import LabelledData
from compressor.modeling import LoadedModel, max_length


@dataclass(frozen=True)
class EncodedData:
    """Padded batches (accuracy, throughput) and unpadded single examples (batch-1 latency)."""

    labels: np.ndarray
    batches: list[dict[str, np.ndarray]]
    singles: list[dict[str, np.ndarray]]
    truncated: int
    is_pair: bool


def encode_data(loaded: LoadedModel, data: LabelledData, *, batch_size: int = 32, singles: int = 200) -> EncodedData:
    """Encode ``data`` in file order; the first ``singles`` examples also go in one by one for latency."""
    texts = [e.text for e in data.examples]
    is_pair = any(e.text_pair is not None for e in data.examples)
    pairs = [e.text_pair or "" for e in data.examples] if is_pair else None
    limit = max_length(loaded)
    full = loaded.tokenizer(texts, pairs, truncation=False)["input_ids"]
    truncated = sum(len(ids) > limit for ids in full)

    def encode(start: int, stop: int) -> dict[str, np.ndarray]:
        encoded = loaded.tokenizer(
            texts[start:stop],
            pairs[start:stop] if pairs else None,
            padding=True,
            truncation=True,
            max_length=limit,
            return_tensors="np",
        )
        return {key: value.astype(np.int64) for key, value in encoded.items()}

    return EncodedData(
        labels=np.array([e.label for e in data.examples], dtype=np.int64),
        batches=[encode(i, i + batch_size) for i in range(0, len(texts), batch_size)],
        singles=[encode(i, i + 1) for i in range(min(singles, len(texts)))],
        truncated=truncated,
        is_pair=is_pair,
    )
