"""FFN neuron attribution, FFN pruning (== masking), the padded folder format, and least-squares recovery."""

import copy

import numpy as np
import pytest
import torch
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.pruning.prune import count_parameters, ffn_widths, plan_pruning, prune_model, save_pruned
from attr_compress.compressor.recovery.lsq import NormalEquations, RecoveryOptions, recover, recover_lsq
from attr_compress.compressor.scoring.integrated import NeuronAttribution
from attr_compress.compressor.scoring.neurons import score_neurons
from transformers import AutoModelForSequenceClassification

from tests.helpers import tiny_model, write_tokenizer

HEADS = [[0.5, -0.2, 0.1, 0.9], [0.3, 0.05, -0.4, 0.7]]
NEURONS = 37  # tiny_config's intermediate size


def ffn_scores(seed: int = 0, empty_layer: int | None = None) -> np.ndarray:
    scores = np.random.default_rng(seed).random((2, NEURONS))
    if empty_layer is not None:
        scores[empty_layer] -= 10.0  # every neuron of this layer ranks below the other layer's
    return scores


def masked_logits(model, inputs, ffn_mask):
    """The unpruned model with pruned neurons' activations zeroed by hooks."""
    keeps = [torch.tensor(row, dtype=torch.float32) for row in ffn_mask]
    handles = [
        layer.intermediate.register_forward_hook(lambda _m, _a, output, keep=keep: output * keep)
        for layer, keep in zip(model.bert.encoder.layer, keeps, strict=True)
    ]
    try:
        with torch.no_grad():
            return model(**inputs).logits
    finally:
        for handle in handles:
            handle.remove()


def test_neuron_attribution_is_complete(tiny_inputs):
    """Gauss quadrature IG: the attributions of one layer's neurons sum to F(activations) - F(0)."""
    engine = NeuronAttribution(tiny_model())
    inputs = dict(tiny_inputs)
    target = torch.tensor([0, 1, 1])
    for result in engine.attribute(inputs, target, steps=24, rule="gauss"):
        real = inputs["attention_mask"].bool()[:, :, None]
        total = result.scores.masked_fill(~real, 0).sum(dim=(1, 2))
        full = engine.target_probability(inputs, target)
        zero = engine.target_probability(inputs, target, scale_layer=result.layer, alpha=0.0)
        assert result.scores.shape == (3, inputs["input_ids"].shape[1], NEURONS)
        assert torch.allclose(total, full - zero, atol=1e-5)


def test_ffn_plan_keeps_the_highest_scores_over_all_layers():
    scores = ffn_scores()
    plan = plan_pruning(HEADS, 1.0, ffn_scores=scores, keep_ffn=0.25)
    mask = np.array(plan.ffn_mask)
    assert mask.sum() == round(0.25 * 2 * NEURONS)
    assert scores[mask == 1].min() > scores[mask == 0].max()
    assert plan.ffn_kept_per_layer == mask.sum(axis=1).tolist()


def test_ffn_plan_needs_scores_and_a_valid_fraction():
    with pytest.raises(InputError, match="needs FFN neuron scores"):
        plan_pruning(HEADS, 1.0, keep_ffn=0.5)
    with pytest.raises(InputError, match="--keep-ffn must be in"):
        plan_pruning(HEADS, 1.0, ffn_scores=ffn_scores(), keep_ffn=0.0)


@pytest.mark.parametrize("empty_layer", [None, 1])
def test_ffn_pruning_equals_masking(tiny_inputs, empty_layer):
    plan = plan_pruning(HEADS, 1.0, ffn_scores=ffn_scores(empty_layer=empty_layer), keep_ffn=0.3)
    model = tiny_model()
    expected = masked_logits(model, dict(tiny_inputs), plan.ffn_mask)
    pruned = prune_model(copy.deepcopy(model), plan)
    with torch.no_grad():
        assert torch.allclose(pruned(**tiny_inputs).logits, expected, atol=1e-5)
    kept = [sum(row) for row in plan.ffn_mask]
    assert ffn_widths(pruned) == kept
    if empty_layer is not None:
        assert kept[empty_layer] == 0
        assert pruned.bert.encoder.layer[empty_layer].intermediate.dense.out_features == 1  # the silent neuron
    assert count_parameters(pruned)["ffn"] < count_parameters(model)["ffn"]


