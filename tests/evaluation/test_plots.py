"""The head-importance heatmap writes a real image and refuses malformed tables."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from attr_compress.evaluation.report.figures import plot_head_importance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scores(layers: int = 4, heads: int = 6) -> list[list[float]]:
    return np.random.default_rng(0).normal(size=(layers, heads)).round(4).tolist()


def test_png_without_mask(tmp_path) -> None:
    path = tmp_path / "out" / "importance.png"
    plot_head_importance(_scores(), path, title="head importance")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_png_with_mask(tmp_path) -> None:
    scores = _scores()
    pruned = [[value < 0 for value in row] for row in scores]
    path = tmp_path / "importance.png"
    plot_head_importance(scores, path, title="pruned $heads$", pruned=pruned)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 1000


def test_all_zero_and_single_cell(tmp_path) -> None:
    plot_head_importance([[0.0, 0.0], [0.0, 0.0]], tmp_path / "zero.png", title="zeros")
    plot_head_importance([[-2.5]], tmp_path / "one.png", title="one", pruned=[[True]])
    assert (tmp_path / "zero.png").read_bytes()[:8] == PNG_MAGIC
    assert (tmp_path / "one.png").read_bytes()[:8] == PNG_MAGIC


def test_svg_by_extension(tmp_path) -> None:
    path = tmp_path / "importance.svg"
    plot_head_importance(_scores(2, 3), path, title="svg")
    assert ET.parse(path).getroot().tag.endswith("svg")


@pytest.mark.parametrize(
    "scores",
    [[], [[]], [1.0, 2.0], [[1.0, 2.0], [3.0]], [[[1.0]]], [["a", "b"]]],
)
def test_bad_scores_raise(tmp_path, scores) -> None:
    with pytest.raises(ValueError):
        plot_head_importance(scores, tmp_path / "bad.png", title="bad")
    assert not (tmp_path / "bad.png").exists()


def test_mask_shape_must_match(tmp_path) -> None:
    with pytest.raises(ValueError):
        plot_head_importance(_scores(2, 3), tmp_path / "bad.png", title="bad", pruned=[[True, False]])
