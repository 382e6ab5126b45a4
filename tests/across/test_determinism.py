"""Same inputs and options, same bytes: importance.json, the pruned heads and the pruned weights."""

import hashlib

import pytest

from attr_compress.cli import main


def run(argv):
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
        raise SystemExit(0)
    assert exit_info.value.code == 0


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("method", ["attattr", "taylor"])
def test_two_runs_give_identical_files(method, tiny_model_dir, tiny_data, tmp_path):
    for name in ("a", "b"):
        run(
            [
                "score",
                tiny_model_dir,
                "--calib",
                tiny_data,
                "--out",
                tmp_path / name,
                "--examples",
                "5",
                "--steps",
                "3",
                "--seed",
                "7",
                "--method",
                method,
            ]
        )
        run(
            [
                "prune",
                tiny_model_dir,
                "--importance",
                tmp_path / name / "importance.json",
                "--keep",
                "0.5",
                "--out",
                tmp_path / name / "pruned",
            ]
        )
    for file in ("importance.json", "pruned/model.safetensors", "pruned/config.json", "pruned/prune_plan.json"):
        assert digest(tmp_path / "a" / file) == digest(tmp_path / "b" / file), file
