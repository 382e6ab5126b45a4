"""Faults around a run: two runs on one output, a killed run, a model folder whose parts disagree, an error
nobody anticipated, a full disk or a forbidden file. Each ends in one line, the right exit code, and no
partial output; the user's existing folders are never touched."""

import errno
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.helpers import pipeline_args, run, tiny_model, write_tokenizer


def command(model, data, out, *extra):
    return [sys.executable, "-m", "attr_compress.cli", *map(str, pipeline_args(model, data, out, *extra))]


def wait_for(predicate, seconds=120):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_of_two_runs_on_one_output_exactly_one_writes_it(tiny_model_dir, tiny_data, tmp_path):
    out = tmp_path / "slim"
    first = subprocess.Popen(
        command(tiny_model_dir, tiny_data, out, "--steps", "300"), stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: list(tmp_path.glob(".slim.partial-*")) or first.poll() is not None)
    assert first.poll() is None, first.stderr.read()  # the first run holds the output
    second = subprocess.run(command(tiny_model_dir, tiny_data, out, "--force"), capture_output=True, text=True)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1
    assert f"another attr-compress run (pid {first.pid}) is writing '{out}'" in second.stderr
    assert json.loads((out / "report.json").read_text())["options"]["steps"] == 300  # the first run's folder
    assert sorted(path.name for path in tmp_path.iterdir()) == ["slim"]  # no lock, no partial left


def test_a_killed_run_leaves_a_partial_that_the_next_run_removes(tiny_model_dir, tiny_data, tmp_path, capsys):
    out = tmp_path / "slim"
    killed = subprocess.Popen(
        command(tiny_model_dir, tiny_data, out, "--steps", "4000", "--no-cache"), stderr=subprocess.DEVNULL
    )
    wait_for(lambda: list(tmp_path.glob(".slim.partial-*")))
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    (partial,) = tmp_path.glob(".slim.partial-*")
    assert partial.name == f".slim.partial-{killed.pid}"
    args = [arg for arg in pipeline_args(tiny_model_dir, tiny_data, out) if arg != "--quiet"]
    code, stdout, err = run(args, capsys)
    assert code == 0, err
    assert f"removed '{partial}', left by an attr-compress run that was killed" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["slim"]


def test_a_partial_of_a_live_process_or_of_someone_else_is_left_alone(tiny_model_dir, tiny_data, tmp_path, capsys):
    live = tmp_path / f".slim.partial-{os.getpid()}0"  # not ours: no marker
    live.mkdir()
    (live / "notes.txt").write_text("keep me")
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)
    assert code == 0, err
    assert (live / "notes.txt").read_text() == "keep me"


def test_a_held_lock_refuses_at_once_and_force_is_checked_again_at_rename(tiny_model_dir, tiny_data, tmp_path, capsys):
    out = tmp_path / "slim"
    with open(tmp_path / ".slim.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242")
        lock.flush()
        code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, out), capsys)
    assert code == 2 and "another attr-compress run (pid 4242) is writing" in err and not out.exists()


def test_a_folder_that_appears_during_the_run_is_never_replaced(
    tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "slim"
    from attr_compress import pipeline

    real = pipeline.explain_examples

    def meanwhile(job):
        out.mkdir()
        (out / "mine.txt").write_text("the user's")
        return real(job)

    monkeypatch.setattr(pipeline, "explain_examples", meanwhile)
    code, _, err = run([*pipeline_args(tiny_model_dir, tiny_data, out), "--force"], capsys)
    assert code == 2 and "was not written by attr-compress" in err
    assert (out / "mine.txt").read_text() == "the user's" and sorted(p.name for p in tmp_path.iterdir()) == ["slim"]


def broken_folder(tmp_path, change):
    folder = tmp_path / "broken"
    model = tiny_model()
    tokenizer_folder = folder
    write_tokenizer(tokenizer_folder)
    change(model, folder)
    return folder


def more_tokens(model, folder):
    model.save_pretrained(folder)
    vocab = folder / "vocab.txt"
    vocab.write_text(vocab.read_text() + "".join(f"extra{i}\n" for i in range(10)))
    (folder / "tokenizer.json").unlink(missing_ok=True)


def longer_tokenizer(model, folder):
    model.save_pretrained(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_max_length"] = 4096
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def nan_weights(model, folder):
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight[0, 0] = float("nan")
    model.save_pretrained(folder)


def three_labels(model, folder):
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    config["label2id"] = {"a": 0, "b": 1, "c": 2}
    (folder / "config.json").write_text(json.dumps(config))


def quantised(model, folder):
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"load_in_8bit": True}
    (folder / "config.json").write_text(json.dumps(config))


def int8_dtype(model, folder):
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["torch_dtype"] = "int8"
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "change, message",
    [
        (more_tokens, "tokens but the embedding table in"),
        (longer_tokenizer, "the tokenizer allows 4096 tokens but"),
        (nan_weights, "contain NaN or infinity (bert.encoder.layer.1.output.dense.weight)"),
        (three_labels, "has 2 outputs but config.json names 3 labels"),
        (quantised, "describes a quantised model"),
        (int8_dtype, "stores the weights as int8"),
    ],
)
def test_a_model_folder_whose_parts_disagree_is_refused_before_any_work(tmp_path, tiny_data, capsys, change, message):
    folder = broken_folder(tmp_path, change)
    code, _, err = run(pipeline_args(folder, tiny_data, tmp_path / "slim"), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "slim").exists() and not list(tmp_path.glob(".slim.*"))


