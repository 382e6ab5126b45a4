"""The README's Python examples run as written (on the shared demo model, from a folder beside shared/)."""

import re

import pytest

from tests.helpers import ROOT, SHARED

README = ROOT / "README.md"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not SHARED.is_dir(), reason="shared demo assets not present")]


def example(name: str) -> str:
    """The python block after ``<!-- readme-example: name -->``."""
    match = re.search(rf"<!-- readme-example: {name} -->\n```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert match, f"README has no example '{name}'"
    return match.group(1)


@pytest.fixture
def beside_shared(tmp_path, monkeypatch):
    """A working folder whose ../shared is the shared assets, as the project root's is."""
    (tmp_path / "shared").symlink_to(SHARED)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "work"


def test_the_one_call_example_compresses_the_demo_model(beside_shared, capsys):
    namespace = {}
    exec(compile(example("compress"), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    report = namespace["report"]
    assert report.heads.kept == 36 and report.heads.total == 72
    assert 0.8 <= report.shipped.accuracy <= 1 and report.ratios["speedup_p50_pruned_int8_vs_original_int8"] > 0
    assert (beside_shared / "slim/report.json").is_file() and (
        beside_shared / "slim/onnx/model_quantized.onnx"
    ).is_file()
    assert "accuracy" in capsys.readouterr().out


def test_the_stage_example_runs_each_stage_on_models_in_memory(beside_shared, capsys):
    namespace = {}
    exec(compile(example("stages"), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["plan"].kept_heads == 36 and namespace["recovery"].method == "lsq"
    assert all(check["passed"] for check in namespace["record"].parity)
    rows = {row.name: row for row in namespace["measured"].results}
    assert set(rows) == {"original/pytorch-fp32", "pruned/onnx-int8"} and rows["pruned/onnx-int8"].accuracy > 0.7
    assert len(namespace["trees"]) == 2 and (beside_shared / "slim-trees/tree_002.svg").is_file()
    assert "pruned/onnx-int8" in capsys.readouterr().out
