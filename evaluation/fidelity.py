"""How close a compressed model stays to the original, and how sure we can be of it.

Two signals, both comparing the same rows through both models (paired), so the noise of which rows happened to
be drawn cancels:
- fidelity on a large unlabelled slice of task text: how often the candidate's prediction differs from the
  original's (with an exact Clopper-Pearson interval) and the mean KL divergence of its class distribution
  from the original's;
- the labelled drop in accuracy: only the rows where exactly one of the two models is right carry information
  (``lost``: the original right, the candidate wrong; ``gained``: the reverse). Its interval is Newcombe's
  hybrid score interval for a difference of paired proportions (Newcombe 1998, method 10), which keeps its
  coverage with few discordant rows and gives no zero-width interval when there are none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from attr_compress.compressor.data.encoded import EncodedData
from attr_compress.exporters.runtime import Runner
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    method: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def clopper_pearson(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact binomial interval for a proportion."""
    tail = (1 - level) / 2
    low = 0.0 if successes == 0 else float(stats.beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def wilson(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    z = float(stats.norm.ppf(1 - (1 - level) / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Fidelity:
    """A candidate against the original on unlabelled rows: disagreements and the mean KL(original || candidate)
    of the class distributions, in nats."""

    rows: int
    disagreements: int
    kl: float

    @property
    def disagreement(self) -> float:
        return self.disagreements / self.rows

    def interval(self, level: float = LEVEL) -> Interval:
        low, high = clopper_pearson(self.disagreements, self.rows, level)
        return Interval(low, high, level, "exact binomial (Clopper-Pearson)")


@dataclass(frozen=True)
class PairedDrop:
    """A candidate against the original on the same labelled rows. ``drop_points`` > 0 means the candidate is
    less accurate."""

    rows: int
    original_correct: int
    candidate_correct: int
    lost: int  # the original right, the candidate wrong
    gained: int  # the original wrong, the candidate right
    changed: int | None = None  # rows whose predicted class differs (None: lost + gained, as with two classes)

    @property
    def changed_rows(self) -> int:
        """How many rows' predicted class differs."""
        return self.lost + self.gained if self.changed is None else self.changed

    @property
    def disagreement(self) -> float:
        """How often the candidate's class differs from the original's on these rows."""
        return self.changed_rows / self.rows

    @property
    def drop_points(self) -> float:
        return 100 * (self.lost - self.gained) / self.rows

    def interval(self, level: float = LEVEL) -> Interval:
        """Newcombe's method 10 for the paired difference, in accuracy points (original minus candidate)."""
        n = self.rows
        both_right = self.original_correct - self.lost
        both_wrong = n - both_right - self.lost - self.gained
        p1, p2 = self.original_correct / n, self.candidate_correct / n
        l1, u1 = wilson(self.original_correct, n, level)
        l2, u2 = wilson(self.candidate_correct, n, level)
        margins = [
            self.original_correct,
            n - self.original_correct,
            self.candidate_correct,
            n - self.candidate_correct,
        ]
        product = math.prod(margins)
        phi = 0.0 if product == 0 else (both_right * both_wrong - self.lost * self.gained) / math.sqrt(product)
        difference = p1 - p2
        below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
        above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
        return Interval(
            100 * (difference - below), 100 * (difference + above), level, "Newcombe hybrid score, paired (method 10)"
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponent = np.exp(shifted)
    return exponent / exponent.sum(axis=-1, keepdims=True)


def fidelity(reference: np.ndarray, candidate: np.ndarray) -> Fidelity:
    """Compare two models' logits on the same rows."""
    p, q = softmax(reference.astype(np.float64)), softmax(candidate.astype(np.float64))
    kl = float(np.mean(np.sum(p * (np.log(np.clip(p, 1e-12, None)) - np.log(np.clip(q, 1e-12, None))), axis=-1)))
    disagreements = int(np.sum(reference.argmax(-1) != candidate.argmax(-1)))
    return Fidelity(rows=len(reference), disagreements=disagreements, kl=kl)


def paired_drop(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> PairedDrop:
    """Compare two models' predicted classes on the same labelled rows."""
    original_right = reference == labels
    candidate_right = candidate == labels
    return PairedDrop(
        rows=len(labels),
        original_correct=int(original_right.sum()),
        candidate_correct=int(candidate_right.sum()),
        lost=int((original_right & ~candidate_right).sum()),
        gained=int((~original_right & candidate_right).sum()),
        changed=int((reference != candidate).sum()),
    )


def all_logits(runner: Runner, data: EncodedData) -> np.ndarray:
    return np.concatenate([runner.logits(batch) for batch in data.batches]) if data.batches else np.zeros((0, 2))


@dataclass(frozen=True)
class Judgement:
    """A candidate judged against the original: on the unlabelled slice and on the labelled choosing rows."""

    fidelity: Fidelity
    selection: PairedDrop

    @property
    def key(self) -> tuple[float, float]:
        """Smaller is better: disagreement with the original first, then its KL divergence."""
        return self.fidelity.disagreement, self.fidelity.kl

    @property
    def summary(self) -> dict[str, float]:
        return {
            "disagreement": self.fidelity.disagreement,
            "kl": self.fidelity.kl,
            "selection_drop_points": self.selection.drop_points,
        }


class Judge:
    """The original's outputs on the fidelity slice and the selection rows, computed once; ``judge`` compares a
    candidate with them."""

    def __init__(self, original: Runner | None, fidelity_rows: EncodedData, selection: EncodedData) -> None:
        self.fidelity_rows, self.selection = fidelity_rows, selection
        if original is not None:
            self.fidelity_reference = all_logits(original, fidelity_rows)
            self.selection_reference = all_logits(original, selection)

    def subset(self, rows: int) -> Judge:
        """The same judge on about ``rows`` fidelity rows (for cheap rankings): whole batches spread evenly over
        the slice, so a slice sorted by length keeps its long rows as well as its short ones."""
        sizes = [len(batch["input_ids"]) for batch in self.fidelity_rows.batches]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        wanted = min(len(sizes), max(1, math.ceil(len(sizes) * rows / max(1, starts[-1]))))
        chosen = np.unique(np.linspace(0, len(sizes) - 1, wanted).round().astype(int)) if sizes else []
        rows_of = [np.arange(starts[index], starts[index + 1]) for index in chosen]
        taken = np.concatenate(rows_of) if rows_of else np.zeros(0, dtype=int)
        batches = [self.fidelity_rows.batches[index] for index in chosen]
        part = Judge(
            None, replace(self.fidelity_rows, batches=batches, labels=self.fidelity_rows.labels[taken]), self.selection
        )
        part.fidelity_reference, part.selection_reference = self.fidelity_reference[taken], self.selection_reference
        return part

    @property
    def rows(self) -> int:
        return len(self.fidelity_reference)

    def cache_identity(self) -> tuple[EncodedData, EncodedData]:
        """The rows it judges on (the original, which its references come from, is keyed separately)."""
        return self.fidelity_rows, self.selection

    def judge(self, candidate: Runner) -> Judgement:
        return Judgement(
            fidelity(self.fidelity_reference, all_logits(candidate, self.fidelity_rows)),
            paired_drop(
                self.selection_reference.argmax(-1),
                all_logits(candidate, self.selection).argmax(-1),
                self.selection.labels,
            ),
        )
