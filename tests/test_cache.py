"""Work is never done twice: stage results are cached by content (model weights, data rows, options), a
repeated run reuses them and writes byte-identical artifacts, a changed row or --no-cache recomputes, and a
search killed half-way resumes with the candidates it had measured."""

import json

from attr_compress import search as search_module
from tests.conftest import SENTENCES, write_tsv
from tests.test_cli import pipeline_args, run

ARTIFACTS = [
    "importance.json",
    "ffn_importance.json",
    "prune_plan.json",
    "pruned/model.safetensors",
    "target_search.json",
]


def target_args(model, data, out, *extra):
    args = pipeline_args(model, data, out, "--trees", "0", "--recover", "lsq", *extra)
    del args[args.index("--keep") : args.index("--keep") + 2]
    return [*args, "--latency-budget", "1000", "--max-drop", "100"]


def report_of(out):
    return json.loads((out / "report.json").read_text())


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
        "candidate timing",
        "candidate accuracy",
        "candidate int8",
    }

    def never(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(search_module._Timer, "measure", never)
    code, _, err = run(target_args(tiny_model_dir, tiny_data, tmp_path / "second"), capsys)
    assert code == 0, err
    reused = ["head scores", "neuron scores", "int8 recipe choice", "recovered weights"]
    assert report_of(tmp_path / "second")["reused"] == reused
    for name in ARTIFACTS:
        first, second = (tmp_path / run_name / name for run_name in ("first", "second"))
        if name.endswith(".json") and name != "prune_plan.json":
            first, second = json.loads(first.read_text()), json.loads(second.read_text())
            for record in (first, second):
                record.pop("model", None), record.pop("calibration", None)
        else:
            first, second = first.read_bytes(), second.read_bytes()
        assert first == second, name
    assert "Reused from the cache" in (tmp_path / "second/report.md").read_text()


def test_a_one_byte_change_to_a_used_row_misses(tiny_model_dir, tiny_data, tmp_path, capsys):
    calib = write_tsv(tmp_path / "train.tsv")
    every_row = ("--calib", calib, "--examples", "12")  # every training row scores heads, the changed one too
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "first", *every_row), capsys)[0] == 0
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "again", *every_row), capsys)[0] == 0
    assert "head scores" in report_of(tmp_path / "again")["reused"]
    write_tsv(calib, [("the movie was great and fun!", "positive"), *SENTENCES[1:]])
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "second", *every_row), capsys)[0] == 0
    # the scores and everything fitted on the training rows are made again; the int8 recipe, chosen on the
    # unchanged --data rows, is still reused
    assert report_of(tmp_path / "second")["reused"] == ["int8 recipe choice"]


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

    choices = search_module._Judge.choices
    monkeypatch.setattr(search_module._Judge, "choices", killed)  # the staircase was measured, then the kill
    assert run(target_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)[0] == 130
    monkeypatch.setattr(search_module._Judge, "choices", choices)
    measured = []
    real = search_module._Timer.measure

    def counted(self, plan):
        measured.append(plan)
        return real(self, plan)

    monkeypatch.setattr(search_module._Timer, "measure", counted)
    code, _, err = run(target_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)
    assert code == 0, err
    assert measured == []
    assert len(report_of(tmp_path / "slim")["target_search"]["candidates"]) > 0