def test_saved_folder_loads_plainly_padded_and_ours_at_real_width(tiny_inputs, tmp_path):
    plan = plan_pruning(HEADS, 0.5, ffn_scores=ffn_scores(), keep_ffn=0.4)
    pruned = prune_model(tiny_model(), plan)
    save_pruned(pruned, write_tokenizer(tmp_path), tmp_path)
    with torch.no_grad():
        expected = pruned(**tiny_inputs).logits
        plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        assert plain.config.intermediate_size == max(plan.ffn_kept_per_layer)
        assert torch.allclose(plain(**tiny_inputs).logits, expected, atol=1e-6)  # padding neurons are silent
        ours = load_model(tmp_path).model
        widths = [layer.intermediate.dense.out_features for layer in ours.bert.encoder.layer]
        assert widths == plan.ffn_kept_per_layer
        assert torch.allclose(ours(**tiny_inputs).logits, expected, atol=1e-6)


def test_normal_equations_solve_least_squares_and_measure_the_error():
    rng = np.random.default_rng(0)
    x, true_weight = rng.normal(size=(200, 5)), rng.normal(size=(3, 5))
    y = x @ true_weight.T + 0.5 + 0.01 * rng.normal(size=(200, 3))
    equations = NormalEquations(5, 3)
    for part in np.array_split(np.arange(200), 4):  # streamed in chunks
        equations.add(torch.from_numpy(x[part]), torch.from_numpy(y[part]))
    weight, bias = equations.solve(ridge=0.0)
    augmented = np.c_[x, np.ones(200)]
    reference = np.linalg.lstsq(augmented, y, rcond=None)[0]
    assert np.allclose(weight.numpy(), reference[:5].T, atol=1e-4)
    assert np.allclose(bias.numpy(), reference[5], atol=1e-4)
    direct = np.linalg.norm(x @ weight.numpy().T + bias.numpy() - y) / np.linalg.norm(y)
    assert equations.relative_error(weight, bias) == pytest.approx(direct, rel=1e-4)


def test_lsq_recovery_brings_the_pruned_model_closer_to_the_original():
    original = tiny_model()
    plan = plan_pruning(HEADS, 0.5, ffn_scores=ffn_scores(), keep_ffn=0.3)
    pruned = prune_model(copy.deepcopy(original), plan)
    generator = torch.Generator().manual_seed(0)

    def batch():
        return {
            "input_ids": torch.randint(5, 44, (16, 12), generator=generator),
            "attention_mask": torch.ones(16, 12, dtype=torch.long),
            "token_type_ids": torch.zeros(16, 12, dtype=torch.long),
        }

    fit, held_out = [batch() for _ in range(16)], batch()  # held out: same distribution, not fitted on

    def distance():
        with torch.no_grad():
            return (pruned(**held_out).logits - original(**held_out).logits).abs().mean()

    before = distance()
    layers = recover_lsq(original, pruned, fit, ridge=1e-3)
    assert len(layers) == 2
    for row in layers:
        for part in ("attention_output", "ffn_output"):
            assert row[part]["error_after"] < row[part]["error_before"]
    assert distance() < 0.75 * before
    assert recover(original, pruned, fit, RecoveryOptions("none")) is None


def test_an_already_pruned_model_is_refused(tmp_path):
    plan = plan_pruning(HEADS, 1.0, ffn_scores=ffn_scores(), keep_ffn=0.5)
    save_pruned(prune_model(tiny_model(), plan), write_tokenizer(tmp_path), tmp_path)
    loaded = load_model(tmp_path)
    with pytest.raises(InputError, match="already pruned; score and prune the original"):
        prune_model(loaded.model, plan_pruning(HEADS, 0.5))
    with pytest.raises(InputError, match="already pruned"):
        score_neurons(loaded, None)
