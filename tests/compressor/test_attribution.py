import numpy as np
import pytest
import torch
from attr_compress.compressor.scoring.integrated import AttentionAttribution, quadrature

from tests.helpers import tiny_model


def test_left_rule_is_the_papers_riemann_sum():
    alphas, weights = quadrature("left", 2)
    assert alphas.tolist() == [0.0, 0.5]
    assert weights.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("rule", ["left", "midpoint", "gauss"])
def test_rules_integrate_constants_exactly(rule):
    alphas, weights = quadrature(rule, 7)
    assert weights.sum() == pytest.approx(1.0)
    assert ((alphas >= 0) & (alphas <= 1)).all()


def test_gauss_integrates_polynomials_exactly():
    alphas, weights = quadrature("gauss", 3)
    assert (weights * alphas**5).sum() == pytest.approx(1 / 6)


@pytest.mark.parametrize("rule, steps", [("left", 0), ("trapezoid", 5)])
def test_bad_quadrature_raises(rule, steps):
    with pytest.raises(ValueError):
        quadrature(rule, steps)


def test_engine_reproduces_the_model(tiny_inputs):
    model = tiny_model()
    engine = AttentionAttribution(model)
    states, mask = engine.hidden_states(tiny_inputs)
    with torch.no_grad():
        expected = torch.softmax(model(**tiny_inputs).logits, -1)
        assert torch.allclose(engine.probabilities(states[0], mask, 0), expected, atol=1e-6)


def completeness_errors(model, inputs, rule, steps):
    engine = AttentionAttribution(model)
    target = torch.tensor([0, 1, 1])
    full = engine.target_probability(inputs, target)
    errors, deltas = [], []
    for result in engine.attribute(inputs, target, steps=steps, rule=rule):
        zeroed = engine.target_probability(inputs, target, scale_layer=result.layer, alpha=0.0)
        errors.append((result.scores.sum(dim=(1, 2, 3)) - (full - zeroed)).abs())
        deltas.append((full - zeroed).abs())
    return torch.stack(errors), torch.stack(deltas)


def test_completeness_left_riemann_converges_at_rate_one_over_m(tiny_inputs):
    """Sum of a layer's attributions -> F(A) - F(A with the layer's attention zeroed), error O(1/m)."""
    model = tiny_model()
    coarse, deltas = completeness_errors(model, tiny_inputs, "left", 10)
    fine, _ = completeness_errors(model, tiny_inputs, "left", 160)
    assert deltas.max() > 1e-2  # the check is not vacuous
    assert (fine <= coarse / 4 + 1e-6).all()
    assert (fine <= 0.1 * deltas + 1e-4).all()


def test_completeness_gauss_is_near_exact(tiny_inputs):
    errors, deltas = completeness_errors(tiny_model(), tiny_inputs, "gauss", 24)
    assert (errors <= 1e-3 * deltas + 1e-5).all()


def test_batched_equals_one_example_at_a_time(tiny_inputs):
    engine = AttentionAttribution(tiny_model())
    target = torch.tensor([1, 0, 1])
    batched = [r.scores for r in engine.attribute(tiny_inputs, target, steps=5)]
    for index in range(3):
        length = int(tiny_inputs["attention_mask"][index].sum())
        single = {key: value[index : index + 1, :length] for key, value in tiny_inputs.items()}
        alone = [r.scores for r in engine.attribute(single, target[index : index + 1], steps=5)]
        for layer in range(len(batched)):
            assert torch.allclose(batched[layer][index, :, :length, :length], alone[layer][0], atol=1e-6)


def test_internal_batching_does_not_change_the_result(tiny_inputs):
    engine = AttentionAttribution(tiny_model())
    target = torch.tensor([1, 0, 1])
    whole = [r.scores for r in engine.attribute(tiny_inputs, target, steps=6)]
    chunked = [r.scores for r in engine.attribute(tiny_inputs, target, steps=6, internal_batch_size=6)]
    for a, b in zip(whole, chunked, strict=True):
        assert torch.allclose(a, b, atol=1e-7)


def test_padding_gets_no_attribution(tiny_inputs):
    engine = AttentionAttribution(tiny_model())
    result = next(engine.attribute(tiny_inputs, torch.tensor([0, 0, 0]), steps=4))
    padded = ~tiny_inputs["attention_mask"][1].bool()
    assert padded.any()
    assert result.scores[1][:, :, padded].abs().max() == 0
    assert np.isfinite(result.scores.numpy()).all()


def test_needs_eager_attention():
    with pytest.raises(ValueError, match="eager"):
        AttentionAttribution(tiny_model(attn="sdpa"))


def test_no_target_means_the_predicted_class(tiny_inputs):
    model = tiny_model()
    engine = AttentionAttribution(model)
    with torch.no_grad():
        predicted = model(**tiny_inputs).logits.argmax(-1)
    implicit = [r.scores for r in engine.attribute(tiny_inputs, None, steps=3)]
    explicit = [r.scores for r in engine.attribute(tiny_inputs, predicted, steps=3)]
    assert all(torch.equal(a, b) for a, b in zip(implicit, explicit, strict=True))
