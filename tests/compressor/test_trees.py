"""Attribution trees on hand-built attributions whose tree can be worked out on paper."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from attr_compress.compressor.explain.drawing import write_tree_svg
from attr_compress.compressor.explain.trees import AttributionTree, TreeEdge, build_tree

TOKENS = ["[CLS]", "a", "good", "movie", "[SEP]"]


def _split_heads(summed: np.ndarray, heads: int = 2, seed: int = 0) -> np.ndarray:
    """Spread per-layer sums [L, n, n] over heads with noise that cancels, so only the sum matters."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(summed.shape[0], heads - 1) + summed.shape[1:])
    first = summed - noise.sum(axis=1)
    return np.concatenate([first[:, None], noise], axis=1)


def _worked_example() -> np.ndarray:
    """L=4, n=5; per-layer head sums S[l]. Expected tree (worked out by hand):

    C row sums (off-diagonal, negatives clipped, row 0 dropped): row 1 = 2.4, row 2 = 3.77,
    row 3 = 3.7 (its diagonal 5.0 is ignored) -> root = 2 ("good").
    Layer 3 (last) is skipped even though S[3][2][4] = 1 is above tau.
    Layer 2: P[2][2] = [0.5, 0.1, (diag), 0.45, 0.2] -> 2->0 (0.5), 2->3 (0.45).
    Layer 1 (scale 1.8 = max of rows 1.., row 0's 10.0 ignored):
        i=1: P[1][1][4]=1.0 but 1 is not in the tree yet -> nothing
        i=2: P[1][2][1]=-1.06 (negative) -> nothing; P[1][2][3]=0.9 but 3 already in -> nothing
        i=3: P[1][3][1]=0.667 -> 3->1; P[1][3][4]=0.389 < tau -> nothing
    Layer 0: i=1: P[0][1][4]=0.6 -> 1->4; i=3: P[0][3][4]=0.8 higher but 4 already has a parent.
    """
    s = np.zeros((4, 5, 5))
    s[3, 2, 4] = 1.0
    s[3, 3, 4] = 1.0
    s[3, 3, 3] = 5.0
    s[2, 2] = [0.5, 0.1, 1.0, 0.45, 0.2]
    s[1, 1, 4] = 1.8
    s[1, 2, 1] = -1.9
    s[1, 2, 3] = 1.62
    s[1, 3, 1] = 1.2
    s[1, 3, 4] = 0.7
    s[1, 0, 3] = 10.0
    s[0, 1, 4] = 0.6
    s[0, 3, 4] = 0.8
    s[0, 4, 0] = 1.0
    return s


def _edge_tuples(tree: AttributionTree) -> list[tuple[int, int, int]]:
    return [(e.parent, e.child, e.layer) for e in tree.edges]


def test_worked_example_root_edges_and_order() -> None:
    tree = build_tree(_split_heads(_worked_example()), TOKENS)
    assert tree.root == 2
    assert _edge_tuples(tree) == [(2, 0, 2), (2, 3, 2), (3, 1, 1), (1, 4, 0)]
    assert [e.score for e in tree.edges] == pytest.approx([0.5, 0.45, 1.2 / 1.8, 0.6])
    assert tree.nodes() == [2, 0, 3, 1, 4]
    assert tree.depth() == {2: 0, 0: 1, 3: 1, 1: 2, 4: 3}
    assert tree.tokens == tuple(TOKENS)
    assert tree.threshold == 0.4


def test_each_node_has_one_parent_and_root_has_none() -> None:
    tree = build_tree(_worked_example()[:, None], TOKENS)
    children = [e.child for e in tree.edges]
    assert len(children) == len(set(children))
    assert tree.root not in children
    assert all(isinstance(e.score, float) and not isinstance(e.score, np.floating) for e in tree.edges)


def test_higher_threshold_prunes_weak_edges() -> None:
    tree = build_tree(_worked_example()[:, None], TOKENS, threshold=0.55)
    # Layer 2 gives nothing (0.5 and 0.45 are below 0.55), so 3 now joins at layer 1 via
    # P[1][2][3] = 0.9, then 3->1; at layer 0, 1->4 and finally 4->0 ([CLS] is free this time).
    assert _edge_tuples(tree) == [(2, 3, 1), (3, 1, 1), (1, 4, 0), (4, 0, 0)]
    assert tree.depth() == {2: 0, 3: 1, 1: 2, 4: 3, 0: 4}


def test_negative_entries_never_pass_even_when_large() -> None:
    s = np.zeros((3, 3, 3))
    s[2, 1, 2] = 1.0  # root 1
    s[1, 1] = [0.0, 1.0, -5.0]  # layer L-2: big negative to token 2
    s[0, 1, 2] = -3.0
    tree = build_tree(s[:, None], ["[CLS]", "x", "y"])
    assert tree.root == 1
    assert tree.edges == ()


def test_root_is_never_cls_even_if_everything_is_zero() -> None:
    tree = build_tree(np.zeros((3, 2, 4, 4)), ["[CLS]", "x", "y", "z"])
    assert tree.root == 1
    assert tree.edges == ()
    # [CLS]'s own attributions are ignored when picking the root.
    s = np.zeros((3, 4, 4))
    s[:, 0, 1:] = 9.0
    s[:, 3, 1] = 0.1
    assert build_tree(s[:, None], ["[CLS]", "x", "y", "z"]).root == 3


def test_single_token_root_is_zero() -> None:
    tree = build_tree(np.ones((3, 1, 1, 1)), ["[CLS]"])
    assert tree.root == 0 and tree.edges == ()


