"""Every supported family (BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT), each a tiny random model with its
own tokenizer: score -> prune (a layer with no head, uneven FFN widths) -> recover -> export -> parity ->
reload with plain transformers and Optimum -> tree, pruning equal to masking, and the whole command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.data.rows import Example
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.explain.examples import explain
from attr_compress.compressor.models.families import FAMILIES, encoder_layers, family_of, part
from attr_compress.compressor.models.loading import encode, load_model, max_length
from attr_compress.compressor.pruning.prune import ffn_widths, heads_per_layer, plan_pruning, prune, save_pruned
from attr_compress.compressor.recovery.lsq import encode_for_fit, recover_lsq
from attr_compress.compressor.scoring.options import ScoringOptions, score_heads, score_neurons
from attr_compress.exporters.onnx_export import ONNX_INT8
from attr_compress.exporters.recipes import Recipe
from attr_compress.exporters.runtime import TorchRunner
from attr_compress.exporters.verified import export_verified, ship_int8
from transformers import AutoModelForSequenceClassification

from attr_compress.cli import main
from tests.families import FAMILY_NAMES, family_model, family_tokenizer, write_family
from tests.helpers import SENTENCES, write_tsv

FUSED = Recipe("fused", "onnxruntime", False, "matmul+attention")
TEXTS = ["the movie was great and fun", "i hate it", "awful actors , bad story , the plot is dull"]


def test_every_family_is_described():
    assert sorted(FAMILIES) == sorted(FAMILY_NAMES)


def forced_plan(head_scores, ffn_scores) -> object:
    """Layer 1 loses every head (its scores pushed below all others) and keeps more FFN neurons than layer 2."""
    heads = np.asarray(head_scores, dtype=float).copy()
    heads[0] -= 100.0
    neurons = np.asarray(ffn_scores, dtype=float).copy()
    neurons[0] += 100.0
    return plan_pruning(heads, 0.375, ffn_scores=neurons, keep_ffn=0.6)


def masked_logits(model, inputs, plan) -> torch.Tensor:
    """The unpruned model with the plan's heads masked (head_mask) and its FFN neurons zeroed by hooks."""
    family = family_of(model)
    keeps = [torch.tensor(row, dtype=torch.float32) for row in plan.ffn_mask]
    handles = [
        part(layer, family.ffn_activation).register_forward_hook(lambda _m, _a, output, keep=keep: output * keep)
        for layer, keep in zip(encoder_layers(model), keeps, strict=True)
    ]
    try:
        with torch.no_grad():
            return model(**inputs, head_mask=torch.tensor(plan.head_mask, dtype=torch.float32)).logits
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_pruning_equals_masking(family, tmp_path):
    tokenizer = family_tokenizer(family, tmp_path)
    model = family_model(family, tokenizer)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    rng = np.random.default_rng(1)
    plan = forced_plan(rng.random((2, 4)), rng.random((2, 37)))
    pruned = prune(model, plan)
    with torch.no_grad():
        difference = (pruned(**inputs).logits - masked_logits(model, inputs, plan)).abs().max()
    assert difference <= 1e-5
    assert heads_per_layer(pruned) == [0, 3]  # layer 1 keeps one silent head
    widths = ffn_widths(pruned)
    assert widths[0] > widths[1] > 0 and sum(widths) == round(0.6 * 74)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_classifier_that_disagrees_with_its_labels_is_refused(family, tmp_path):
    write_family(family, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    config["label2id"] = {"a": 0, "b": 1, "c": 2}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="has 2 outputs but config.json names 3 labels"):
        load_model(tmp_path)


