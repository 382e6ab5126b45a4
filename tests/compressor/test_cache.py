"""Work is never done twice, and the cache never hands back another model's result: keys are derived from
the stages' typed inputs (the model as it computes, the rows, every option, the code), entries are checked
against their manifest on every read, and whatever a run ships equals what a --no-cache run ships."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from attr_compress.compressor.cache import StageCache, fingerprint, stage_key
from attr_compress.compressor.scoring.options import ScoringOptions
from safetensors.torch import load_file

from attr_compress import search as search_module
from tests.helpers import SENTENCES, TRAIN_SENTENCES, WORDS, pipeline_args, run, tiny_model, write_tokenizer, write_tsv

ARTIFACTS = [
    "importance.json",
    "ffn_importance.json",
    "prune_plan.json",
    "pruned/model.safetensors",
    "target_search.json",
]
SHIPPED_FILES = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def target_args(model, data, out, *extra):
    args = pipeline_args(model, data, out, "--trees", "0", "--recover", "lsq", *extra)
    del args[args.index("--keep") : args.index("--keep") + 2]
    return [*args, "--latency-budget", "1000", "--max-drop", "100"]


def keep_args(model, data, calib, out, *extra):
    """A run with FFN pruning and the least-squares refit (cached: scores and the recovered folder)."""
    args = pipeline_args(model, data, out, "--trees", "0", "--keep-ffn", "0.5", "--recover", "lsq", *extra)
    args[args.index("--calib") + 1] = calib
    return args


def report_of(out):
    return json.loads((out / "report.json").read_text())


@pytest.fixture
def calib(tmp_path):
    return write_tsv(tmp_path / "train.tsv", TRAIN_SENTENCES)


def copy_model(source, folder):
    shutil.copytree(source, folder)
    return folder


def assert_ships_the_same(out, reference):
    """What a run shipped equals what a --no-cache run shipped: scores, tokenizer and config bytes, weights."""
    for name in ("importance.json", "ffn_importance.json"):
        ours, theirs = (np.array(json.loads((folder / name).read_text())["scores"]) for folder in (out, reference))
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    for folder in ("pruned", "onnx"):
        for name in SHIPPED_FILES:
            assert (out / folder / name).read_bytes() == (reference / folder / name).read_bytes(), f"{folder}/{name}"
    ours, theirs = (load_file(folder / "pruned/model.safetensors") for folder in (out, reference))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)


def assert_tokenizer_is_the_users(out, model):
    for folder in ("pruned", "onnx"):
        for name in SHIPPED_FILES[1:]:
            assert (out / folder / name).read_bytes() == (model / name).read_bytes(), f"{folder}/{name}"


def test_a_repeated_run_reuses_every_stage_and_writes_the_same_bytes(
    tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch, fresh_cache
):
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "first"), capsys)[0] == 0
    assert report_of(tmp_path / "first")["reused"] == []
    assert {path.name for path in (fresh_cache / "attr-compress").iterdir()} >= {
        "head scores",
        "neuron scores",
        "int8 recipe choice",
        "recovered weights",
        "latency model",
        "layer sensitivity",
        "candidate judgement",
    }

    def never(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(search_module.LatencyModel, "fit", never)
    monkeypatch.setattr(search_module, "measure_sensitivity", never)
    code, _, err = run(target_args(tiny_model_dir, tiny_data, tmp_path / "second"), capsys)
    assert code == 0, err
    reused = [
        "head scores",
        "neuron scores",
        "int8 recipe choice",
        "latency model",
        "layer sensitivity",
        "candidate judgement",
        "recovered weights",
    ]
    assert report_of(tmp_path / "second")["reused"] == reused
    for name in ARTIFACTS:
        first, second = (tmp_path / run_name / name for run_name in ("first", "second"))
        if name.endswith(".json") and name != "prune_plan.json":
            first, second = json.loads(first.read_text()), json.loads(second.read_text())
            for record in (first, second):  # where the scores came from, what was reused, the confirming timing
                for key in ("model", "calibration", "confirmations", "reused"):
                    record.pop(key, None)
        else:
            first, second = first.read_bytes(), second.read_bytes()
        assert first == second, name
    assert "Reused from the cache" in (tmp_path / "second/report.md").read_text()


def test_a_one_byte_change_to_a_used_row_misses(tiny_model_dir, tiny_data, tmp_path, capsys, calib):
    every_row = ("--calib", calib, "--examples", "12", "--fidelity-examples", "1")  # all but one row score heads
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "first", *every_row), capsys)[0] == 0
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "again", *every_row), capsys)[0] == 0
    assert "head scores" in report_of(tmp_path / "again")["reused"]
    write_tsv(calib, [("the movie was great and dull!", "positive"), *TRAIN_SENTENCES[1:]])
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "second", *every_row), capsys)[0] == 0
    # the scores and everything fitted or judged on the training text are made again (the int8 recipe is judged
    # on its fidelity slice too); only the latency model, timed on the --data rows, may be reused
    assert set(report_of(tmp_path / "second")["reused"]) <= {"latency model"}


def test_no_cache_neither_reads_nor_writes(tiny_model_dir, tiny_data, tmp_path, capsys, fresh_cache):
    for name in ("first", "second"):
        assert run([*target_args(tiny_model_dir, tiny_data, tmp_path / name), "--no-cache"], capsys)[0] == 0
        assert report_of(tmp_path / name)["reused"] == []
    assert not (fresh_cache / "attr-compress").exists()


def test_a_search_killed_half_way_resumes_with_the_candidates_it_measured(
    tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch
):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    judged = search_module.judged
    monkeypatch.setattr(search_module, "judged", killed)  # the latency model and the sensitivity were measured
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)[0] == 130
    monkeypatch.setattr(search_module, "judged", judged)
    measured = []
    real = search_module.LatencyModel.fit

    def counted(timings):
        measured.append(timings)
        return real(timings)

    monkeypatch.setattr(search_module.LatencyModel, "fit", counted)
    code, _, err = run(target_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)
    assert code == 0, err
    assert measured == []
    assert len(report_of(tmp_path / "slim")["target_search"]["candidates"]) > 0


def other_tokenizer(folder):
    """The same vocabulary size in another order: every word gets another id."""
    for name in ("vocab.txt", "tokenizer.json"):
        (folder / name).unlink()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *reversed(WORDS)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from transformers import BertTokenizerFast

    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64).save_pretrained(folder)


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}, indent=2))


def test_a_tokenizer_replaced_in_place_is_never_served_from_the_cache(
    tiny_model_dir, tiny_data, calib, tmp_path, capsys
):
    model = copy_model(tiny_model_dir, tmp_path / "model")
    assert run(keep_args(model, tiny_data, calib, tmp_path / "before"), capsys)[0] == 0
    other_tokenizer(model)
    code, _, err = run(keep_args(model, tiny_data, calib, tmp_path / "after"), capsys)
    assert code == 0, err
    assert report_of(tmp_path / "after")["reused"] == []
    assert "reused from the cache" not in (tmp_path / "after/report.md").read_text()
    assert run(keep_args(model, tiny_data, calib, tmp_path / "fresh", "--no-cache"), capsys)[0] == 0
    assert_ships_the_same(tmp_path / "after", tmp_path / "fresh")
    assert_tokenizer_is_the_users(tmp_path / "after", model)


@pytest.mark.parametrize("changes", [{"hidden_act": "relu"}, {"layer_norm_eps": 1e-5}], ids=["relu", "eps"])
@pytest.mark.parametrize("where", ["second folder", "edited in place"])
def test_the_same_weights_with_another_config_are_another_model(
    tiny_model_dir, tiny_data, calib, tmp_path, capsys, changes, where
):
    model = copy_model(tiny_model_dir, tmp_path / "model")
    assert run(keep_args(model, tiny_data, calib, tmp_path / "first"), capsys)[0] == 0
    changed = model if where == "edited in place" else copy_model(model, tmp_path / "other")
    edit_config(changed, **changes)
    code, _, err = run(keep_args(changed, tiny_data, calib, tmp_path / "second"), capsys)
    assert code == 0, err
    assert report_of(tmp_path / "second")["reused"] == []
    shipped = json.loads((tmp_path / "second/pruned/config.json").read_text())
    assert all(shipped[key] == value for key, value in changes.items())
    assert run(keep_args(changed, tiny_data, calib, tmp_path / "fresh", "--no-cache"), capsys)[0] == 0
    assert_ships_the_same(tmp_path / "second", tmp_path / "fresh")


def cached_entry(cache, stage):
    (entry,) = (cache / "attr-compress" / stage).iterdir()
    return entry


@pytest.mark.parametrize(
    "damage",
    [
        ("files/vocab.txt", lambda path: path.write_text(path.read_text().replace("movie", "mvoie"))),
        ("files/model.safetensors", lambda path: path.write_bytes(path.read_bytes()[:-100] + b"\0" * 100)),
        ("files/config.json", lambda path: path.unlink()),
        ("files/notes.txt", lambda path: path.write_text("added")),
    ],
    ids=["vocab-changed", "weights-changed", "config-missing", "extra-file"],
)
def test_a_damaged_entry_is_a_miss_recomputed_and_replaced(
    tiny_model_dir, tiny_data, calib, tmp_path, capsys, fresh_cache, damage
):
    assert run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "first"), capsys)[0] == 0
    name, change = damage
    entry = cached_entry(fresh_cache, "recovered weights")
    change(entry / name)
    args = keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "second")
    args.remove("--quiet")
    code, _, err = run(args, capsys)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "is damaged" in line]
    assert len(notes) == 1 and "'recovered weights' entry" in notes[0] and "recomputing it" in notes[0]
    reused = report_of(tmp_path / "second")["reused"]
    assert "recovered weights" not in reused and {"head scores", "neuron scores"} <= set(reused)
    assert_ships_the_same(tmp_path / "second", tmp_path / "first")
    assert_tokenizer_is_the_users(tmp_path / "second", tiny_model_dir)
    code, _, err = run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "third"), capsys)
    assert code == 0 and "recovered weights" in report_of(tmp_path / "third")["reused"]  # the entry was replaced


def test_a_damaged_json_entry_is_a_miss(tiny_model_dir, tiny_data, calib, tmp_path, capsys, fresh_cache):
    assert run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "first"), capsys)[0] == 0
    result = cached_entry(fresh_cache, "head scores") / "result.json"
    scores = json.loads(result.read_text())
    scores["scores"][0][0] += 1.0
    result.write_text(json.dumps(scores))
    code, _, err = run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "second"), capsys)
    assert code == 0, err
    assert "head scores" not in report_of(tmp_path / "second")["reused"]
    assert_ships_the_same(tmp_path / "second", tmp_path / "first")


def test_keys_follow_every_field_of_an_options_dataclass():
    """A new option is in the key the moment it is added: nobody lists the fields by hand."""

    @dataclasses.dataclass(frozen=True)
    class WithNewOption(ScoringOptions):
        smoothing: float = 0.0

    assert stage_key("head scores", WithNewOption()) != stage_key("head scores", WithNewOption(smoothing=0.1))
    assert stage_key("head scores", ScoringOptions(steps=3)) != stage_key("head scores", ScoringOptions(steps=4))
    # progress bars change nothing a stage computes
    assert stage_key("head scores", ScoringOptions(progress=True)) == stage_key("head scores", ScoringOptions())
    assert stage_key("head scores", ScoringOptions()) != stage_key("neuron scores", ScoringOptions())


def test_a_model_is_keyed_by_what_it_computes(tiny_model_dir, tmp_path):
    from attr_compress.compressor.models.loading import load_model

    same = copy_model(tiny_model_dir, tmp_path / "same")
    relu = copy_model(tiny_model_dir, tmp_path / "relu")
    edit_config(relu, hidden_act="relu")
    tokens = copy_model(tiny_model_dir, tmp_path / "tokens")
    other_tokenizer(tokens)
    weights = tmp_path / "weights"
    tiny_model(seed=1).save_pretrained(weights)
    write_tokenizer(weights)
    key = {name: stage_key("s", load_model(folder)) for name, folder in [("original", tiny_model_dir), ("same", same)]}
    assert key["original"] == key["same"]  # the folder's name is not part of the model
    for folder in (relu, tokens, weights):
        assert stage_key("s", load_model(folder)) != key["original"], folder.name


def test_a_value_without_an_identity_is_refused_not_stringified(tmp_path):
    with pytest.raises(TypeError, match="PosixPath has no cache identity"):
        fingerprint((tmp_path / "dev.tsv",))
    with pytest.raises(TypeError, match="object has no cache identity"):
        fingerprint({"model": object()})


@dataclasses.dataclass(frozen=True)
class _Point:
    x: int
    names: tuple[str, ...]


def test_an_entry_is_written_with_its_manifest_and_read_back_as_its_type(tmp_path):
    cache = StageCache(tmp_path)
    point = _Point(1, ("a", "b"))
    assert cache.record("stage", (1, "a"), _Point, lambda: point) == (point, False)
    assert cache.record("stage", (1, "a"), _Point, lambda: pytest.fail("computed again")) == (point, False)  # its own
    later = StageCache(tmp_path)  # a later run: the entry is reused
    assert later.record("stage", (1, "a"), _Point, lambda: pytest.fail("computed again")) == (point, True)
    entry = cache.entry("stage", (1, "a"))
    assert json.loads((entry / "manifest.json").read_text())["files"].keys() == {"result.json"}

    def build(folder):
        folder.mkdir()
        (folder / "weights.bin").write_bytes(b"\1\2\3")
        return None

    assert cache.folder("folder", ("k",), tmp_path / "out1", _Point | None, build) == (None, False)
    assert later.folder("folder", ("k",), tmp_path / "out2", _Point | None, build) == (None, True)
    assert (tmp_path / "out2/weights.bin").read_bytes() == b"\1\2\3"


def test_rows_that_choose_are_never_measured(tiny_model_dir, tiny_data, calib, tmp_path, capsys):
    args = keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "same", "--select-data", tiny_data)
    args[args.index("--select-examples") + 1] = "12"
    code, _, err = run(args, capsys)
    assert code == 2 and err.count("\n") == 1 and "also a row that chooses" in err
    assert not (tmp_path / "same").exists()
    some = write_tsv(tmp_path / "select.tsv", [*SENTENCES[:3], *TRAIN_SENTENCES[:1]])  # 3 shared, 1 a training row
    code, _, err = run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "some", "--select-data", some), capsys)
    assert code == 0, err
    data = report_of(tmp_path / "some")["data"]
    assert data["evaluation_rows"] == len(SENTENCES) - 3 and data["selection_rows"] == 3
    assert data["excluded"] == [
        "3 rows of --data also in --select-data were not measured",
        "1 row of --select-data also in --calib was not used to choose",
    ]
    for page in ("report.md", "report.html"):
        assert "3 rows of --data also in --select-data were not measured" in (tmp_path / "some" / page).read_text()


def test_rows_the_model_trained_on_are_never_measured(tiny_model_dir, tiny_data, tmp_path, capsys):
    overlap = write_tsv(tmp_path / "train.tsv", [*TRAIN_SENTENCES, (SENTENCES[0][0].upper() + "  ", "positive")])
    code, _, err = run(keep_args(tiny_model_dir, tiny_data, overlap, tmp_path / "slim"), capsys)
    assert code == 0, err
    data = report_of(tmp_path / "slim")["data"]
    # the first row of dev.tsv, found by content despite case and spacing: neither measured nor choosing
    assert 1 not in {*data["evaluation_row_numbers"], *data["selection_row_numbers"]}
    assert len(data["excluded"]) == 1 and "1 row of" in data["excluded"][0] and "also in --calib" in data["excluded"][0]


def test_shared_data_scores_and_measures_on_rows_apart(tiny_model_dir, tiny_data, tmp_path, capsys):
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)
    assert code == 0, err
    data = report_of(tmp_path / "slim")["data"]
    measured, chose = set(data["evaluation_row_numbers"]), set(data["selection_row_numbers"])
    assert measured and chose and not measured & chose
    assert data["calibration_examples"] + len(measured) + len(chose) == len(SENTENCES)


@pytest.mark.parametrize(
    "option", ["--target-speedup", "--latency-budget", "--max-drop", "--keep", "--distill-minutes"]
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_float_option_that_is_not_finite_is_refused_before_any_work(
    tiny_model_dir, tiny_data, tmp_path, capsys, option, value
):
    args = [a for a in pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim") if a not in ("--keep", "0.5")]
    code, _, err = run([*args, option, value], capsys)
    assert code == 2 and "not a finite number" in err and option in err and "Traceback" not in err
    assert not (tmp_path / "slim").exists()


def test_the_api_refuses_a_float_that_is_not_finite():
    from attr_compress.compressor.errors import InputError
    from attr_compress.compressor.recovery.lsq import RecoveryOptions

    from attr_compress.pipeline import PipelineOptions

    with pytest.raises(InputError, match="--target-speedup must be a finite number, got nan"):
        PipelineOptions(model="m", target_speedup=float("nan"))
    with pytest.raises(InputError, match="--ridge must be a finite number, got inf"):
        PipelineOptions(model="m", keep=0.5, recovery=RecoveryOptions(ridge=float("inf")))


def test_an_output_where_nothing_can_be_written_is_a_user_error(tiny_model_dir, tiny_data, capsys):
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, "/proc/attr-compress-check"), capsys)
    assert code == 2 and err.startswith("error: cannot write in '/proc'") and err.count("\n") == 1


def test_an_entry_that_verifies_but_does_not_load_names_the_cache_not_a_hidden_folder(
    tiny_model_dir, tiny_data, calib, tmp_path, capsys, fresh_cache
):
    from attr_compress.compressor.cache import MANIFEST, manifest_of

    assert run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "first"), capsys)[0] == 0
    entry = cached_entry(fresh_cache, "recovered weights")
    (entry / "files/model.safetensors").write_bytes(b"not a safetensors file")
    (entry / MANIFEST).write_text(json.dumps({"files": manifest_of(entry)}))  # damaged, yet consistent
    code, _, err = run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "second"), capsys)
    assert code == 1 and err.count("\n") == 1 and ".partial-" not in err
    assert "reused from the cache" in err and "--no-cache" in err and "re-save the model" not in err
    assert not (tmp_path / "second").exists()
    assert run(keep_args(tiny_model_dir, tiny_data, calib, tmp_path / "third", "--no-cache"), capsys)[0] == 0


def test_an_os_error_inside_the_staging_folder_names_the_output(
    tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch
):
    import errno
    import os

    from attr_compress import pipeline

    def disk_full(job):
        path = job.staging / "trees" / "tree_001.svg"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pipeline, "explain_examples", disk_full)
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)
    assert code == 2 and ".partial-" not in err and f"'{tmp_path / 'slim' / 'trees' / 'tree_001.svg'}'" in err