def test_layer_with_zero_max_contributes_nothing() -> None:
    s = np.zeros((3, 3, 3))
    s[2, 1, 2] = 1.0  # root 1
    s[1, 0, :] = 4.0  # only [CLS]'s row: the max over rows 1.. is 0, so P[1] = 0
    s[0, 1, 2] = 1.0
    tree = build_tree(s[:, None], ["[CLS]", "x", "y"])
    assert _edge_tuples(tree) == [(1, 2, 0)]


def test_two_layers_runs_only_the_second_to_last_step() -> None:
    s = np.zeros((2, 4, 4))
    s[1, 1, 2] = 1.0  # last layer: counted for the root, never an edge
    s[0, 1, 2] = 0.8
    s[0, 1, 3] = 0.3
    s[0, 2, 3] = 1.0  # would give 2->3 if layer 0 were also scanned
    tree = build_tree(s[:, None], ["[CLS]", "x", "y", "z"])
    assert tree.root == 1
    assert _edge_tuples(tree) == [(1, 2, 0)]
    assert tree.edges[0].score == pytest.approx(0.8)


def test_one_layer_gives_root_only() -> None:
    s = np.zeros((1, 3, 3))
    s[0, 2, 1] = 1.0
    tree = build_tree(s[:, None], ["[CLS]", "x", "y"])
    assert tree.root == 2
    assert tree.edges == ()
    assert tree.nodes() == [2]
    assert tree.depth() == {2: 0}


@pytest.mark.parametrize(
    ("shape", "n_tokens"),
    [((3, 5, 5), 5), ((2, 1, 5, 4), 5), ((2, 1, 4, 4), 5), ((2, 1, 0, 0), 0), ((0, 1, 2, 2), 2)],
)
def test_bad_shapes_raise(shape: tuple[int, ...], n_tokens: int) -> None:
    with pytest.raises(ValueError):
        build_tree(np.zeros(shape), ["t"] * n_tokens)


def test_non_finite_attributions_raise() -> None:
    a = np.zeros((2, 1, 3, 3))
    a[0, 0, 1, 2] = np.nan
    with pytest.raises(ValueError):
        build_tree(a, ["[CLS]", "x", "y"])


def test_json_round_trip(tmp_path) -> None:
    meta = {"row": 7, "label": "positive", "probability": np.float32(0.75), "title": "ex 7"}
    tree = build_tree(_worked_example()[:, None], TOKENS, meta=meta)
    path = tmp_path / "sub" / "tree.json"
    tree.save(path)
    data = json.loads(path.read_text())
    assert data["kind"] == "attribution-tree" and data["schema"] == 1
    assert data["nodes"][0] == {"index": 2, "token": "good", "depth": 0}
    assert data["edges"][0] == {"parent": 2, "child": 0, "layer": 2, "score": 0.5}
    assert data["meta"]["probability"] == 0.75
    again = AttributionTree.from_dict(data)
    assert again == AttributionTree.from_dict(tree.to_dict())
    assert again.edges == tree.edges and again.root == tree.root and again.tokens == tree.tokens
    assert path.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_tree_is_hashable_and_meta_defaults_empty() -> None:
    tree = AttributionTree(tokens=("[CLS]", "x"), root=1, edges=(), threshold=0.4)
    assert tree.meta == {}
    assert hash(tree) == hash(AttributionTree(tokens=("[CLS]", "x"), root=1, edges=(), threshold=0.4))


def test_from_dict_rejects_other_documents_and_broken_trees() -> None:
    good = build_tree(_worked_example()[:, None], TOKENS).to_dict()
    with pytest.raises(ValueError):
        AttributionTree.from_dict({**good, "kind": "plan"})
    with pytest.raises(ValueError):
        AttributionTree.from_dict({**good, "schema": 2})
    with pytest.raises(ValueError):
        AttributionTree.from_dict({k: v for k, v in good.items() if k != "edges"})
    twice = good["edges"] + [{"parent": 2, "child": 4, "layer": 0, "score": 0.9}]
    with pytest.raises(ValueError):
        AttributionTree.from_dict({**good, "edges": twice})
    with pytest.raises(ValueError):
        AttributionTree(tokens=("a", "b"), root=0, edges=(TreeEdge(1, 0, 0, 0.5),), threshold=0.4)


def _svg_text(path) -> str:
    root = ET.parse(path).getroot()
    return " ".join("".join(el.itertext()) for el in root.iter())


def test_render_writes_svg_with_tokens(tmp_path) -> None:
    tokens = ["[CLS]", "a", "good", "movie", "[SEP]"]
    tree = build_tree(_worked_example()[:, None], tokens, meta={"title": "row 3: positive (p=0.98)"})
    path = tmp_path / "tree.svg"
    write_tree_svg(tree, path)
    assert path.stat().st_size > 0
    text = _svg_text(path)
    for token in tokens:
        assert token in text
    assert "L3" in text and "L1" in text
    assert "row 3: positive (p=0.98)" in text


def test_render_root_only_and_odd_tokens_escaped(tmp_path) -> None:
    tokens = ["[CLS]", "$5", "<b>", "&", "left-out"]
    s = np.zeros((1, 5, 5))
    s[0, 1, 2] = 1.0
    tree = build_tree(s[:, None], tokens)
    path = tmp_path / "solo.svg"
    write_tree_svg(tree, path)
    text = _svg_text(path)
    for token in tokens:  # the faint sentence line shows every token, including left-out ones
        assert token in text


def test_render_long_sentence_gets_wider_figure(tmp_path) -> None:
    def width(n: int) -> float:
        tokens = ["[CLS]"] + [f"w{i}" for i in range(1, n)]
        path = tmp_path / f"n{n}.svg"
        write_tree_svg(build_tree(np.random.default_rng(n).random((3, 2, n, n)), tokens), path)
        return float(ET.parse(path).getroot().get("width").removesuffix("pt"))

    assert width(40) > 2 * width(8)
