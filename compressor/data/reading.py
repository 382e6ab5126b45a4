"""Reading a labelled data file (TSV, CSV, JSON Lines) row by row, with one-line errors that name the file, the
row and what to do: the parser behind every loader in ``files``."""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from attr_compress.compressor.data.cells import cell_value, json_type, label_id, quote, text_cell
from attr_compress.compressor.data.rows import Example, LabelledData
from attr_compress.compressor.errors import InputError

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


_JSON_SUFFIXES = (".jsonl", ".json")


class _ReadState:
    """What the line reader has seen so far, so deferred errors can be ranked the way a whole-file read ranks them."""

    def __init__(self) -> None:
        self.has_content = False  # a line with something other than whitespace was read
        self.failed = False  # the file could not be read or decoded: that error beats every other


class ExampleStream:
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
        self._shown = quote(str(path))
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
        text_value = text_cell(record, self.text_column, row, shown)
        pair_col = self.text_pair_column
        pair_value = text_cell(record, pair_col, row, shown) if pair_col is not None else None
        raw_label = cell_value(record, self.label_column, row, shown)
        label = label_id(raw_label, self._lookup, self._valid_ids, row, shown, self._label2id)
        return Example(text=text_value, text_pair=pair_value, label=label, row=row)


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
                    f"data file {shown} row {line_no} is a JSON {json_type(obj)}, not an object; "
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
    listing = ", ".join(quote(c, 60) for c in columns[:30]) + (", ..." if len(columns) > 30 else "")
    for option, value in (
        ("--text-column", text_column),
        ("--text-pair-column", text_pair_column),
        ("--label-column", label_column),
    ):
        if value is not None and value not in available:
            raise InputError(
                f"{option} {quote(value, 60)} is not a column of data file {shown}; available columns: {listing}"
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


def _one_line(message: str) -> str:
    return " ".join(message.split())[:200]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
