"""Dropping whole layers: the plan, the pruned model (loadable by plain transformers), recovery fitted to each
kept layer's span, distillation matching the span's last teacher layer, and the command line."""

import copy
import json

import numpy as np
import pytest
import torch
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.pruning.prune import layer_spans, model_layer_spans, plan_pruning, prune, save_pruned
from attr_compress.compressor.recovery.distill import DistillOptions, distillation_loss
from attr_compress.compressor.recovery.lsq import recover_lsq
from transformers import AutoModelForSequenceClassification

from tests.helpers import pipeline_args, run, tiny_model, write_tokenizer, write_tsv

RNG = np.random.default_rng(0)
HEADS = RNG.random((4, 4))
NEURONS = RNG.random((4, 37))


def test_a_plan_drops_layers_and_gives_their_share_to_the_others():
    plan = plan_pruning(HEADS, 0.5, ffn_scores=NEURONS, keep_ffn=0.5, drop_layers=[3, 1])
    assert plan.dropped_layers == [1, 3] and plan.kept_layers == [0, 2]
    assert plan.heads_kept_per_layer[1] == plan.heads_kept_per_layer[3] == 0
    assert plan.ffn_kept_per_layer[1] == plan.ffn_kept_per_layer[3] == 0
    assert plan.kept_heads == 8 and sum(plan.ffn_kept_per_layer) == 74  # half of the whole model, all elsewhere
    capped = plan_pruning(HEADS, 1.0, drop_layers=[0])
    assert capped.kept_heads == 12 and capped.heads_kept_per_layer == [0, 4, 4, 4]


@pytest.mark.parametrize("drop", [[4], [-1], [0, 1, 2, 3]])
def test_impossible_drops_are_refused(drop):
    with pytest.raises(InputError, match="distinct layer numbers 1..4, leaving at least one"):
        plan_pruning(HEADS, 0.5, drop_layers=drop)


def test_spans_cover_the_dropped_layers_after_each_kept_one():
    assert layer_spans([0, 2], 4) == [(0, 1), (2, 3)]
    assert layer_spans([1, 2], 4) == [(1, 1), (2, 3)]
    assert layer_spans([0, 1, 2, 3], 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_a_layer_dropped_model_reloads_with_plain_transformers(tmp_path):
    original = tiny_model(num_hidden_layers=4)
    plan = plan_pruning(HEADS, 0.4, ffn_scores=NEURONS, keep_ffn=0.3, drop_layers=[1, 3])
    pruned = prune(original, plan)
    assert pruned.config.num_hidden_layers == 2 and len(original.bert.encoder.layer) == 4
    assert model_layer_spans(pruned) == [(0, 1), (2, 3)]
    # the kept layer 3 now normalises like the dropped layer 4 did (its span's last layer)
    assert torch.equal(
        pruned.bert.encoder.layer[1].output.LayerNorm.weight, original.bert.encoder.layer[3].output.LayerNorm.weight
    )
    ids = torch.randint(5, 44, (3, 9))
    with torch.no_grad():
        expected = pruned(input_ids=ids).logits
    save_pruned(pruned, write_tokenizer(tmp_path / "tok"), tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    ours = load_model(tmp_path).model
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.allclose(ours(input_ids=ids).logits, expected, atol=1e-5)
    assert [layer.intermediate.dense.out_features for layer in ours.bert.encoder.layer] == [
        plan.ffn_kept_per_layer[0],
        plan.ffn_kept_per_layer[2],
    ]


def test_lsq_fits_each_kept_layer_to_its_span_and_closes_the_gap():
    original = tiny_model(num_hidden_layers=4)
    pruned = prune(original, plan_pruning(HEADS, 1.0, drop_layers=[3]))
    generator = torch.Generator().manual_seed(0)

    def batch():
        ids = torch.randint(5, 44, (16, 12), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}

    fit, held_out = [batch() for _ in range(16)], batch()

    def distance():
        with torch.no_grad():
            return (pruned(**held_out).logits - original(**held_out).logits).abs().mean()

    before = distance()
    layers = recover_lsq(original, pruned, fit, ridge=1e-3)
    assert [row["layer"] for row in layers] == [0, 1, 2]
    assert layers[2]["ffn_output"]["error_after"] < layers[2]["ffn_output"]["error_before"]
    assert distance() < 0.75 * before


def test_distillation_matches_each_student_layer_to_its_spans_last_teacher_layer():
    class Outputs:
        def __init__(self, logits, states):
            self.logits, self.hidden_states = logits, states

    states = [torch.full((1, 2, 3), float(value)) for value in range(5)]  # embeddings + 4 layers
    teacher = Outputs(torch.zeros(1, 2), states)
    student = Outputs(torch.zeros(1, 2), [states[0], states[2], states[4]])  # equal to teacher layers 2 and 4
    options = DistillOptions(hidden_weight=1.0)
    mask = torch.ones(1, 2, dtype=torch.long)
    assert distillation_loss(student, teacher, mask, options, teacher_layers=[1, 3]) == pytest.approx(0.0)
    assert distillation_loss(student, teacher, mask, options, teacher_layers=[0, 1]) > 0.1


def test_the_command_line_drops_layers_and_reports_them(tmp_path, capsys):
    folder = tmp_path / "four-layers"
    tiny_model(num_hidden_layers=4).save_pretrained(folder)
    write_tokenizer(folder)
    data = write_tsv(tmp_path / "dev.tsv")
    args = pipeline_args(folder, data, tmp_path / "slim", "--trees", "1", "--recover", "lsq")
    code, out, err = run([*args, "--drop-layers", "2,4"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "slim/report.json").read_text())
    assert report["heads"]["dropped_layers"] == [1, 3] and report["options"]["drop_layers"] == [1, 3]
    assert report["heads"]["kept_per_layer"][1] == report["heads"]["kept_per_layer"][3] == 0
    assert len(report["ffn"]["kept_per_layer"]) == 4
    assert json.loads((tmp_path / "slim/pruned/config.json").read_text())["num_hidden_layers"] == 2
    assert "Layer(s) 2, 4 were dropped whole" in (tmp_path / "slim/report.md").read_text()
    assert all(check["passed"] for check in report["export"]["pruned"]["parity"])


@pytest.mark.parametrize(
    "value, message", [("x", "comma-separated layer numbers"), ("5", "layer numbers 1..4, leaving at least one; got 5")]
)
def test_bad_layer_lists_are_refused_before_any_work(tmp_path, capsys, value, message):
    folder = tmp_path / "four-layers"
    tiny_model(num_hidden_layers=4).save_pretrained(folder)
    write_tokenizer(folder)
    data = write_tsv(tmp_path / "dev.tsv")
    code, out, err = run([*pipeline_args(folder, data, tmp_path / "slim"), "--drop-layers", value], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "slim").exists()


def test_pruning_a_copy_leaves_the_original_whole():
    original = tiny_model(num_hidden_layers=4)
    before = copy.deepcopy(original.state_dict())
    prune(original, plan_pruning(HEADS, 0.5, drop_layers=[2]))
    assert all(torch.equal(before[name], value) for name, value in original.state_dict().items())
