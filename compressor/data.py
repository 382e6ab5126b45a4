"""Labelled evaluation data (GLUE TSV, CSV, JSON Lines) turned into examples a classifier can score.

Everything a user can get wrong here (path, encoding, columns, labels, malformed rows) is reported as
a one-line :class:`~compressor.errors.InputError` that names the file and, where it applies, the row,
so the CLI can print it and exit 2 instead of showing a traceback from ``csv`` or ``json``.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import InputError

__all__ = [
    "Example",
    "LabelledData",
    "find_glue_split",
    "load_labelled_data",
    "sample_labelled_data",
    "stream_examples",
]

# Column schemas tried in order when no column option is given: (text, text pair, label).
_SCHEMAS: tuple[tuple[str, str | None, str], ...] = (
    ("sentence", None, "label"),  # SST-2, CoLA
    ("#1 String", "#2 String", "Quality"),  # MRPC
    ("sentence1", "sentence2", "label"),  # generic sentence pair (RTE, WNLI, STS-B style)
    ("question", "sentence", "label"),  # QNLI
    ("question1", "question2", "label"),  # QQP
    ("premise", "hypothesis", "label"),  # MNLI / SNLI style
    ("text", None, "label"),  # generic single text
)
_COLUMN_HINT = "pass --text-column/--text-pair-column/--label-column"
_INT_LITERAL = re.compile(r"[+-]?[0-9]{1,18}")
_JSON_SUFFIXES = (".jsonl", ".json")


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
    stream = _ExampleStream(
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
    stream = _ExampleStream(
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
    at_most: float = 1.0,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
) -> tuple[LabelledData, int]:
    """The n rows (at most the fraction ``at_most`` of the file) whose content hashes lowest under ``seed``, in
    file order, in one pass; and the file's row count. Chosen by content, so copies of a row are taken or left
    together and a run never trains on the twin of a row it judges with."""
    stream = _ExampleStream(
        path, label2id, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )
    lowest: list[tuple[int, int, Example]] = []  # a max-heap of the n lowest (negated hash, -row)
    for example in stream:
        key = int.from_bytes(hashlib.blake2b(repr((seed, example.content)).encode(), digest_size=8).digest(), "big")
        if len(lowest) < n:
            heapq.heappush(lowest, (-key, -example.row, example))
        elif -key > lowest[0][0]:
            heapq.heapreplace(lowest, (-key, -example.row, example))
    kept = sorted(lowest, reverse=True)[: min(n, int(stream.count * at_most))]
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
    yield from _ExampleStream(
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


# --------------------------------------------------------------------------- helpers


def _normalise_name(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())


def _quote(value: str, limit: int | None = None) -> str:
    """Quote a user-supplied string for a message, escaping newlines so the message stays one line."""
    if limit is not None and len(value) > limit:
        value = value[:limit] + "..."
    return repr(value)


class _ReadState:
    """What the line reader has seen so far, so deferred errors can be ranked the way a whole-file read ranks them."""

    def __init__(self) -> None:
        self.has_content = False  # a line with something other than whitespace was read
        self.failed = False  # the file could not be read or decoded: that error beats every other


class _ExampleStream:
    """The validated examples of one data file, in file order, read in a single streaming pass.

    This is the one row-parsing path shared by :func:`load_labelled_data` and :func:`sample_labelled_data`.
    Errors are ranked as if the whole file had been read first: an unreadable or non-UTF-8 line beats an empty
    file, which beats a malformed row (wrong field count, bad CSV quoting, invalid JSON), which beats a column
    option or detection problem, which beats a bad cell or label; "no data rows" comes last. Errors of a lower
    rank are held back while the rest of the file is still read, so a file with several problems reports the same
    one whichever function reads it. Examples are yielded only while no error is pending, and :attr:`count` is the
    number yielded; once iteration finishes without raising, the format and column attributes are set.
    """

    def __init__(
        self,
        path: str | Path,
        label2id: dict[str, int],
        *,
        text_column: str | None,
        text_pair_column: str | None,
        label_column: str | None,
    ) -> None:
        self.path = str(path)
        self._file = Path(path)
        self._shown = _quote(str(path))
        self._options = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
        self._label2id = label2id
        self._lookup = {str(k).strip(): int(v) for k, v in label2id.items()}
        self._valid_ids = set(self._lookup.values())
        self.format = ""
        self.text_column = ""
        self.text_pair_column: str | None = None
        self.label_column = ""
        self.count = 0

    def labelled(self, examples: tuple[Example, ...]) -> LabelledData:
        return LabelledData(
            path=self.path,
            format=self.format,
            text_column=self.text_column,
            text_pair_column=self.text_pair_column,
            label_column=self.label_column,
            examples=examples,
        )

    def __iter__(self) -> Iterator[Example]:
        shown = self._shown
        state = _ReadState()
        lines = _watch(_decoded_lines(self._file, shown), state)
        first = next(lines, None)
        if first is None:
            raise _empty_error(shown)
        self.format = fmt = self._detect_format(first)
        stream = itertools.chain([first], lines)
        columns: list[str] = []  # filled by the parser once the header (or first JSON object) is read
        records = (
            _jsonl_records(stream, shown, columns)
            if fmt == "jsonl"
            else _delimited_records(stream, shown, fmt, columns)
        )

        pending: InputError | None = None  # first column or cell error, raised only if nothing outranks it
        chosen = False
        while True:
            try:
                item = next(records, None)
            except InputError:
                if state.failed:
                    raise
                for _ in stream:  # a later unreadable line still outranks this malformed row
                    pass
                if not state.has_content:
                    raise _empty_error(shown) from None
                raise
            if item is None:
                break
            if pending is not None:
                continue
            row, record = item
            try:
                if not chosen:
                    self._choose(columns)
                    chosen = True
                example = self._example(row, record)
            except InputError as exc:
                pending = exc
                continue
            self.count += 1
            yield example

        if not state.has_content:
            raise _empty_error(shown)
        if pending is not None:
            raise pending
        if not chosen:
            self._choose(columns)
        if self.count == 0:
            raise InputError(f"data file {shown} has a header but no data rows; pass a file with labelled rows")

    def _detect_format(self, first_line: str) -> str:
        suffix = self._file.suffix.lower()
        if suffix in _JSON_SUFFIXES:
            return "jsonl"
        if suffix in (".tsv", ".csv"):
            return suffix[1:]
        head = first_line.splitlines()
        return "tsv" if head and "\t" in head[0] else "csv"

    def _choose(self, columns: list[str]) -> None:
        self.text_column, self.text_pair_column, self.label_column = _choose_columns(
            columns, self._shown, **self._options
        )

    def _example(self, row: int, record: dict[str, Any]) -> Example:
        shown = self._shown
        text_value = _text_cell(record, self.text_column, row, shown)
        pair_col = self.text_pair_column
        pair_value = _text_cell(record, pair_col, row, shown) if pair_col is not None else None
        raw_label = _get(record, self.label_column, row, shown)
        label = _label_id(raw_label, self._lookup, self._valid_ids, row, shown, self._label2id)
        return Example(text=text_value, text_pair=pair_value, label=label, row=row)


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


def _empty_error(shown: str) -> InputError:
    return InputError(f"data file {shown} is empty; pass a file with a header row and labelled rows")


def _decoded_lines(p: Path, shown: str) -> Iterator[str]:
    """The file's lines (split at b"\\n", ends kept), each decoded as UTF-8 on its own, the BOM dropped.

    UTF-8 never uses the byte 0x0A inside a character, so decoding line by line accepts and rejects exactly what
    decoding the whole file would, and the failing line is known without keeping the file in memory.
    """
    if not p.exists():
        raise InputError(f"data file {shown} does not exist; check the path")
    if p.is_dir():
        raise InputError(f"data file {shown} is a directory; pass a .tsv, .csv or .jsonl file inside it")
    try:
        handle = p.open("rb")
    except OSError as exc:
        raise _read_error(shown, exc) from None
    with handle:
        line_no = 0
        offset = 0  # byte offset of the line in the file
        while True:
            try:
                raw = handle.readline()
            except OSError as exc:
                raise _read_error(shown, exc) from None
            if not raw:
                return
            line_no += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"data file {shown} line {line_no} is not valid UTF-8 (byte offset {offset + exc.start}); "
                    "save the file as UTF-8"
                ) from None
            if line_no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            offset += len(raw)
            yield text


def _read_error(shown: str, exc: OSError) -> InputError:
    reason = exc.strerror or type(exc).__name__
    return InputError(f"cannot read data file {shown} ({reason}); check the path and its permissions")


def _watch(lines: Iterator[str], state: _ReadState) -> Iterator[str]:
    """Pass lines through, noting in ``state`` whether any has content and whether reading failed."""
    while True:
        try:
            line = next(lines)
        except StopIteration:
            return
        except InputError:
            state.failed = True
            raise
        if not state.has_content and line.strip():
            state.has_content = True
        yield line


_CSV_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _csv_lines(lines: Iterable[str]) -> Iterator[str]:
    """Split lines at a lone "\\r" too, as ``io.StringIO(text, newline="")`` does, so old Mac files still parse."""
    for line in lines:
        if "\r" in line:
            yield from _CSV_LINE.findall(line)
        else:
            yield line


def _delimited_records(
    lines: Iterable[str], shown: str, fmt: str, columns: list[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Parse TSV (GLUE style, no quoting: GLUE files contain unbalanced quotes) or CSV with a header.

    ``columns`` is filled from the header before the first row; CSV quoted fields may span lines.
    """
    if fmt == "tsv":
        reader = csv.reader(_csv_lines(lines), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(_csv_lines(lines))
    row = 0
    header_read = False
    try:
        header = next(reader, [])
        header_read = True
        if not header or not any(name.strip() for name in header):
            raise InputError(f"data file {shown} has an empty header line; the first line must name the columns")
        columns.extend(name.strip() for name in header)
        width = len(columns)
        for row, fields in enumerate(reader, start=1):
            if not fields:  # blank line
                continue
            if len(fields) != width:
                raise InputError(
                    f"data file {shown} row {row} has {_count(len(fields), 'field')} but the header has "
                    f"{width}; fix the row or pass the right file"
                )
            record: dict[str, str] = {}
            for name, value in zip(columns, fields, strict=True):
                record.setdefault(name, value)  # first column wins if a name repeats
            yield row, record
    except csv.Error as exc:
        where = f"row {row + 1}" if header_read else "header"
        raise InputError(
            f"data file {shown} {where} cannot be parsed as {fmt.upper()} ({_one_line(str(exc))}); "
            "fix the row or pass the right file"
        ) from None


def _jsonl_records(lines: Iterable[str], shown: str, columns: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Parse JSON Lines; the keys of the first object fill ``columns``, rows are line numbers."""
    line_no = 0
    seen_object = False
    for chunk in lines:
        for line in chunk.splitlines():  # the same line breaks (and so line numbers) as str.splitlines on the file
            line_no += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:
                hint = " (the file looks like one JSON array)" if not seen_object and line.lstrip()[:1] == "[" else ""
                raise InputError(
                    f"data file {shown} row {line_no} is not valid JSON{hint} ({_one_line(str(exc))}); "
                    "write one JSON object per line (JSON Lines)"
                ) from None
            if not isinstance(obj, dict):
                raise InputError(
                    f"data file {shown} row {line_no} is a JSON {_json_type(obj)}, not an object; "
                    "write one JSON object per line (JSON Lines)"
                )
            if not seen_object:
                columns.extend(str(key) for key in obj)
                seen_object = True
            yield line_no, obj


def _choose_columns(
    columns: list[str],
    shown: str,
    *,
    text_column: str | None,
    text_pair_column: str | None,
    label_column: str | None,
) -> tuple[str, str | None, str]:
    """Explicit options win; otherwise the first schema whose columns all exist."""
    available = set(columns)
    listing = ", ".join(_quote(c, 60) for c in columns[:30]) + (", ..." if len(columns) > 30 else "")
    for option, value in (
        ("--text-column", text_column),
        ("--text-pair-column", text_pair_column),
        ("--label-column", label_column),
    ):
        if value is not None and value not in available:
            raise InputError(
                f"{option} {_quote(value, 60)} is not a column of data file {shown}; available columns: {listing}"
            )

    schema = next(
        (s for s in _SCHEMAS if all(c is None or c in available for c in s)),
        None,
    )
    if text_column is not None:
        text_col: str | None = text_column
        pair_col = text_pair_column  # choosing the text means choosing the inputs: no implicit pair
    else:
        text_col = schema[0] if schema else None
        pair_col = text_pair_column if text_pair_column is not None else (schema[1] if schema else None)
    if label_column is not None:
        label_col: str | None = label_column
    elif schema is not None:
        label_col = schema[2]
    else:
        label_col = next((c for c in ("label", "Quality") if c in available), None)

    if text_col is None or label_col is None:
        raise InputError(
            f"cannot tell which columns of data file {shown} hold the text and the label "
            f"(columns found: {listing or 'none'}); {_COLUMN_HINT}"
        )
    return text_col, pair_col, label_col


def _get(record: dict[str, Any], column: str, row: int, shown: str) -> Any:
    if column not in record:
        raise InputError(
            f"data file {shown} row {row} has no key {_quote(column, 60)}; give every row the same keys or fix the row"
        )
    return record[column]


def _text_cell(record: dict[str, Any], column: str, row: int, shown: str) -> str:
    value = _get(record, column, row, shown)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(
            f"data file {shown} row {row} column {_quote(column, 60)} is not text "
            f"(got JSON {_json_type(value)}); fix or remove the row"
        )
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        raise InputError(f"data file {shown} row {row} has an empty {_quote(column, 60)} cell; fix or remove the row")
    return text


def _label_id(
    raw: Any,
    lookup: dict[str, int],
    valid_ids: set[int],
    row: int,
    shown: str,
    label2id: dict[str, int],
) -> int:
    """Map a label cell to an id: by name first, then as an integer id the model knows."""
    if isinstance(raw, bool):
        key = str(int(raw))
    elif isinstance(raw, int):
        key = str(raw)
    elif isinstance(raw, float) and raw.is_integer():
        key = str(int(raw))
    elif isinstance(raw, (str, float)):
        key = str(raw).strip()
    else:
        key = json.dumps(raw)[:40]
    if key in lookup:
        return lookup[key]
    if _INT_LITERAL.fullmatch(key) and int(key) in valid_ids:
        return int(key)
    names = [name for name, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    shown_names = repr(names[:20])[:-1] + (", ...]" if len(names) > 20 else "]")
    raise InputError(
        f"label {_quote(key, 40)} in row {row} of {shown} is not one of the model's labels {shown_names}; "
        "fix the data or pass --label-column"
    )


def _one_line(message: str) -> str:
    return " ".join(message.split())[:200]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _json_type(value: Any) -> str:
    """JSON's own name for a parsed value's type, which is what a user wrote in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
