"""Sweeps: scores computed once per method and reused at every keep level; files and plots written."""

import pytest
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.scoring.options import ScoringOptions
from attr_compress.compressor.scoring.rankers import Ranker
from attr_compress.evaluation.curves import SweepResult

from attr_compress.cli import main
from attr_compress.sweep import SweepOptions, area_under_curve, run_sweep


def test_area_under_curve_is_mean_accuracy_over_fraction_pruned():
    assert area_under_curve([0.5], [0.5], 1.0) == pytest.approx(0.75)
    assert area_under_curve([0.75, 0.5], [0.8, 0.8], 0.8) == pytest.approx(0.8)


def test_sweep_scores_each_method_once_and_reuses_it(tiny_model_dir, tiny_data, monkeypatch):
    calls = []
    original = Ranker.rank

    def counting(self, data):
        calls.append(self.name)
        return original(self, data)

    monkeypatch.setattr(Ranker, "rank", counting)
    loaded = load_model(tiny_model_dir)
    data = load_labelled_data(tiny_data, loaded.label2id)
    options = SweepOptions(
        methods=("attattr-paper", "taylor", "random"),
        keeps=(0.75, 0.5, 0.25),
        latency_method=None,
        scoring=ScoringOptions(steps=2),
    )
    sweep = run_sweep(loaded, data, data, options)
    assert sorted(calls) == ["attattr-paper", "random", "random", "random", "taylor"]
    for method in options.methods:
        curve = sweep.methods[method]
        assert len(curve.accuracy) == 3 and all(0 <= a <= 1 for a in curve.accuracy)
        assert 0 <= curve.auc <= 1 and curve.seconds >= 0
    assert len(sweep.methods["random"].accuracy_per_seed) == 3
    assert sweep.methods["taylor"].accuracy_per_seed is None
    assert sweep.latency is None
    assert SweepResult.from_dict(sweep.to_dict()) == sweep  # sweep.json reads back as the same record


def test_sweep_command_writes_tables_and_plots(tiny_model_dir, tiny_data, tmp_path):
    out = tmp_path / "sweep"
    args = [
        "sweep",
        tiny_model_dir,
        "--data",
        tiny_data,
        "--calib",
        tiny_data,
        "--out",
        out,
        "--methods",
        "attattr-paper,random",
        "--keeps",
        "0.75,0.5",
        "--latency-method",
        "attattr-paper",
        "--steps",
        "2",
        "--latency-examples",
        "4",
        "--quiet",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
        raise SystemExit(0)
    assert exit_info.value.code == 0
    sweep = SweepResult.load(out / "sweep.json")
    assert sweep.keeps == [0.75, 0.5]
    assert {row.name for row in sweep.latency} == {
        "original/pytorch-fp32",
        "original/onnx-fp32",
        "original/onnx-int8",
        "keep-0.75/onnx-int8",
        "keep-0.5/onnx-int8",
    }
    for name in ("sweep_accuracy.png", "sweep_frontier.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| attattr-paper |" in (out / "sweep.md").read_text()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--keeps", "0.5,1.5", "every keep level"),
        ("--keeps", "half", "comma-separated"),
        ("--methods", "attattr,magic", "unknown method"),
    ],
)
def test_sweep_rejects_bad_lists(option, value, message, tiny_model_dir, tiny_data, tmp_path, capsys):
    args = ["sweep", tiny_model_dir, "--data", tiny_data, "--calib", tiny_data, "--out", tmp_path / "s", option, value]
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