def test_roberta_positions_start_after_the_padding_index(tmp_path):
    """RoBERTa's 66 position rows cover 64 tokens (rows 0-1 belong to padding): longer promises are refused,
    and a tokenizer that promises nothing is held to 64."""
    write_family("roberta", tmp_path)
    settings = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": 65}))
    with pytest.raises(InputError, match="allows 65 tokens but .* has position embeddings for 64"):
        load_model(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": int(1e30)}))
    loaded = load_model(tmp_path)
    assert max_length(loaded) == 64
    long_text = Example(text=" ".join(["the movie was great"] * 40), text_pair=None, label=1, row=1)
    inputs = encode(loaded, [long_text])
    assert inputs["input_ids"].shape[1] == 64
    assert torch.isfinite(loaded.model(**inputs).logits).all()


def test_a_distilbert_saved_with_a_bert_tokenizer_gets_no_token_types(tmp_path):
    tokenizer = family_tokenizer("bert", tmp_path)
    tokenizer.save_pretrained(tmp_path)
    family_model("distilbert", tokenizer).save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert "token_type_ids" in loaded.tokenizer("i love this film")  # the BERT tokenizer gives them
    inputs = encode(loaded, [Example(text="i love this film", text_pair="it was fun", label=1, row=1)])
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert loaded.model(**inputs).logits.shape == (1, 2)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def staged(request, tmp_path_factory):
    """One family through every stage, as the Python API runs them."""
    family = request.param
    root = tmp_path_factory.mktemp(family)
    write_family(family, root / "model")
    loaded = load_model(root / "model")
    data = load_labelled_data(write_tsv(root / "dev.tsv"), loaded.label2id)
    options = ScoringOptions(examples=6, steps=3)
    heads, neurons = score_heads(loaded, data, options), score_neurons(loaded, data, options)
    plan = forced_plan(heads.scores, neurons.scores)
    pruned = prune(loaded.model, plan)
    batches = encode_for_fit(loaded, data.examples)
    recovery = recover_lsq(loaded.model, pruned, batches)
    save_pruned(pruned, loaded.tokenizer, root / "pruned")
    reloaded = load_model(root / "pruned")
    encoded = loaded.tokenizer(TEXTS, padding=True, return_tensors="np")
    parity = [{key: value[:1, : int(encoded["attention_mask"][0].sum())] for key, value in encoded.items()}, encoded]
    graphs = export_verified(
        reloaded.model, reloaded.tokenizer, root / "onnx", TorchRunner("pytorch", reloaded.model), parity
    )
    record = ship_int8(graphs, FUSED, parity)
    trees = explain(reloaded, data, 1, root / "trees", steps=3)
    return dict(
        family=family, root=root, loaded=loaded, heads=heads, neurons=neurons, pruned=pruned,
        recovery=recovery, reloaded=reloaded, record=record, trees=trees, parity=parity,
    )  # fmt: skip


def test_scores_cover_every_head_and_neuron(staged):
    assert np.asarray(staged["heads"].scores).shape == (2, 4)
    assert np.asarray(staged["neurons"].scores).shape == (2, 37)
    assert np.isfinite(staged["heads"].scores).all() and np.abs(staged["heads"].scores).sum() > 0


def test_recovery_reduces_every_refitted_error(staged):
    for layer in staged["recovery"]:
        for block in ("attention_output", "ffn_output"):
            assert layer[block]["error_after"] <= layer[block]["error_before"]
    assert any(layer["ffn_output"]["error_after"] < layer["ffn_output"]["error_before"] for layer in staged["recovery"])


def test_pruned_folder_loads_with_plain_transformers(staged):
    plain = AutoModelForSequenceClassification.from_pretrained(staged["root"] / "pruned").eval()  # default attention
    assert type(plain).__name__ == FAMILIES[staged["family"]].classifier
    inputs = staged["loaded"].tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert (plain(**inputs).logits - staged["pruned"](**inputs).logits).abs().max() <= 1e-5
    assert heads_per_layer(staged["reloaded"].model) == [0, 3]
    assert ffn_widths(staged["reloaded"].model)[0] > ffn_widths(staged["reloaded"].model)[1]


def test_onnx_graphs_pass_parity_and_load_with_optimum(staged):
    from optimum.onnxruntime import ORTModelForSequenceClassification

    record = staged["record"]
    assert record.parity and all(check["passed"] and check["max_abs_diff"] <= 1e-4 for check in record.parity)
    assert [check["candidate"] for check in record.parity][0] == "onnx-fp32"
    onnx_dir = staged["root"] / "onnx"
    assert (onnx_dir / ONNX_INT8).is_file()
    inputs = staged["loaded"].tokenizer(TEXTS, padding=True, return_tensors="pt")
    ort_logits = ORTModelForSequenceClassification.from_pretrained(onnx_dir, file_name="model.onnx")(**inputs).logits
    with torch.no_grad():
        expected = staged["reloaded"].model(**inputs).logits
    assert np.abs(ort_logits.detach().numpy() - expected.numpy()).max() <= 1e-4


def test_attention_fusion_where_onnxruntime_supports_the_family(staged):
    fusion = staged["record"].fusion
    # onnxruntime fuses the attention of every family here; each fused graph still had to pass the gate. The
    # layer that lost every head has no attention left in the graph (its output bias only): one to fuse.
    assert fusion["operators"].get("Attention", 0) == 1, fusion


def test_trees_are_drawn_from_the_pruned_model(staged):
    (tree,) = staged["trees"]
    tokens = staged["loaded"].tokenizer.convert_ids_to_tokens(staged["loaded"].tokenizer(SENTENCES[0][0])["input_ids"])
    assert list(tree.tokens) == tokens
    saved = json.loads((staged["root"] / "trees" / "tree_001.json").read_text())
    assert saved["tokens"] == tokens and (staged["root"] / "trees" / "tree_001.svg").stat().st_size > 0


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_the_command_runs_every_family(family, tmp_path):
    write_family(family, tmp_path / "model")
    data, out = write_tsv(tmp_path / "dev.tsv"), tmp_path / "slim"
    args = [tmp_path / "model", "--keep", "0.5", "--keep-ffn", "0.6", "--recover", "lsq", "--data", data]
    args += ["--calib", data, "--out", out, "--examples", "4", "--steps", "2", "--trees", "1"]
    args += ["--latency-examples", "4", "--select-examples", "6", "--fit-examples", "6", "--quiet"]
    code = None
    try:
        main([str(arg) for arg in args])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code in (None, 0)
    report = (out / "report.md").read_text()
    assert "onnx-fp32 vs PyTorch" in report and "FAILED" not in report
    assert f"({FAMILIES[family].name}, {FAMILIES[family].classifier})" in report
    checks = json.loads((out / "report.json").read_text())["export"]["pruned"]["parity"]
    assert checks and all(check["passed"] for check in checks)
    assert AutoModelForSequenceClassification.from_pretrained(out / "pruned").config.model_type == family
