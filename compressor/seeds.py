"""Every seeded sample of a run derives from --seed here, by name, so no two samples share a random stream and
a reader finds the offsets in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Seeds:
    base: int

    @property
    def scoring(self) -> int:
        """The calibration examples that score heads and neurons (and the order they are scored in)."""
        return self.base

    @property
    def selection(self) -> int:
        """The labelled rows held apart from --data to choose on."""
        return self.base + 1

    @property
    def fit(self) -> int:
        """The calibration examples the least-squares refit fits on."""
        return self.base + 2

    @property
    def shared_pool(self) -> int:
        """Without a calibration file: the rows of --data that score and fit, apart from the measured ones."""
        return self.base + 3

    @property
    def fidelity(self) -> int:
        """The unlabelled slice of the calibration text that judges candidates (by content hash)."""
        return self.base + 4

    @property
    def distillation(self) -> int:
        """The order the distillation reads its text in, and its initial state."""
        return self.base
