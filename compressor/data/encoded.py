"""Tokenise evaluation data once, so every variant is timed on the same model inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from attr_compress.compressor.data.files import Example, LabelledData
from attr_compress.compressor.models.loading import LoadedModel, count_truncated, encode, split_texts, token_lengths


@dataclass(frozen=True)
class EncodedData:
    """Padded batches (accuracy, throughput) and unpadded single examples (batch-1 latency)."""

    labels: np.ndarray
    batches: list[dict[str, np.ndarray]]
    singles: list[dict[str, np.ndarray]]
    truncated: int
    is_pair: bool


def encode_data(
    loaded: LoadedModel, data: LabelledData, *, batch_size: int = 32, singles: int = 200, by_length: bool = False
) -> EncodedData:
    """Encode ``data`` in file order (``by_length``: sorted by token count, so batches carry little padding, for
    rows only ever compared model against model); the first ``singles`` examples also go in one by one."""
    examples = data.examples
    if by_length:
        lengths = token_lengths(loaded, examples)
        examples = tuple(examples[index] for index in sorted(range(len(examples)), key=lambda i: (lengths[i], i)))

    def encode_numpy(part: Sequence[Example]) -> dict[str, np.ndarray]:
        return {key: value.astype(np.int64) for key, value in encode(loaded, part, return_tensors="np").items()}

    return EncodedData(
        labels=np.array([e.label for e in examples], dtype=np.int64),
        batches=[encode_numpy(examples[i : i + batch_size]) for i in range(0, len(examples), batch_size)],
        singles=[encode_numpy(examples[i : i + 1]) for i in range(min(singles, len(examples)))],
        truncated=count_truncated(loaded, examples),
        is_pair=split_texts(examples)[1] is not None,
    )


def parity_batches(encoded: EncodedData) -> list[dict[str, np.ndarray]]:
    """Real inputs at shapes the export never saw: one example, three, and a full padded batch."""
    first = encoded.batches[0]
    batches = [encoded.singles[0], {key: value[:3] for key, value in first.items()}, encoded.batches[-1]]
    return [batch for batch in batches if batch["input_ids"].shape[0] > 0]
