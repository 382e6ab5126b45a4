"""Tests for compressor.data: real GLUE files, the formats, and one-line InputErrors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from attr_compress.compressor.data.files import find_glue_split, load_labelled_data
from attr_compress.compressor.data.rows import Example, LabelledData
from attr_compress.compressor.errors import InputError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attr_compress.cli import EXIT_CODES
from tests.helpers import SHARED, write_file

GLUE = SHARED / "data" / "glue"
BINARY = {"0": 0, "1": 1}


def _glue_file(task: str, split: str) -> Path:
    path = GLUE / task / f"{split}.tsv"
    if not path.is_file():
        pytest.skip(f"shared GLUE data not available at {path}")
    return path


def _cols(data: LabelledData) -> tuple[str, str | None, str]:
    return data.text_column, data.text_pair_column, data.label_column


# --------------------------------------------------------------------------- real GLUE files


def test_sst2_dev_loads_all_rows_with_first_text_and_label() -> None:
    data = load_labelled_data(_glue_file("SST-2", "dev"), BINARY)
    assert len(data) == 872
    assert data.format == "tsv"
    assert _cols(data) == ("sentence", None, "label")
    assert data.examples[0] == Example(text="one long string of cliches .", text_pair=None, label=0, row=1)
    assert {ex.label for ex in data.examples} == {0, 1}
    assert [ex.row for ex in data.examples] == list(range(1, 873))


def test_mrpc_dev_loads_pairs_and_keeps_unbalanced_quotes_verbatim() -> None:
    data = load_labelled_data(_glue_file("MRPC", "dev"), BINARY)
    assert len(data) == 408
    assert _cols(data) == ("#1 String", "#2 String", "Quality")
    first = data.examples[0]
    assert first.text.startswith("He said the foodservice pie business")
    assert first.text_pair == '"The foodservice pie business does not fit our long-term growth strategy.'
    assert first.label == 1
    assert data.examples[1].label == 0
    assert all(ex.text_pair for ex in data.examples)
    assert {ex.label for ex in data.examples} == {0, 1}


def test_glue_train_files_load_completely() -> None:
    assert len(load_labelled_data(_glue_file("SST-2", "train"), BINARY)) == 67349
    assert len(load_labelled_data(_glue_file("MRPC", "train"), BINARY)) == 3668


# --------------------------------------------------------------------------- formats and columns


def test_generic_sentence_pair_tsv(tmp_path: Path) -> None:
    content = "index\tsentence1\tsentence2\tlabel\n0\tA cat.\tAn animal.\t1\n1\tX\tY\t0\n"
    path = write_file(tmp_path, "rte.tsv", content)
    data = load_labelled_data(path, BINARY)
    assert _cols(data) == ("sentence1", "sentence2", "label")
    assert data.examples == (
        Example("A cat.", "An animal.", 1, 1),
        Example("X", "Y", 0, 2),
    )


def test_csv_with_quoted_commas(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.csv", 'text,label\n"Hello, world, again",1\nplain,0\n"say ""hi""",1\n')
    data = load_labelled_data(path, BINARY)
    assert data.format == "csv"
    assert [ex.text for ex in data.examples] == ["Hello, world, again", "plain", 'say "hi"']
    assert [ex.label for ex in data.examples] == [1, 0, 1]


def test_jsonl_with_int_string_and_bool_labels(tmp_path: Path) -> None:
    lines = [
        json.dumps({"text": "good", "label": 1}),
        "",
        json.dumps({"text": "bad", "label": "0"}),
        json.dumps({"text": "fine", "label": " 1 "}),
        json.dumps({"text": "meh", "label": False}),
    ]
    path = write_file(tmp_path, "d.jsonl", "\n".join(lines) + "\n\n")
    data = load_labelled_data(path, BINARY)
    assert data.format == "jsonl"
    assert [(ex.text, ex.label, ex.row) for ex in data.examples] == [
        ("good", 1, 1),
        ("bad", 0, 3),
        ("fine", 1, 4),
        ("meh", 0, 5),
    ]


