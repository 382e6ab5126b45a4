"""Labelled data files (GLUE TSV, CSV, JSON Lines) loaded whole, sampled or streamed as examples a classifier
can score, and GLUE splits found by task name.

Everything a user can get wrong here (path, encoding, columns, labels, malformed rows) is reported as
a one-line :class:`~compressor.errors.InputError` that names the file and, where it applies, the row,
so the CLI can print it and exit 2 instead of showing a traceback from ``csv`` or ``json``.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np
from attr_compress.compressor.data.lengths import chunked
from attr_compress.compressor.data.reading import ExampleStream
from attr_compress.compressor.data.rows import Example, LabelledData


def load_labelled_data(
    path: str | Path,
    label2id: dict[str, int],
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> LabelledData:
    """Load a labelled TSV/CSV/JSONL file, mapping labels to the model's ids.

    Columns are detected from well-known GLUE headers unless given explicitly. Raises
    :class:`InputError` (one line, naming the file and row) for anything wrong with the input.
    """
    stream = ExampleStream(
        path, label2id, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )
    examples = tuple(stream)
    return stream.labelled(examples)


def sample_labelled_data(
    path: str | Path,
    label2id: dict[str, int],
    n: int,
    seed: int,
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    exclude: AbstractSet[tuple[str, str | None]] = frozenset(),
) -> tuple[LabelledData, int]:
    """A seeded random sample of n rows (all rows if the file has n or fewer), read in one streaming pass, and the
    total number of data rows in the file. Memory is O(n), not O(file). Rows whose content is in ``exclude``
    (``Example.content``) are never drawn, but counted.

    Every row is parsed and validated exactly as :func:`load_labelled_data` does, so a file that the full loader
    rejects raises the same :class:`InputError` here. The sample is drawn by reservoir sampling (Algorithm R)
    driven by ``numpy.random.default_rng(seed)``: deterministic for a seed, returned in file order.
    """
    if n < 1:
        raise ValueError(f"sample size must be >= 1, got {n}")
    stream = ExampleStream(
        path, label2id, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )
    reservoir = _Reservoir(n, seed)
    for example in stream:
        if example.content not in exclude:
            reservoir.add(example)
    return stream.labelled(reservoir.in_file_order()), stream.count


def hashed_sample(
    path: str | Path,
    label2id: dict[str, int],
    n: int,
    seed: int,
    *,
    at_most: Callable[[int], int] | None = None,
    weights: Callable[[list[Example]], np.ndarray] | None = None,
    exclude: AbstractSet[tuple[str, str | None]] = frozenset(),
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> tuple[LabelledData, int]:
    """The n rows (at most ``at_most(rows in the file)``) whose content hashes lowest under ``seed``, in
    file order, in one pass; and the file's row count. Chosen by content, so copies of a row are taken or left
    together and a run never trains on the twin of a row it judges with. With ``weights`` (of a chunk of rows)
    the sample is weighted (Efraimidis and Spirakis 2006: the n lowest ``-log(u) / w``, u from the hash; rows of
    weight 0 are never drawn); rows whose content is in ``exclude`` are never drawn, but counted."""
    stream = ExampleStream(
        path, label2id, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )
    lowest: list[tuple[float, int, Example]] = []  # a max-heap of the n lowest (negated key, -row)
    for chunk in chunked(example for example in stream if example.content not in exclude):
        chunk_weights = np.ones(len(chunk)) if weights is None else weights(chunk)
        for example, weight in zip(chunk, chunk_weights, strict=True):
            if weight <= 0:
                continue
            digest = hashlib.blake2b(repr((seed, example.content)).encode(), digest_size=8).digest()
            key = -math.log1p(-(int.from_bytes(digest, "big") + 0.5) / 2**64) / weight  # lowest hash: lowest key
            if len(lowest) < n:
                heapq.heappush(lowest, (-key, -example.row, example))
            elif -key > lowest[0][0]:
                heapq.heapreplace(lowest, (-key, -example.row, example))
    kept = sorted(lowest, reverse=True)[: n if at_most is None else min(n, at_most(stream.count))]
    return stream.labelled(tuple(sorted((item[2] for item in kept), key=lambda e: e.row))), stream.count


def stream_examples(
    path: str | Path,
    label2id: dict[str, int],
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> Iterator[Example]:
    """The validated examples of a data file, one at a time, in file order: a file of any size in O(1) memory."""
    yield from ExampleStream(
        path, label2id, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )


def find_glue_split(task: str, split: str, glue_dir: str | Path | None) -> Path | None:
    """Find ``<glue_dir>/<Task>/<split>.tsv`` for a config's ``finetuning_task`` ("sst2" -> SST-2).

    Returns None instead of raising when nothing matches, so callers can fall back to asking for --data.
    """
    if split not in ("dev", "train"):
        raise ValueError(f"split must be 'dev' or 'train', got {split!r}")
    if glue_dir is None:
        return None
    wanted = _normalise_name(task)
    if not wanted:
        return None
    root = Path(glue_dir).expanduser()
    try:
        folders = sorted(child for child in root.iterdir() if child.is_dir())
    except OSError:
        return None
    for folder in folders:
        if _normalise_name(folder.name) == wanted:
            candidate = folder / f"{split}.tsv"
            if candidate.is_file():
                return candidate
    return None


def _normalise_name(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())


class _Reservoir:
    """Algorithm R: after k items, each is held with probability n/k. Random draws come in seeded blocks."""

    _BLOCK = 1024

    def __init__(self, n: int, seed: int) -> None:
        self._n = n
        self._rng = np.random.default_rng(seed)
        self._items: list[tuple[int, Example]] = []
        self._seen = 0
        self._draws: list[int] = []
        self._draws_start = 0

    def add(self, item: Example) -> None:
        index = self._seen
        self._seen += 1
        if index < self._n:
            self._items.append((index, item))
            return
        offset = index - self._draws_start
        if offset >= len(self._draws):
            # draws[k] is uniform on [0, index + k], the slot for the item at position index + k
            self._draws = self._rng.integers(0, np.arange(index + 1, index + 1 + self._BLOCK)).tolist()
            self._draws_start, offset = index, 0
        slot = self._draws[offset]
        if slot < self._n:
            self._items[slot] = (index, item)

    def in_file_order(self) -> tuple[Example, ...]:
        return tuple(item for _, item in sorted(self._items, key=lambda pair: pair[0]))
