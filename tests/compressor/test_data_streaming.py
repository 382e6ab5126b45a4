"""Tests for compressor.data.sample_labelled_data: a seeded reservoir sample read in one bounded-memory pass."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from attr_compress.compressor.data.files import load_labelled_data, sample_labelled_data
from attr_compress.compressor.data.rows import Example, LabelledData
from attr_compress.compressor.errors import InputError

from tests.helpers import SHARED, write_file

GLUE = SHARED / "data" / "glue"
BINARY = {"0": 0, "1": 1}


def _tsv(tmp_path: Path, rows: int, name: str = "d.tsv") -> Path:
    lines = ["sentence\tlabel"] + [f"text number {i}\t{i % 2}" for i in range(rows)]
    return write_file(tmp_path, name, "\n".join(lines) + "\n")


def _rows(examples: tuple[Example, ...]) -> list[int]:
    return [ex.row for ex in examples]


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("n", [50, 51, 1000])
def test_small_file_returns_every_row_in_file_order(tmp_path: Path, n: int) -> None:
    path = _tsv(tmp_path, 50)
    full = load_labelled_data(path, BINARY)
    sample, total = sample_labelled_data(path, BINARY, n, seed=3)
    assert total == 50
    assert sample == full  # same path, format, columns and examples


def test_sample_is_sized_ordered_and_seeded(tmp_path: Path) -> None:
    path = _tsv(tmp_path, 500)
    full = load_labelled_data(path, BINARY)
    first, total = sample_labelled_data(path, BINARY, 20, seed=0)
    assert total == 500
    assert len(first) == 20
    rows = _rows(first.examples)
    assert rows == sorted(rows) and len(set(rows)) == 20
    assert set(first.examples) <= set(full.examples)
    assert sample_labelled_data(path, BINARY, 20, seed=0) == (first, 500)
    assert _rows(sample_labelled_data(path, BINARY, 20, seed=1)[0].examples) != rows
    assert (first.path, first.format, first.text_column, first.text_pair_column, first.label_column) == (
        full.path,
        full.format,
        full.text_column,
        full.text_pair_column,
        full.label_column,
    )


def test_sample_is_uniform_over_rows(tmp_path: Path) -> None:
    """Algorithm R keeps every row with probability n/N, including the first n and the last rows."""
    rows, n, seeds = 40, 8, 1500
    path = _tsv(tmp_path, rows)
    counts = [0] * rows
    for seed in range(seeds):
        for ex in sample_labelled_data(path, BINARY, n, seed)[0].examples:
            counts[ex.row - 1] += 1
    expected = seeds * n / rows  # 300; the standard deviation is about 15.5
    assert all(abs(count - expected) < 5 * 15.5 for count in counts), counts


def test_total_counts_data_rows_not_blank_lines(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.tsv", "\ufeffsentence\tlabel\r\na\t1\r\n\r\nb\t0\r\nc\t1\r\n")
    sample, total = sample_labelled_data(path, BINARY, 2, seed=0)
    assert total == 3
    assert len(sample) == 2
    assert sample.text_column == "sentence"


def test_csv_with_quoted_field_spanning_lines(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.csv", 'text,label\n"first\nline, continued",1\nplain,0\n')
    sample, total = sample_labelled_data(path, BINARY, 5, seed=0)
    assert total == 2
    assert sample.format == "csv"
    assert [ex.text for ex in sample.examples] == ["first\nline, continued", "plain"]
    assert sample == load_labelled_data(path, BINARY)


def test_old_mac_line_endings_parse_like_the_full_loader(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.tsv", "sentence\tlabel\ra\t1\rb\t0\r")
    sample, total = sample_labelled_data(path, BINARY, 5, seed=0)
    assert total == 2
    assert sample == load_labelled_data(path, BINARY)


def test_jsonl_and_column_options(tmp_path: Path) -> None:
    lines = [json.dumps({"body": f"t{i}", "gold": i % 2}) for i in range(30)]
    path = write_file(tmp_path, "d.jsonl", "\n".join(lines) + "\n")
    sample, total = sample_labelled_data(path, BINARY, 10, seed=5, text_column="body", label_column="gold")
    assert total == 30
    assert (sample.format, sample.text_column, sample.label_column) == ("jsonl", "body", "gold")
    assert len(sample) == 10
    assert all(ex.text == f"t{ex.row - 1}" and ex.label == (ex.row - 1) % 2 for ex in sample.examples)


@pytest.mark.parametrize("n", [0, -1])
def test_sample_size_must_be_positive(tmp_path: Path, n: int) -> None:
    with pytest.raises(ValueError, match="sample size"):
        sample_labelled_data(_tsv(tmp_path, 5), BINARY, n, seed=0)


def test_sst2_train_streams_a_sample() -> None:
    path = GLUE / "SST-2" / "train.tsv"
    if not path.is_file():
        pytest.skip(f"shared GLUE data not available at {path}")
    sample, total = sample_labelled_data(path, BINARY, 200, seed=0)
    assert total == 67349
    assert len(sample) == 200
    assert (sample.format, sample.text_column, sample.text_pair_column, sample.label_column) == (
        "tsv",
        "sentence",
        None,
        "label",
    )
    rows = _rows(sample.examples)
    assert rows == sorted(rows) and len(set(rows)) == 200
    assert {ex.label for ex in sample.examples} == {0, 1}
    assert sample_labelled_data(path, BINARY, 200, seed=0)[0] == sample


# --------------------------------------------------------------------------- errors match the full loader


def _late_rows(bad: str, rows: int = 3000) -> str:
    lines = ["sentence\tlabel"] + [f"t{i}\t{i % 2}" for i in range(rows)] + [bad] + ["tail\t0"]
    return "\n".join(lines) + "\n"


BAD_FILES: list[tuple[str, str, str | bytes, str]] = [
    # (id, file name, content, expected fragment)
    ("late-bad-label", "d.tsv", _late_rows("late\tmaybe"), "label 'maybe' in row 3001"),
    ("late-field-count", "d.tsv", _late_rows("late\t1\textra"), "row 3001 has 3 fields but the header has 2"),
    ("late-empty-text", "d.tsv", _late_rows("  \t1"), "row 3001 has an empty 'sentence' cell"),
    ("late-bad-utf8", "d.tsv", _late_rows("caf\udce9\t1").encode("utf-8", "surrogateescape"), "line 3002 is not valid"),
    ("late-invalid-json", "d.jsonl", '{"text": "a", "label": 1}\n' * 2000 + "{oops\n", "row 2001 is not valid JSON"),
    ("csv-unclosed-quote", "d.csv", "text,label\n" + "a,1\n" * 2000 + '"never closed,1\nb,0\n', "row 2001 has 1 field"),
    ("empty", "d.tsv", "", "is empty"),
    ("whitespace-only", "d.csv", "  \n\n", "is empty"),
    ("header-only", "d.tsv", "sentence\tlabel\n\n", "no data rows"),
    ("no-schema", "d.tsv", "review\tstars\ngood\t1\n", "--text-column/--text-pair-column/--label-column"),
    # Several problems: the full loader's ranking decides, whichever function reads the file.
    ("label-then-bad-utf8", "d.tsv", b"sentence\tlabel\na\tmaybe\nb\t1\ncaf\xe9\t0\n", "line 4 is not valid UTF-8"),
    ("label-then-field-count", "d.tsv", "sentence\tlabel\na\tmaybe\nb\t1\t2\n", "row 2 has 3 fields"),
    ("field-count-then-bad-utf8", "d.tsv", b"sentence\tlabel\na\t1\t2\n\xff\t1\n", "line 3 is not valid UTF-8"),
    ("json-missing-key-then-invalid", "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n{x\n', "row 3 is not"),
]


@pytest.mark.parametrize(
    ("name", "content", "fragment"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES]
)
def test_bad_rows_anywhere_raise_the_full_loaders_error(
    tmp_path: Path, name: str, content: str | bytes, fragment: str
) -> None:
    path = write_file(tmp_path, name, content)
    with pytest.raises(InputError) as full:
        load_labelled_data(path, BINARY)
    with pytest.raises(InputError) as streamed:
        sample_labelled_data(path, BINARY, 10, seed=0)
    assert str(streamed.value) == str(full.value)
    assert fragment in str(streamed.value)
    assert name in str(streamed.value) and "\n" not in str(streamed.value)


def test_bad_utf8_reports_its_line_and_file_offset(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbfsentence\tlabel\nok\t1\n\xe9x\t0\n"
    path = write_file(tmp_path, "b.tsv", content)
    with pytest.raises(InputError, match=r"line 3 is not valid UTF-8 \(byte offset 23\)"):
        sample_labelled_data(path, BINARY, 1, seed=0)
    assert content.index(b"\xe9") == 23


def test_missing_file_and_bad_option(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        sample_labelled_data(tmp_path / "nope.tsv", BINARY, 5, seed=0)
    with pytest.raises(InputError, match="--label-column 'gold'"):
        sample_labelled_data(_tsv(tmp_path, 5), BINARY, 5, seed=0, label_column="gold")


# --------------------------------------------------------------------------- bounded memory


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sampling_a_large_file_uses_bounded_memory(tmp_path: Path) -> None:
    rows, prefix_rows = 300_000, 60_000
    line = "row {} of a large calibration set, padded with some words to look like a sentence\t{}\n"
    path, prefix = tmp_path / "big.tsv", tmp_path / "prefix.tsv"
    with path.open("w", encoding="utf-8") as big, prefix.open("w", encoding="utf-8") as small:
        for handle in (big, small):
            handle.write("sentence\tlabel\n")
        for start in range(0, rows, 10_000):
            chunk = "".join(line.format(i, i % 2) for i in range(start, start + 10_000))
            big.write(chunk)
            if start < prefix_rows:
                small.write(chunk)
    assert path.stat().st_size > 20 * 2**20
    sample_labelled_data(prefix, BINARY, 100, seed=0)  # warm up: one-time lazy initialisation is not per-file cost

    result: list[tuple[LabelledData, int]] = []
    streaming = _peak_bytes(lambda: result.append(sample_labelled_data(path, BINARY, 100, seed=0)))
    sample, total = result[0]
    assert total == rows
    assert len(sample) == 100

    # Tracing a full load of all 300k rows would double the test's time; the full loader's peak only grows with
    # the file, so its peak on the first fifth of the file is a lower bound for the whole file.
    full = _peak_bytes(lambda: load_labelled_data(prefix, BINARY))
    assert streaming < 20 * 2**20
    assert streaming * 5 < full, (streaming, full)
