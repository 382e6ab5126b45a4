"""Labelled rows as every stage takes them: one ``Example`` per row, a ``LabelledData`` per file read."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Example:
    """One labelled input; ``row`` is kept so later errors and reports can point back at the file."""

    text: str
    text_pair: str | None
    label: int  # the model's label id
    row: int  # 1-based data row number (header excluded); the line number for JSON Lines

    @property
    def content(self) -> tuple[str, str | None]:
        """What the model reads, compared loosely (case, spacing) to find the same row in two places."""
        return " ".join(self.text.casefold().split()), self.text_pair and " ".join(self.text_pair.casefold().split())


@dataclass(frozen=True)
class LabelledData:
    """A loaded data file plus the columns that were used, so reports can say what was evaluated."""

    path: str
    format: str  # "tsv" | "csv" | "jsonl"
    text_column: str
    text_pair_column: str | None
    label_column: str
    examples: tuple[Example, ...]

    def __len__(self) -> int:
        return len(self.examples)

    def cache_identity(self) -> str:
        """The rows' content in order (not the file's name): a one-byte change to a used row changes it."""
        rows = json.dumps([(e.text, e.text_pair, e.label) for e in self.examples])
        return hashlib.sha256(rows.encode()).hexdigest()

    def sample(self, n: int, seed: int) -> LabelledData:
        """Seeded sample of ``n`` rows without replacement, in file order, so runs are reproducible."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        if len(self.examples) <= n:
            return self
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(self.examples), size=n, replace=False))
        return replace(self, examples=tuple(self.examples[int(i)] for i in chosen))

    def split(self, n: int, seed: int) -> tuple[LabelledData, LabelledData]:
        """A seeded sample of ``n`` rows and the rows left, both in file order: data held apart to choose on."""
        if not 0 <= n <= len(self.examples):
            raise ValueError(f"split size must be in [0, {len(self.examples)}], got {n}")
        chosen = set(np.random.default_rng(seed).choice(len(self.examples), size=n, replace=False).tolist())
        picked = tuple(example for index, example in enumerate(self.examples) if index in chosen)
        rest = tuple(example for index, example in enumerate(self.examples) if index not in chosen)
        return replace(self, examples=picked), replace(self, examples=rest)

    def head(self, n: int) -> LabelledData:
        """The first ``n`` rows, for quick smoke runs that must not depend on a seed."""
        if n < 0:
            raise ValueError(f"head size must be >= 0, got {n}")
        return replace(self, examples=self.examples[:n])
