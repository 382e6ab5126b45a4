"""Labelled evaluation data (GLUE TSV, CSV, JSON Lines) turned into examples a classifier can score.

Everything a user can get wrong here (path, encoding, columns, labels, malformed rows) is reported as
a one-line :class:`~compressor.errors.InputError` that names the file and, where it applies, the row,
so the CLI can print it and exit 2 instead of showing a traceback from ``csv`` or ``json``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from compressor.errors import InputError

__all__ = ["Example", "LabelledData", "find_glue_split", "load_labelled_data"]

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

    def sample(self, n: int, seed: int) -> LabelledData:
        """Seeded sample of ``n`` rows without replacement, in file order, so runs are reproducible."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        if len(self.examples) <= n:
            return self
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(self.examples), size=n, replace=False))
        return replace(self, examples=tuple(self.examples[int(i)] for i in chosen))

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
    p = Path(path)
    shown = _quote(str(path))
    text = _read_text(p, shown)
    if not text.strip():
        raise InputError(f"data file {shown} is empty; pass a file with a header row and labelled rows")

    suffix = p.suffix.lower()
    if suffix in _JSON_SUFFIXES:
        fmt = "jsonl"
    elif suffix == ".tsv":
        fmt = "tsv"
    elif suffix == ".csv":
        fmt = "csv"
    else:
        fmt = "tsv" if "\t" in text.splitlines()[0] else "csv"

    if fmt == "jsonl":
        columns, records = _parse_jsonl(text, shown)
    else:
        columns, records = _parse_delimited(text, shown, fmt)

    text_col, pair_col, label_col = _choose_columns(
        columns, shown, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column
    )
    label_lookup = {str(k).strip(): int(v) for k, v in label2id.items()}
    valid_ids = set(label_lookup.values())
    examples: list[Example] = []
    for row, record in records:
        text_value = _text_cell(record, text_col, row, shown)
        pair_value = _text_cell(record, pair_col, row, shown) if pair_col is not None else None
        raw_label = _get(record, label_col, row, shown)
        label = _label_id(raw_label, label_lookup, valid_ids, row, shown, label2id)
        examples.append(Example(text=text_value, text_pair=pair_value, label=label, row=row))
    if not examples:
        raise InputError(f"data file {shown} has a header but no data rows; pass a file with labelled rows")
    return LabelledData(
        path=str(path),
        format=fmt,
        text_column=text_col,
        text_pair_column=pair_col,
        label_column=label_col,
        examples=tuple(examples),
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


def _read_text(p: Path, shown: str) -> str:
    if not p.exists():
        raise InputError(f"data file {shown} does not exist; check the path")
    if p.is_dir():
        raise InputError(f"data file {shown} is a directory; pass a .tsv, .csv or .jsonl file inside it")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot read data file {shown} ({reason}); check the path and its permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"data file {shown} line {line} is not valid UTF-8 (byte offset {exc.start}); save the file as UTF-8"
        ) from None


def _parse_delimited(text: str, shown: str, fmt: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Parse TSV (GLUE style, no quoting: GLUE files contain unbalanced quotes) or CSV with a header."""
    if fmt == "tsv":
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    row = 0
    header_read = False
    try:
        header = next(reader, [])
        header_read = True
        if not header or not any(name.strip() for name in header):
            raise InputError(f"data file {shown} has an empty header line; the first line must name the columns")
        columns = [name.strip() for name in header]
        records: list[tuple[int, dict[str, str]]] = []
        for row, fields in enumerate(reader, start=1):
            if not fields:  # blank line
                continue
            if len(fields) != len(columns):
                raise InputError(
                    f"data file {shown} row {row} has {_count(len(fields), 'field')} but the header has "
                    f"{len(columns)}; fix the row or pass the right file"
                )
            record: dict[str, str] = {}
            for name, value in zip(columns, fields, strict=True):
                record.setdefault(name, value)  # first column wins if a name repeats
            records.append((row, record))
    except csv.Error as exc:
        where = f"row {row + 1}" if header_read else "header"
        raise InputError(
            f"data file {shown} {where} cannot be parsed as {fmt.upper()} ({_one_line(str(exc))}); "
            "fix the row or pass the right file"
        ) from None
    return columns, records


def _parse_jsonl(text: str, shown: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    """Parse JSON Lines; the keys of the first object are the columns, rows are line numbers."""
    columns: list[str] | None = None
    records: list[tuple[int, dict[str, Any]]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            hint = " (the file looks like one JSON array)" if not records and line.lstrip()[:1] == "[" else ""
            raise InputError(
                f"data file {shown} row {line_no} is not valid JSON{hint} ({_one_line(str(exc))}); "
                "write one JSON object per line (JSON Lines)"
            ) from None
        if not isinstance(obj, dict):
            raise InputError(
                f"data file {shown} row {line_no} is a JSON {_json_type(obj)}, not an object; "
                "write one JSON object per line (JSON Lines)"
            )
        if columns is None:
            columns = [str(key) for key in obj]
        records.append((line_no, obj))
    return columns or [], records


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
