"""The parity gate: an exported graph must reproduce the PyTorch logits it came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from attr_compress.compressor.errors import VerificationError
from attr_compress.exporters.runtime import Runner


@dataclass(frozen=True)
class ParityResult:
    """Largest absolute logit difference over the checked batches, and whether it is within ``atol``."""

    candidate: str
    reference: str
    max_abs_diff: float
    atol: float
    batch_shapes: list[list[int]]

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff <= self.atol)

    def to_dict(self) -> dict:
        return {
            "candidate": self.candidate,
            "reference": self.reference,
            "max_abs_diff": self.max_abs_diff,
            "atol": self.atol,
            "batch_shapes": self.batch_shapes,
            "passed": self.passed,
        }


def compare_logits(
    reference: Runner, candidate: Runner, batches: Sequence[dict[str, np.ndarray]], *, atol: float = 1e-4
) -> ParityResult:
    """Run both on every batch (use batches of different sizes and lengths than the export used)."""
    worst = 0.0
    for batch in batches:
        expected = reference.logits(batch)
        actual = candidate.logits(batch)
        if expected.shape != actual.shape:
            raise VerificationError(
                f"{candidate.name} returned logits of shape {actual.shape}, expected {expected.shape}"
            )
        difference = float(np.max(np.abs(expected - actual)))
        worst = max(worst, difference if np.isfinite(difference) else float("inf"))
    shapes = [list(batch["input_ids"].shape) for batch in batches]
    return ParityResult(candidate.name, reference.name, worst, atol, shapes)


def require_parity(result: ParityResult) -> ParityResult:
    """Fail loudly: an export that does not match PyTorch must never be shipped."""
    if not result.passed:
        raise VerificationError(
            f"parity gate failed: {result.candidate} differs from {result.reference} by "
            f"{result.max_abs_diff:.3g} in the logits (allowed {result.atol:g})"
        )
    return result


def prediction_agreement(reference: Runner, candidate: Runner, batches: Sequence[dict[str, np.ndarray]]) -> float:
    """Fraction of examples where both predict the same class (int8 is not expected to match logits)."""
    same = total = 0
    for batch in batches:
        same += int(np.sum(reference.logits(batch).argmax(-1) == candidate.logits(batch).argmax(-1)))
        total += batch["input_ids"].shape[0]
    return same / total if total else float("nan")
