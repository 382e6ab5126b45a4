"""Every ranking method: shape, determinism, and Taylor's gradient against finite differences."""

import numpy as np
import pytest
import torch
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.defaults import METHODS
from attr_compress.compressor.models.loading import encode, load_model
from attr_compress.compressor.pruning.prune import plan_pruning
from attr_compress.compressor.scoring import rankers as ranking
from attr_compress.compressor.scoring.rankers import RANKERS, Taylor, make_ranker, sweep_boundaries


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def calibration(tiny_data, loaded):
    return load_labelled_data(tiny_data, loaded.label2id)


def test_cli_lists_every_method():
    assert set(METHODS) == set(RANKERS)


@pytest.mark.parametrize("method", sorted(RANKERS))
def test_methods_return_layer_by_head_scores_deterministically(method, loaded, calibration):
    first = make_ranker(method, loaded, steps=3, seed=4).rank(calibration)
    second = make_ranker(method, loaded, steps=3, seed=4).rank(calibration)
    assert np.asarray(first.scores).shape == (2, 4)
    assert np.isfinite(first.array).all()
    assert first == second
    assert first.method == method and first.examples == len(calibration)


def test_random_depends_on_the_seed(loaded, calibration):
    a = make_ranker("random", loaded, seed=0).rank(calibration).array
    b = make_ranker("random", loaded, seed=1).rank(calibration).array
    assert not np.allclose(a, b)


def test_unknown_method_is_an_input_error(loaded):
    from attr_compress.compressor.errors import InputError

    with pytest.raises(InputError, match="unknown ranking method"):
        make_ranker("magic", loaded)


def test_taylor_gradient_matches_finite_differences(loaded, calibration):
    one = type(calibration)(**{**calibration.__dict__, "examples": calibration.examples[:1]})
    gradients = Taylor(loaded).gradients(one)
    inputs = encode(loaded, one.examples)
    label = torch.tensor([one.examples[0].label])

    def loss(layer, head, value):
        mask = torch.ones(2, 4)
        mask[layer, head] = value
        with torch.no_grad():
            logits = loaded.model(**inputs, head_mask=mask).logits
        return torch.nn.functional.cross_entropy(logits.double(), label).item()

    for layer, head in [(0, 1), (1, 3)]:
        eps = 1e-3
        numeric = abs(loss(layer, head, 1 + eps) - loss(layer, head, 1 - eps)) / (2 * eps)
        assert gradients[layer, head] == pytest.approx(numeric, rel=1e-2, abs=1e-5)
    assert gradients.max() > 1e-3  # not vacuous


def test_taylor_is_l2_normalised_per_layer(loaded, calibration):
    scores = make_ranker("taylor", loaded).rank(calibration).array
    assert np.linalg.norm(scores, axis=1) == pytest.approx([1.0, 1.0])


def test_iterative_attattr_rescores_at_each_keep_level(loaded, calibration, monkeypatch):
    calls = []
    original = ranking.attribution_statistics

    def counting(*args, **kwargs):
        calls.append(kwargs["head_mask"].clone())
        return original(*args, **kwargs)

    monkeypatch.setattr(ranking, "attribution_statistics", counting)
    importance = make_ranker("attattr-iterative", loaded, steps=3).rank(calibration)
    boundaries = sweep_boundaries(8)
    assert len(calls) == len(boundaries)
    assert [int((mask == 0).sum()) for mask in calls] == [0, *boundaries[:-1]]
    flat = sorted(layer * 4 + head for layer, head in importance.order)
    assert flat == list(range(8))
    for keep in (0.75, 0.5, 0.25):  # every keep level is a prefix of the order
        plan = plan_pruning(importance.scores, keep, importance.order)
        pruned = {tuple(pair) for pair in importance.order[: 8 - plan.kept_heads]}
        assert pruned == {(layer, head) for layer, heads in plan.pruned_heads.items() for head in heads}


def test_length_batches_bound_tokens_and_padding(loaded):
    """Every example lands in one batch; a batch stays within the token budget and its longest example within
    PADDING_SLACK of its shortest, so a round of mixed lengths is not padded to its longest sentence."""
    from attr_compress.compressor.data.rows import Example
    from attr_compress.compressor.models.loading import token_lengths
    from attr_compress.compressor.scoring.calibration import PADDING_SLACK, length_batches

    examples = [Example(" ".join(["good"] * (1 + n % 23)), None, 0, n + 1) for n in range(60)]
    batches = list(length_batches(loaded, examples, token_budget=64))
    assert sorted(id(e) for batch in batches for e in batch) == sorted(id(e) for e in examples)
    for batch in batches:
        lengths = token_lengths(loaded, batch)
        assert max(lengths) * len(batch) <= 64 or len(batch) == 1
        assert max(lengths) <= PADDING_SLACK * min(lengths) + 2
    assert len(batches) < len(examples) / 2  # like lengths still share batches
