"""Text like what will be served: the token-length distribution of the ``--data`` rows (their text only, never
their labels), and the weights that make a sample of other text (``--calib``) follow it.

A calibration file is often unlike live traffic: SST-2's training file is mostly phrases (mean 9.4 words, a
quarter of 1-3 words), its dev and test files sentences (mean 19.5). A judge or a distillation stream drawn
uniformly from it chooses for phrases. Here the served lengths are cut into quantile bins; a calibration row in
bin b weighs ``served[b] / available[b]``, so a weighted sample's lengths follow the served ones bin by bin.
Lengths below the shortest served row form a bin of their own with no served share: never drawn.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from attr_compress.compressor.data.rows import Example

Lengths = Callable[[Sequence[Example]], Sequence[int]]  # token counts of examples, as the model's tokenizer counts
CHUNK = 2048  # examples tokenised together when a file is streamed
ROWS_PER_BIN = 40  # served rows per quantile bin, at least (4 to 20 bins)


@dataclass(frozen=True)
class LengthMatch:
    """Bins of token length (bin i holds lengths in ``(edges[i-1], edges[i]]``, the last bin is open), the served
    rows' share in each and the available text's share in each."""

    edges: tuple[int, ...]
    served: tuple[float, ...]
    available: tuple[float, ...]
    served_lengths: tuple[float, float, float, float]  # mean, quartiles of the served rows
    available_lengths: tuple[float, float, float, float]  # the same of the available text

    @classmethod
    def between(cls, served: Sequence[int], available: Sequence[int]) -> LengthMatch:
        served_array, available_array = np.asarray(served), np.asarray(available)
        bins = int(np.clip(len(served_array) // ROWS_PER_BIN, 4, 20))
        quantiles = np.quantile(served_array, np.arange(1, bins) / bins, method="lower").astype(int)
        edges = tuple(sorted({int(served_array.min()) - 1, *quantiles.tolist()}))
        return cls(
            edges,
            tuple(_shares(served_array, edges)),
            tuple(_shares(available_array, edges)),
            describe_lengths(served_array),
            describe_lengths(available_array),
        )

    def bins(self, lengths: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.edges), np.asarray(lengths), side="left")

    @property
    def bin_weights(self) -> np.ndarray:
        """Each bin's weight: its served share over its available share (0 where nothing is served or available)."""
        served, available = np.asarray(self.served), np.asarray(self.available)
        return np.divide(served, available, out=np.zeros_like(served), where=available > 0)

    def weights(self, lengths: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.bin_weights[self.bins(lengths)]

    def acceptance(self, lengths: Sequence[int] | np.ndarray) -> np.ndarray:
        """The probability of keeping each row of a stream so that the kept rows follow the served lengths."""
        return self.weights(lengths) / max(float(self.bin_weights.max()), 1e-12)

    def weigher(self, by_row: Mapping[int, int]) -> Callable[[Sequence[Example]], np.ndarray]:
        """The weights of a chunk of a file's examples, from their lengths by row number (``length_match``)."""
        return lambda chunk: self.weights([by_row[example.row] for example in chunk])

    @property
    def kept_share(self) -> float:
        """The share of the available rows a pass of ``acceptance`` keeps, on average."""
        return float(np.dot(self.available, self.bin_weights) / max(float(self.bin_weights.max()), 1e-12))

    @property
    def covered(self) -> float:
        """The share of the served rows whose length bin the available text has rows in (1: fully matched)."""
        return float(sum(s for s, a in zip(self.served, self.available, strict=True) if a > 0))

    def summary(self) -> dict[str, Any]:
        return {
            "served_mean_tokens": self.served_lengths[0],
            "served_quartiles": list(self.served_lengths[1:]),
            "calibration_mean_tokens": self.available_lengths[0],
            "calibration_quartiles": list(self.available_lengths[1:]),
            "covered": self.covered,
        }


def _shares(lengths: np.ndarray, edges: tuple[int, ...]) -> np.ndarray:
    counts = np.bincount(np.searchsorted(np.asarray(edges), lengths, side="left"), minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


def describe_lengths(lengths: Sequence[int] | np.ndarray) -> tuple[float, float, float, float]:
    """(mean, first quartile, median, third quartile) of token lengths; zeros for none."""
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    q1, q2, q3 = np.quantile(lengths, (0.25, 0.5, 0.75))
    return float(lengths.mean()), float(q1), float(q2), float(q3)


def chunked(examples: Iterable[Example], size: int = CHUNK) -> Iterator[list[Example]]:
    iterator = iter(examples)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def measured(examples: Iterable[Example], lengths: Lengths) -> Iterator[tuple[Example, int]]:
    """Each example with its token count, tokenised ``CHUNK`` at a time (a file of any size, bounded memory)."""
    for chunk in chunked(examples):
        yield from zip(chunk, lengths(chunk), strict=True)
