"""Scoring sharded over two CPU processes (torchrun, gloo) equals the single-process result."""

import json
import subprocess
import sys

import numpy as np
import pytest


def score(args, cwd, *, processes):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [*(launcher if processes > 1 else [sys.executable]), "-m", "attr_compress.cli", "score", *map(str, args)]
    result = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.parametrize("method", ["attattr-paper", "taylor"])
def test_two_processes_match_one(method, tiny_model_dir, tiny_data, tmp_path):
    common = [tiny_model_dir, "--calib", tiny_data, "--examples", "12", "--steps", "3", "--method", method]
    score([*common, "--out", tmp_path / "single"], tmp_path, processes=1)
    result = score([*common, "--out", tmp_path / "sharded"], tmp_path, processes=2)
    assert result.stdout.count("wrote") == 1  # only rank 0 writes and talks
    single = json.loads((tmp_path / "single" / "importance.json").read_text())
    sharded = json.loads((tmp_path / "sharded" / "importance.json").read_text())
    assert sharded["examples"] == single["examples"] == 12
    np.testing.assert_allclose(sharded["scores"], single["scores"], rtol=1e-5, atol=1e-8)
    assert np.abs(np.asarray(single["scores"])).max() > 1e-4  # not vacuous
