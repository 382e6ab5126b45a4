"""The one calibration loop every scorer runs: this process's share of the examples (torchrun ranks split them),
in batches of similar length within a token budget, encoded, with the progress bar advanced after each; and the
rounds that stop once the ranking has settled. Scorers add up their own statistics and all-reduce them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.models.loading import LoadedModel, encode, max_length, token_lengths
from attr_compress.compressor.scoring.distributed import local_items


def calibration_batches(
    loaded: LoadedModel, examples: Sequence[Example], token_budget: int, bar: Any
) -> Iterator[tuple[list[Example], dict[str, torch.Tensor]]]:
    """(examples, encoded inputs) for this process's share of ``examples``, batched by length within
    ``token_budget`` tokens; ``bar`` advances by each batch once its caller has used it."""
    for batch in length_batches(loaded, local_items(examples), token_budget):
        yield batch, encode(loaded, batch)
        bar.update(len(batch))


PADDING_SLACK = 1.25  # a batch's longest example is at most this much (plus 2 tokens) longer than its shortest


def length_batches(loaded: LoadedModel, examples: Sequence[Example], token_budget: int) -> Iterator[list[Example]]:
    """Group examples of similar length so padding stays small: a batch holds at most ``token_budget`` tokens
    and its longest example at most PADDING_SLACK times its shortest (padded tokens cost as much as real ones;
    on the demo model 48 examples in one batch ran 2x slower than in batches of like length)."""
    limit = max_length(loaded)
    lengths = [min(length, limit) for length in token_lengths(loaded, examples)]
    order = sorted(range(len(examples)), key=lambda i: (lengths[i], i))
    batch: list[Example] = []
    shortest = 0
    for index in order:
        length = lengths[index]
        too_long = length > PADDING_SLACK * shortest + 2
        if batch and (length * (len(batch) + 1) > token_budget or too_long):
            yield batch
            batch = []
        if not batch:
            shortest = length
        batch.append(examples[index])
    if batch:
        yield batch


def real_token_pairs(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, 1, n, n] mask of (query, key) pairs where both tokens are real (not padding)."""
    real = attention_mask.bool()
    return (real[:, :, None] & real[:, None, :])[:, None]


SETTLE_ROUND = 32  # calibration examples scored between two looks at the ranking
SETTLE_MINIMUM = 64  # never stop before this many examples


def until_settled(
    examples: Sequence[Example],
    seed: int,
    score_round: Callable[[list[Example]], np.ndarray],
    settle: float,
    comparable: Callable[[np.ndarray], np.ndarray] = lambda total: total,
) -> tuple[np.ndarray, int]:
    """The sum of ``score_round`` over rounds of SETTLE_ROUND examples (in a seeded order), and how many examples
    it took: scoring stops once two consecutive running sums rank the units alike (Spearman of ``comparable``
    at least ``settle``, from SETTLE_MINIMUM examples on); ``settle`` 0 scores every example. The stop depends on
    the data and the seed only, so a repeated run stops at the same example."""
    from scipy import stats

    order = np.random.default_rng(seed).permutation(len(examples))
    total, previous, used = None, None, 0
    for start in range(0, len(examples), SETTLE_ROUND):
        part = [examples[int(index)] for index in order[start : start + SETTLE_ROUND]]
        values = score_round(part)
        total = values if total is None else total + values
        used += len(part)
        current = comparable(total).ravel()
        settled = settle and previous is not None and used >= SETTLE_MINIMUM
        if settled and float(stats.spearmanr(previous, current).statistic) >= settle:
            break
        previous = current
    return total, used
