import numpy as np
import pytest
import torch
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.pruning.prune import (
    count_parameters,
    heads_per_layer,
    plan_pruning,
    prune_model,
    save_pruned,
)
from transformers import AutoModelForSequenceClassification

from tests.helpers import tiny_model, write_tokenizer

SCORES = [[0.5, -0.2, 0.1, 0.9], [0.3, 0.05, -0.4, 0.7]]


def test_plan_keeps_the_highest_scoring_heads_globally():
    plan = plan_pruning(SCORES, 0.5)
    assert plan.kept_heads == 4
    assert plan.head_mask == [[1, 0, 0, 1], [1, 0, 0, 1]]
    assert plan.pruned_heads == {0: [1, 2], 1: [1, 2]}
    assert plan.order[0] == [1, 2]  # the lowest score comes first


@pytest.mark.parametrize("keep, kept", [(1.0, 8), (0.875, 7), (0.3, 2), (0.01, 1)])
def test_plan_keeps_round_keep_times_total(keep, kept):
    assert plan_pruning(SCORES, keep).kept_heads == kept


def test_ties_break_by_position_deterministically():
    plan = plan_pruning([[0.0] * 4, [0.0] * 4], 0.5)
    assert plan.head_mask == [[0, 0, 0, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.01, float("nan")])
def test_keep_outside_zero_one_is_rejected(keep):
    with pytest.raises(InputError, match="--keep must be in"):
        plan_pruning(SCORES, keep)


def test_non_finite_scores_are_rejected():
    with pytest.raises(InputError, match="NaN"):
        plan_pruning([[0.1, float("nan")]], 0.5)


def test_plan_round_trips_through_json(tmp_path):
    plan = plan_pruning(SCORES, 0.5)
    plan.save(tmp_path / "plan.json")
    assert type(plan).load(tmp_path / "plan.json") == plan


def masked_and_pruned_logits(plan, inputs):
    model = tiny_model()
    with torch.no_grad():
        masked = model(**inputs, head_mask=torch.tensor(plan.head_mask, dtype=torch.float32)).logits
        pruned = prune_model(model, plan)(**inputs).logits
    return masked, pruned, model


def test_structural_pruning_equals_masking(tiny_inputs):
    plan = plan_pruning(SCORES, 0.5)
    masked, pruned, model = masked_and_pruned_logits(plan, tiny_inputs)
    assert (masked - pruned).abs().max() <= 1e-5
    assert heads_per_layer(model) == [2, 2]
    assert model.bert.encoder.layer[0].attention.self.query.out_features == 2 * 8


def test_a_layer_can_lose_every_head(tiny_inputs):
    scores = [[-1.0, -2.0, -3.0, -4.0], [0.3, 0.05, 0.4, 0.7]]
    plan = plan_pruning(scores, 0.5)
    assert plan.heads_kept_per_layer == [0, 4]
    masked, pruned, model = masked_and_pruned_logits(plan, tiny_inputs)
    assert (masked - pruned).abs().max() <= 1e-5
    assert heads_per_layer(model) == [0, 4]
    assert model.config.attr_compress["silent_head_layers"] == [0]
    unpruned = tiny_model()
    with torch.no_grad():  # not vacuous: emptying the layer changes the output
        assert (unpruned(**tiny_inputs).logits - pruned).abs().max() > 1e-3


def test_saved_folder_loads_with_plain_transformers(tmp_path, tiny_inputs):
    scores = [[-1.0, -2.0, -3.0, -4.0], [0.3, 0.05, 0.4, 0.7]]
    plan = plan_pruning(scores, 0.375)
    _, pruned, model = masked_and_pruned_logits(plan, tiny_inputs)
    save_pruned(model, write_tokenizer(tmp_path / "tok"), tmp_path / "pruned")
    for attn in ("eager", "sdpa"):
        loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned", attn_implementation=attn)
        with torch.no_grad():
            assert (loaded.eval()(**tiny_inputs).logits - pruned).abs().max() <= 1e-5
        assert heads_per_layer(loaded) == [0, 3]
    assert count_parameters(loaded)["attention"] < count_parameters(tiny_model())["attention"]


def test_plan_for_another_shape_is_rejected():
    plan = plan_pruning(np.zeros((3, 4)), 0.5)
    with pytest.raises(InputError, match="3 layers x 4 heads"):
        prune_model(tiny_model(), plan)


def test_pruning_twice_is_rejected():
    model = prune_model(tiny_model(), plan_pruning(SCORES, 0.5))
    with pytest.raises(InputError, match="already pruned"):
        prune_model(model, plan_pruning(SCORES, 0.5))
