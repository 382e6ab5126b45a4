"""The text a distillation reads: the training file streamed pass after pass through a seeded shuffle buffer,
rows kept to follow the served lengths, later passes augmented, cut into batches of like length."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from attr_compress.compressor.cache import file_digest
from attr_compress.compressor.data.files import stream_examples
from attr_compress.compressor.data.lengths import CHUNK, LengthMatch, chunked
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import LoadedModel, encode, token_lengths
from attr_compress.compressor.recovery.augment import WordReplacement

SHUFFLE_BUFFER = 8192
LENGTH_GROUP = 50  # batches whose examples are sorted by length together: little padding, still shuffled


@dataclass(frozen=True)
class TrainingText:
    """Where distillation reads its text: a labelled file (labels unused) of ``rows`` rows and the columns,
    tokenised by ``loaded``; rows whose content is in ``held_out`` (the slice that judges candidates) are never
    trained on; with ``match``, rows are kept at random so that their token lengths follow the served rows'."""

    loaded: LoadedModel
    path: str
    rows: int
    columns: dict[str, str | None] = field(default_factory=dict)
    held_out: frozenset[tuple[str, str | None]] = frozenset()
    match: LengthMatch | None = None

    def cache_identity(self) -> tuple[Any, ...]:
        """The file's content (not its name), the columns read, the rows left out, the tokenizer, the lengths."""
        held_out = hashlib.sha256(json.dumps(sorted(self.held_out, key=repr)).encode()).hexdigest()
        return file_digest(self.path), self.columns, held_out, self.loaded.identity.tokenizer, self.match

    @property
    def training_rows(self) -> int:
        return max(1, self.rows - len(self.held_out))

    @property
    def rows_per_pass(self) -> float:
        """The rows one pass over the file trains on (with ``match``, the share its acceptance keeps)."""
        return self.training_rows * (1.0 if self.match is None else self.match.kept_share)

    def mean_tokens(self) -> float:
        """The mean token count of a training row: the served rows' with ``match``, else the file's first rows'."""
        if self.match is not None:
            return self.match.served_lengths[0]
        first = list(itertools.islice(stream_examples(self.path, self.loaded.label2id, **self.columns), CHUNK))
        return float(np.mean(token_lengths(self.loaded, first))) if first else 1.0


def training_batches(
    text: TrainingText, batch_size: int, seed: int, augment: float = 0.0
) -> Iterator[dict[str, torch.Tensor]]:
    """Tokenised batches of the file's examples (less the held-out ones; with ``text.match`` kept at random to
    follow the served lengths), shuffled within a seeded buffer, pass after pass, every batch full (a pass's last
    rows join the next pass's first, so no process of a torchrun share is ever handed an empty batch). Each run
    of LENGTH_GROUP batches is cut from examples sorted by length and served in random order, so batches carry
    little padding. Rows read from the second pass on have ``augment`` of their whole words replaced by
    neighbours (``WordReplacement``): each pass then reads new text."""
    loaded = text.loaded
    replacement = WordReplacement(loaded, augment) if augment > 0 else None
    examples, rng, words = (
        _passes(text, seed),
        np.random.default_rng([seed, 1 << 20]),
        np.random.default_rng([seed, 1 << 21]),
    )
    while True:
        group = list(itertools.islice(examples, batch_size * LENGTH_GROUP))
        lengths = token_lengths(loaded, [example for example, _ in group])
        ordered = [group[index] for index in np.argsort(lengths, kind="stable")]
        batches = [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]
        for index in rng.permutation(len(batches)):
            batch = dict(encode(loaded, [example for example, _ in batches[index]]))
            later = np.array([epoch > 0 for _, epoch in batches[index]])
            yield replacement.replace(batch, words, later) if replacement is not None and later.any() else batch


def _passes(text: TrainingText, seed: int) -> Iterator[tuple[Example, int]]:
    """Every training row with the pass it is read in, pass after pass, each pass in a new seeded order."""
    for epoch in itertools.count():
        rows = (row for row in stream_examples(text.path, text.loaded.label2id, **text.columns))
        rows = (row for row in rows if row.content not in text.held_out)
        if text.match is not None:
            rows = _accepted(rows, text, np.random.default_rng([seed, epoch, 1]))
        read = 0
        for example in _shuffled(rows, np.random.default_rng([seed, epoch])):
            read += 1
            yield example, epoch
        if not read and epoch > 0:
            raise InputError(f"no row of '{text.path}' is left to distil on (all held out or of no served length)")


def _accepted(rows: Iterator[Example], text: TrainingText, rng: np.random.Generator) -> Iterator[Example]:
    """The rows a seeded draw keeps with their length's acceptance (``LengthMatch.acceptance``)."""
    for chunk in chunked(rows):
        keep = rng.random(len(chunk)) < text.match.acceptance(token_lengths(text.loaded, chunk))
        yield from (row for row, kept in zip(chunk, keep, strict=True) if kept)


def _shuffled(examples: Iterator[Example], rng: np.random.Generator) -> Iterator[Example]:
    """A seeded buffer shuffle: each example leaves the buffer at a random position once it is full."""
    buffer: list[Example] = []
    for example in examples:
        if len(buffer) < SHUFFLE_BUFFER:
            buffer.append(example)
            continue
        index = int(rng.integers(len(buffer)))
        buffer[index], example = example, buffer[index]
        yield example
    rng.shuffle(buffer)
    yield from buffer