def test_json_extension_is_json_lines(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.json", '{"sentence": "a", "label": 0}\n{"sentence": "b", "label": 1}\n')
    assert [ex.label for ex in load_labelled_data(path, BINARY).examples] == [0, 1]


def test_string_labels_via_label2id(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.tsv", "sentence\tlabel\nnice\tpositive\nawful\t negative \n")
    data = load_labelled_data(path, {"negative": 0, "positive": 1})
    assert [ex.label for ex in data.examples] == [1, 0]


def test_integer_label_falls_back_to_valid_id(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.tsv", "sentence\tlabel\nnice\t1\nawful\t0\n")
    data = load_labelled_data(path, {"negative": 0, "positive": 1})
    assert [ex.label for ex in data.examples] == [1, 0]


def test_explicit_column_options_override_detection(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.tsv", "sentence\tlabel\tbody\tother\tgold\nS\t0\tB\tO\t1\n")
    default = load_labelled_data(path, BINARY)
    assert (default.examples[0].text, default.examples[0].label) == ("S", 0)
    data = load_labelled_data(path, BINARY, text_column="body", text_pair_column="other", label_column="gold")
    assert _cols(data) == ("body", "other", "gold")
    assert data.examples[0] == Example("B", "O", 1, 1)
    # Choosing the text column alone keeps the detected label but adds no implicit pair.
    only_text = load_labelled_data(path, BINARY, text_column="other")
    assert _cols(only_text) == ("other", None, "label")


def test_options_work_when_no_schema_matches(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.csv", "review,stars\ngreat,1\n")
    data = load_labelled_data(path, BINARY, text_column="review", label_column="stars")
    assert data.examples == (Example("great", None, 1, 1),)


@pytest.mark.parametrize(
    ("name", "content", "fmt"),
    [("d.txt", "sentence\tlabel\na, b\t1\n", "tsv"), ("d.data", "sentence,label\na\tb,1\n", "csv")],
)
def test_unknown_extension_sniffs_tab_in_header(tmp_path: Path, name: str, content: str, fmt: str) -> None:
    data = load_labelled_data(write_file(tmp_path, name, content), BINARY)
    assert data.format == fmt
    assert data.examples[0].label == 1
    assert len(data.examples) == 1


def test_bom_crlf_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    path = write_file(tmp_path, "d.tsv", "\ufeffsentence\tlabel\r\nfirst\t1\r\n\r\nsecond\t0\r\n")
    data = load_labelled_data(path, BINARY)
    assert data.text_column == "sentence"
    assert [(ex.text, ex.label, ex.row) for ex in data.examples] == [("first", 1, 1), ("second", 0, 3)]


# --------------------------------------------------------------------------- sample / head


def _dataset(n: int) -> LabelledData:
    examples = tuple(Example(f"t{i}", None, i % 2, i + 1) for i in range(n))
    return LabelledData("mem.tsv", "tsv", "sentence", None, "label", examples)


def test_sample_is_seeded_ordered_and_sized() -> None:
    data = _dataset(100)
    first = data.sample(10, seed=0)
    assert len(first) == 10
    assert first == data.sample(10, seed=0)
    assert first.examples != data.sample(10, seed=1).examples
    rows = [ex.row for ex in first.examples]
    assert rows == sorted(rows) and len(set(rows)) == 10
    assert (first.path, first.text_column, first.label_column) == (data.path, "sentence", "label")


def test_sample_returns_self_when_small_enough_and_head_takes_prefix() -> None:
    data = _dataset(5)
    assert data.sample(5, seed=3) is data
    assert data.sample(50, seed=3) is data
    assert [ex.row for ex in data.head(2).examples] == [1, 2]
    assert len(data.head(50)) == 5


def test_sample_of_real_sst2_dev_is_reproducible() -> None:
    data = load_labelled_data(_glue_file("SST-2", "dev"), BINARY)
    assert data.sample(64, seed=7) == data.sample(64, seed=7)
    assert len(data.sample(64, seed=7)) == 64


# --------------------------------------------------------------------------- find_glue_split


@pytest.fixture
def glue_dir(tmp_path: Path) -> Path:
    for folder, files in {"SST-2": ["dev.tsv", "train.tsv"], "MRPC": ["dev.tsv"], "CoLA": []}.items():
        (tmp_path / folder).mkdir()
        for name in files:
            (tmp_path / folder / name).write_text("sentence\tlabel\nx\t0\n", encoding="utf-8")
    (tmp_path / "qnli").write_text("a file, not a task folder", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("task", ["sst2", "sst-2", "SST-2", "Sst_2"])
def test_find_glue_split_matches_task_spellings(glue_dir: Path, task: str) -> None:
    assert find_glue_split(task, "dev", glue_dir) == glue_dir / "SST-2" / "dev.tsv"
    assert find_glue_split(task, "train", str(glue_dir)) == glue_dir / "SST-2" / "train.tsv"


@pytest.mark.parametrize(
    ("task", "split"),
    [("mrpc", "train"), ("cola", "dev"), ("qnli", "dev"), ("rte", "dev"), ("", "dev"), ("--", "dev")],
)
def test_find_glue_split_returns_none_when_missing(glue_dir: Path, task: str, split: str) -> None:
    assert find_glue_split(task, split, glue_dir) is None


def test_find_glue_split_none_or_missing_dir(tmp_path: Path) -> None:
    assert find_glue_split("sst2", "dev", None) is None
    assert find_glue_split("sst2", "dev", tmp_path / "nope") is None


def test_find_glue_split_on_shared_data() -> None:
    _glue_file("MRPC", "dev")
    assert find_glue_split("MRPC", "dev", GLUE) == GLUE / "MRPC" / "dev.tsv"
    assert find_glue_split("sst2", "train", GLUE) == GLUE / "SST-2" / "train.tsv"


# --------------------------------------------------------------------------- bad input


BAD_INPUTS: list[tuple[str, str, str | bytes | None, dict[str, str], str]] = [
    # (id, file name, content or None for "do not create", options, expected fragment)
    ("missing", "nope.tsv", None, {}, "does not exist"),
    ("empty", "e.tsv", "", {}, "is empty"),
    ("whitespace-only", "e.csv", "  \n\n", {}, "is empty"),
    ("header-only", "h.tsv", "sentence\tlabel\n", {}, "no data rows"),
    ("header-only-blank-lines", "h.tsv", "sentence\tlabel\n\n\n", {}, "no data rows"),
    (
        "too-many-fields",
        "x.tsv",
        "sentence\tlabel\na\t1\nb\t0\textra\n",
        {},
        "row 2 has 3 fields but the header has 2; fix the row or pass the right file",
    ),
    ("too-few-fields-csv", "x.csv", "sentence,label\na,1\nb\n", {}, "row 2 has 1 field but"),
    ("not-utf8", "b.tsv", b"sentence\tlabel\nok\t1\ncaf\xe9\t0\n", {}, "line 3 is not valid UTF-8"),
    ("unknown-label", "dev.tsv", "sentence\tlabel\na\t1\nb\tmaybe\n", {}, "label 'maybe' in row 2"),
    ("out-of-range-int-label", "dev.tsv", "sentence\tlabel\na\t7\n", {}, "label '7' in row 1"),
    ("empty-text", "x.tsv", "sentence\tlabel\na\t1\n   \t0\n", {}, "row 2 has an empty 'sentence' cell"),
    ("empty-pair", "x.tsv", "sentence1\tsentence2\tlabel\na\t\t1\n", {}, "row 1 has an empty 'sentence2'"),
    ("no-schema", "x.tsv", "review\tstars\ngood\t1\n", {}, "--text-column/--text-pair-column/--label-column"),
    ("bad-text-option", "x.tsv", "sentence\tlabel\na\t1\n", {"text_column": "body"}, "--text-column 'body'"),
    ("bad-pair-option", "x.tsv", "sentence\tlabel\na\t1\n", {"text_pair_column": "b"}, "--text-pair-column"),
    ("bad-label-option", "x.tsv", "sentence\tlabel\na\t1\n", {"label_column": "gold"}, "--label-column"),
    ("invalid-json", "x.jsonl", '{"text": "a", "label": 1}\n{"text": \n', {}, "row 2 is not valid JSON"),
    ("json-array-file", "x.json", '[\n{"text": "a", "label": 1}\n]\n', {}, "looks like one JSON array"),
    ("json-not-object", "x.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n', {}, "is a JSON array, not an"),
    ("json-missing-key", "x.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', {}, "has no key 'label'"),
    ("json-null-text", "x.jsonl", '{"text": null, "label": 1}\n', {}, "is not text (got JSON null)"),
    ("json-list-label", "x.jsonl", '{"text": "a", "label": [1]}\n', {}, "in row 1"),
    ("csv-unclosed-quote", "x.csv", 'text,label\n"never closed,1\n', {}, "x.csv"),
]


@pytest.mark.parametrize(
    ("name", "content", "options", "fragment"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises_one_line_input_error(
    tmp_path: Path, name: str, content: str | bytes | None, options: dict[str, str], fragment: str
) -> None:
    path = tmp_path / name if content is None else write_file(tmp_path, name, content)
    with pytest.raises(InputError) as info:
        load_labelled_data(path, BINARY, **options)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert name in message
    assert fragment in message
    assert EXIT_CODES[type(info.value)] == 2


def test_directory_path_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        load_labelled_data(tmp_path, BINARY)


def test_unknown_label_message_lists_model_labels(tmp_path: Path) -> None:
    path = write_file(tmp_path, "dev.tsv", "sentence\tlabel\na\t1\nb\tmaybe\n")
    with pytest.raises(InputError) as info:
        load_labelled_data(path, BINARY)
    expected = "is not one of the model's labels ['0', '1']; fix the data or pass --label-column"
    assert expected in str(info.value)


def test_option_error_lists_available_columns(tmp_path: Path) -> None:
    path = write_file(tmp_path, "x.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(InputError, match=r"available columns: 'sentence', 'label'"):
        load_labelled_data(path, BINARY, label_column="gold")


def test_multiline_label_value_keeps_message_on_one_line(tmp_path: Path) -> None:
    path = write_file(tmp_path, "x.csv", 'text,label\nhello,"a\nb"\n')
    with pytest.raises(InputError) as info:
        load_labelled_data(path, BINARY)
    assert "\n" not in str(info.value)
    assert "row 1" in str(info.value)


# --------------------------------------------------------------------------- fuzz

_NAMES = st.sampled_from(["sentence", "label", "text", "sentence1", "sentence2", "#1 String", "Quality", "x", ""])
_CELL = st.text(alphabet=st.sampled_from(list("ab01 \t,\"'\n\r{}[]:\\") + ["é", "\x00", "\ufeff"]), max_size=8)


@st.composite
def _delimited_files(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from(["\t", ",", ";", " ", "|"]))
    header = draw(st.lists(_NAMES, min_size=0, max_size=4))
    rows = draw(st.lists(st.lists(_CELL, max_size=5), max_size=4))
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(lines).encode("utf-8")


@st.composite
def _jsonl_files(draw: st.DrawFn) -> bytes:
    values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _CELL, st.lists(st.integers()))
    objects = draw(st.lists(st.dictionaries(_NAMES, values, max_size=4), max_size=4))
    extra = draw(st.lists(st.sampled_from(["", "[1]", "{", "3", '"s"', "null"]), max_size=2))
    return "\n".join([json.dumps(obj) for obj in objects] + extra).encode("utf-8")


_SCHEMA_HEADERS = [["sentence", "label"], ["label", "sentence1", "sentence2"], ["text", "label"]]
_NEAR_VALID_CELL = st.one_of(st.sampled_from(["0", "1", " 1 ", "2"]), st.text('ab01 ,"é', max_size=6))


@st.composite
def _near_valid_files(draw: st.DrawFn) -> bytes:
    """A well-formed file for a known schema, maybe with one byte corrupted, so some fuzz cases load."""
    header = draw(st.sampled_from(_SCHEMA_HEADERS))
    width = len(header)
    rows = draw(st.lists(st.lists(_NEAR_VALID_CELL, min_size=width, max_size=width), min_size=1, max_size=4))
    if draw(st.booleans()):
        content = "\n".join(json.dumps(dict(zip(header, row, strict=True))) for row in rows)
    else:
        delimiter = draw(st.sampled_from(["\t", ","]))
        content = "\n".join(delimiter.join(line) for line in [header, *rows])
    raw = bytearray(content.encode("utf-8"))
    if draw(st.booleans()):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(st.binary(max_size=200), _delimited_files(), _jsonl_files(), _near_valid_files()),
    suffix=st.sampled_from([".tsv", ".csv", ".jsonl", ".json", ".txt"]),
    label2id=st.sampled_from([BINARY, {"negative": 0, "positive": 1}]),
)
def test_fuzz_returns_or_raises_input_error(
    tmp_path: Path, content: bytes, suffix: str, label2id: dict[str, int]
) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    try:
        data = load_labelled_data(path, label2id)
    except InputError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        return
    assert len(data) > 0
    assert all(ex.label in label2id.values() for ex in data.examples)
    assert all(ex.text.strip() for ex in data.examples)


def test_split_holds_rows_apart_reproducibly(tmp_path: Path) -> None:
    data = load_labelled_data(
        write_file(tmp_path, "d.tsv", "sentence\tlabel\n" + "".join(f"s{i}\t1\n" for i in range(10))), BINARY
    )
    chosen, rest = data.split(4, seed=1)
    assert len(chosen) == 4 and len(rest) == 6
    assert not {e.row for e in chosen.examples} & {e.row for e in rest.examples}
    assert [e.row for e in rest.examples] == sorted(e.row for e in rest.examples)  # file order kept
    assert data.split(4, seed=1) == (chosen, rest) and data.split(4, seed=2) != (chosen, rest)