STAGES = [
    "score",
    "export_original",
    "choose_sizes",
    "prune_and_recover",
    "export_pruned",
    "check_selection",
    "measure",
    "explain_examples",
    "build_report",
]


@pytest.mark.parametrize("stage", STAGES)
def test_an_unexpected_failure_in_any_stage_is_one_line_and_leaves_nothing(
    stage, tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch
):
    from attr_compress import pipeline

    def fail(*args, **kwargs):
        raise RuntimeError(f"injected into {stage}\nsecond line")

    monkeypatch.setattr(pipeline, stage, fail)
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"internal error: RuntimeError: injected into {stage} second line; re-run with --debug and report it" in err
    assert list(tmp_path.iterdir()) == []


class FailingWrites:
    """Raise ``code`` at the n-th file opened for writing inside a staging folder (every Python-level write:
    JSON, markdown, HTML, PNG, SVG, tokenizer files), or count them when ``fail_at`` is None."""

    def __init__(self, code, fail_at=None):
        self.code, self.fail_at, self.seen = code, fail_at, 0
        self.real = io.open

    def __call__(self, file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+") and ".partial-" in str(file):
            self.seen += 1
            if self.seen == self.fail_at:
                raise OSError(self.code, os.strerror(self.code), str(file))
        return self.real(file, mode, *args, **kwargs)


def patch_writes(monkeypatch, writes):
    import builtins

    monkeypatch.setattr(builtins, "open", writes)
    monkeypatch.setattr(io, "open", writes)


@pytest.fixture(scope="module")
def write_count(tiny_model_dir, tiny_data, tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    counter = FailingWrites(errno.ENOSPC)
    patch_writes(monkeypatch, counter)
    try:
        out = tmp_path_factory.mktemp("count") / "slim"
        with pytest.raises(SystemExit):
            from attr_compress.cli import main

            main([str(arg) for arg in pipeline_args(tiny_model_dir, tiny_data, out)])
            raise SystemExit(0)
    finally:
        monkeypatch.undo()
    assert counter.seen > 10
    return counter.seen


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_full_disk_or_a_forbidden_file_at_any_write_leaves_the_old_folder_untouched(
    code, write_count, tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "slim"
    assert run(pipeline_args(tiny_model_dir, tiny_data, out), capsys)[0] == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    # a full disk at every write; a forbidden file at the first, a middle and the last (the same code path)
    positions = range(1, write_count + 1) if code == errno.ENOSPC else sorted({1, write_count // 2, write_count})
    for fail_at in positions:
        with pytest.MonkeyPatch.context() as patch:
            patch_writes(patch, FailingWrites(code, fail_at))
            result, _, err = run([*pipeline_args(tiny_model_dir, tiny_data, out), "--force"], capsys)
        assert result in (1, 2) and len(err.strip().splitlines()) == 1, (fail_at, err)
        assert os.strerror(code) in err and ("nothing was written" in err or "pass another --out" in err)
        assert sorted(path.name for path in tmp_path.iterdir()) == ["slim"], fail_at
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_a_failed_rename_puts_the_old_folder_back(tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "slim"
    assert run(pipeline_args(tiny_model_dir, tiny_data, out), capsys)[0] == 0
    before = (out / "report.json").read_bytes()
    real = Path.rename

    def refuse_the_new_folder(self, target):
        if ".partial-" in self.name:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, target)

    monkeypatch.setattr(Path, "rename", refuse_the_new_folder)
    code, _, err = run([*pipeline_args(tiny_model_dir, tiny_data, out), "--force"], capsys)
    assert code == 2 and "Permission denied" in err
    assert (out / "report.json").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["slim"]


def test_weights_saved_with_nan_by_hand_are_named(tmp_path, tiny_data, capsys):
    folder = tmp_path / "model"
    model = tiny_model()
    model.save_pretrained(folder)
    write_tokenizer(folder)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    state["classifier.bias"] = torch.tensor([float("inf"), 0.0])
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    code, _, err = run(pipeline_args(folder, tiny_data, tmp_path / "slim"), capsys)
    assert code == 2 and "model.safetensors' contain NaN or infinity (classifier.bias)" in err
