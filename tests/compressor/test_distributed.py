"""Every heavy stage sharded over two CPU processes (torchrun, gloo) equals the single-process result: head and
FFN neuron scoring, the least-squares refit's statistics, and the distillation (DistributedDataParallel)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.helpers import pipeline_args, write_tsv


def cli(command, args, cwd, *, processes, says="wrote"):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    argv = [*(launcher if processes > 1 else [sys.executable]), "-m", "attr_compress.cli", command, *map(str, args)]
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count(says) == 1  # only rank 0 writes and talks
    return result


@pytest.mark.parametrize("method", ["attattr-paper", "taylor"])
def test_two_processes_score_heads_as_one(method, tiny_model_dir, tiny_data, tmp_path):
    common = [tiny_model_dir, "--calib", tiny_data, "--examples", "12", "--steps", "3", "--method", method]
    cli("score", [*common, "--out", tmp_path / "single"], tmp_path, processes=1)
    cli("score", [*common, "--out", tmp_path / "sharded"], tmp_path, processes=2)
    single = json.loads((tmp_path / "single" / "importance.json").read_text())
    sharded = json.loads((tmp_path / "sharded" / "importance.json").read_text())
    assert sharded["examples"] == single["examples"] == 12
    np.testing.assert_allclose(sharded["scores"], single["scores"], rtol=1e-5, atol=1e-8)
    assert np.abs(np.asarray(single["scores"])).max() > 1e-4  # not vacuous


@pytest.fixture(scope="module")
def scored(tiny_model_dir, tiny_data, tmp_path_factory):
    """Head and FFN neuron importance of the tiny model, scored by two processes and by one."""
    folder = tmp_path_factory.mktemp("scored")
    common = [tiny_model_dir, "--calib", tiny_data, "--examples", "12", "--steps", "3", "--ffn"]
    cli("score", [*common, "--out", folder / "single"], folder, processes=1)
    cli("score", [*common, "--out", folder / "sharded"], folder, processes=2)
    return folder


def test_two_processes_score_neurons_as_one(scored):
    single = json.loads((scored / "single" / "ffn_importance.json").read_text())
    sharded = json.loads((scored / "sharded" / "ffn_importance.json").read_text())
    np.testing.assert_allclose(sharded["scores"], single["scores"], rtol=1e-5, atol=1e-8)
    assert np.abs(np.asarray(single["scores"])).max() > 1e-4


def calibration_rows():
    """Sentences of many lengths, so the fit's length-grouped batches are several and both processes get some."""
    words = ["good", "bad", "film", "story", "actors", "fun", "dull"]
    return [(" ".join(words[: 1 + n % 7] * (1 + n // 7)), "positive" if n % 2 else "negative") for n in range(28)]


def pruned_weights(scored, model, calib, recovery, out, processes):
    args = [
        model, "--importance", scored / "single" / "importance.json", "--keep", "0.5",
        "--ffn-importance", scored / "single" / "ffn_importance.json", "--keep-ffn", "0.5",
        "--calib", calib, "--fidelity-examples", "4", *recovery, "--out", out,
    ]  # fmt: skip
    cli("prune", args, out.parent, processes=processes)
    return load_file(out / "model.safetensors"), json.loads((out / "recovery.json").read_text())


def test_two_processes_refit_and_distil_as_one(scored, tiny_model_dir, tmp_path):
    """The refit sums its normal equations over processes; the distillation trains each process on its share of
    every batch and averages the gradients (DistributedDataParallel): the weights match one process's."""
    calib = write_tsv(tmp_path / "train.tsv", calibration_rows())
    runs = {}
    for name, recovery in {
        "lsq": ["--recover", "lsq"],
        "distill": ["--recover", "distill", "--distill-steps", "4"],
    }.items():
        for processes in (1, 2):
            out = tmp_path / f"{name}-{processes}"
            runs[name, processes] = pruned_weights(scored, tiny_model_dir, calib, recovery, out, processes)
    original = load_file(tiny_model_dir / "model.safetensors")
    (fitted, fit_record), (fitted_2, fit_record_2) = runs["lsq", 1], runs["lsq", 2]
    refitted = "bert.encoder.layer.0.output.dense.weight"
    assert fitted[refitted].shape != original[refitted].shape or not np.allclose(fitted[refitted], original[refitted])
    assert fit_record["examples"] == fit_record_2["examples"] == 24  # 28 rows less the 4 held out
    for name, weight in fitted.items():
        np.testing.assert_allclose(fitted_2[name], weight, rtol=1e-4, atol=1e-6, err_msg=name)

    (distilled, record), (distilled_2, record_2) = runs["distill", 1], runs["distill", 2]
    assert record["distill"]["steps"] == record_2["distill"]["steps"] == 4
    assert record_2["distill"]["loss_first"] == pytest.approx(record["distill"]["loss_first"], rel=1e-4)
    update = np.concatenate([(distilled[name] - fitted[name]).ravel() for name in fitted])
    update_2 = np.concatenate([(distilled_2[name] - fitted[name]).ravel() for name in fitted])
    assert np.linalg.norm(update) > 1e-3  # the distillation moved the weights
    assert np.linalg.norm(update_2 - update) < 0.05 * np.linalg.norm(update)


def test_a_whole_run_under_torchrun_shares_its_heavy_stages_and_writes_once(tiny_model_dir, tiny_data, tmp_path):
    """Rank 0 runs the pipeline and takes the output folder; the other rank joins its scoring, refits and
    distillation: the shipped weights match a one-process run's."""
    calib = write_tsv(tmp_path / "train.tsv", calibration_rows())
    extra = ["--keep-ffn", "0.5", "--recover", "distill", "--distill-steps", "3", "--no-cache"]
    weights = {}
    for processes in (1, 2):
        out = tmp_path / f"run-{processes}"
        args = pipeline_args(tiny_model_dir, tiny_data, out, *extra)
        args[args.index("--calib") + 1] = calib
        result = cli("run", args, tmp_path, processes=processes, says="attr-compress: kept")
        assert "another attr-compress run" not in result.stderr
        report = json.loads((out / "report.json").read_text())
        assert report["recovery"]["method"] == "distill"
        weights[processes] = load_file(out / "pruned" / "model.safetensors")
    assert weights[1].keys() == weights[2].keys()
    for name, weight in weights[1].items():
        np.testing.assert_allclose(weights[2][name], weight, atol=2e-4, err_msg=name)


def test_without_torchrun_a_collective_call_is_a_plain_call():
    from attr_compress.compressor.scoring.distributed import collective, lead_or_serve

    assert lead_or_serve(lambda: collective(sum, [1, 2, 3], start=4)) == 10
