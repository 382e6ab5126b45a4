"""One cell of a data row as the loaders need it: text, or a label id the model knows, with one-line errors that
name the file, the row and the column."""

from __future__ import annotations

import json
import re
from typing import Any

from attr_compress.compressor.errors import InputError

INT_LITERAL = re.compile(r"[+-]?[0-9]{1,18}")


def quote(value: str, limit: int | None = None) -> str:
    """Quote a user-supplied string for a message, escaping newlines so the message stays one line."""
    if limit is not None and len(value) > limit:
        value = value[:limit] + "..."
    return repr(value)


def cell_value(record: dict[str, Any], column: str, row: int, shown: str) -> Any:
    if column not in record:
        raise InputError(
            f"data file {shown} row {row} has no key {quote(column, 60)}; give every row the same keys or fix the row"
        )
    return record[column]


def text_cell(record: dict[str, Any], column: str, row: int, shown: str) -> str:
    value = cell_value(record, column, row, shown)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(
            f"data file {shown} row {row} column {quote(column, 60)} is not text "
            f"(got JSON {json_type(value)}); fix or remove the row"
        )
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        raise InputError(f"data file {shown} row {row} has an empty {quote(column, 60)} cell; fix or remove the row")
    return text


def label_id(
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
    if INT_LITERAL.fullmatch(key) and int(key) in valid_ids:
        return int(key)
    names = [name for name, _ in sorted(label2id.items(), key=lambda kv: kv[1])]
    shown_names = repr(names[:20])[:-1] + (", ...]" if len(names) > 20 else "]")
    raise InputError(
        f"label {quote(key, 40)} in row {row} of {shown} is not one of the model's labels {shown_names}; "
        "fix the data or pass --label-column"
    )


def json_type(value: Any) -> str:
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
