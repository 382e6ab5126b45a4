import numpy as np
import pytest
import torch
from attr_compress.compressor.errors import VerificationError
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.pruning.prune import plan_pruning, prune_model, save_pruned
from attr_compress.exporters.onnx_export import ONNX_FP32, ONNX_INT8, export_onnx
from attr_compress.exporters.parity import compare_logits, prediction_agreement, require_parity
from attr_compress.exporters.recipes import Recipe, fuse_graph
from attr_compress.exporters.runtime import (
    RUNTIME_FILE,
    OnnxRunner,
    TorchRunner,
    default_session_operators,
    load_session,
)
from attr_compress.exporters.verified import EXPORT_RECORD, ExportRecord, export_verified, ship_int8

from tests.helpers import tiny_model, write_tokenizer

FAST = Recipe("fused", "onnxruntime", False, "matmul+attention")


@pytest.fixture(scope="module")
def pruned_with_empty_layer(tmp_path_factory):
    """A tiny model whose first layer lost every head and whose FFN layers kept different widths, saved,
    reloaded as users load it, and exported (fused graph, int8) with the parity gate."""
    folder = tmp_path_factory.mktemp("pruned")
    tokenizer = write_tokenizer(folder)
    ffn_scores = np.random.default_rng(0).random((2, tiny_model().config.intermediate_size))
    ffn_scores[0] += 1.0  # layer 1 keeps more neurons than layer 2
    plan = plan_pruning([[-1.0, -2.0, -3.0, -4.0], [0.3, 0.05, 0.4, 0.7]], 0.375, ffn_scores=ffn_scores, keep_ffn=0.6)
    save_pruned(prune_model(tiny_model(), plan), tokenizer, folder)
    model = load_model(folder).model
    encoded = tokenizer(
        ["the movie was great and fun", "i hate it", "awful actors , bad story , the plot is dull"],
        padding=True,
        return_tensors="np",
    )
    batches = [
        {key: value[:1, : int(encoded["attention_mask"][0].sum())] for key, value in encoded.items()},
        dict(encoded),
    ]
    onnx_dir = folder / "onnx"
    graphs = export_verified(model, tokenizer, onnx_dir, TorchRunner("pytorch", model), batches)
    record = ship_int8(graphs, FAST, batches)
    return model, onnx_dir, record, batches


def test_zero_head_layer_and_uneven_ffn_export_with_parity(pruned_with_empty_layer):
    model, onnx_dir, record, batches = pruned_with_empty_layer
    assert [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer] == [1, 3]
    widths = [layer.intermediate.dense.out_features for layer in model.bert.encoder.layer]
    assert widths[0] > widths[1]  # the loader stripped the padding: real widths
    assert {ONNX_FP32, ONNX_INT8, RUNTIME_FILE, EXPORT_RECORD} <= {path.name for path in onnx_dir.iterdir()}
    # the plain graph and the fused one (two head counts, one per layer) both passed the gate
    assert [check["candidate"] for check in record.parity] == ["onnx-fp32", "onnx-fp32-fused"]
    assert all(check["passed"] and check["max_abs_diff"] <= 1e-4 for check in record.parity)
    # the layer without heads exports its output bias only: one attention block left to fuse, no matrix product
    assert record.fusion["attention_fusion"] and record.fusion["operators"]["Attention"] == 1
    expected = TorchRunner("pytorch", model).logits(batches[1])
    assert np.abs(OnnxRunner("fp32", onnx_dir / ONNX_FP32).logits(batches[1]) - expected).max() <= 1e-4
    assert 0.0 <= record.int8_agreement <= 1.0
    assert ExportRecord.load(onnx_dir / EXPORT_RECORD) == record


def test_runtime_json_runs_the_int8_graph_with_its_session_settings(pruned_with_empty_layer):
    model, onnx_dir, _, batches = pruned_with_empty_layer
    session = load_session(onnx_dir)
    feeds = {item.name: batches[1][item.name].astype(np.int64) for item in session.get_inputs()}
    int8 = session.run(None, feeds)[0]
    expected = TorchRunner("pytorch", model).logits(batches[1])
    assert int8.shape == expected.shape
    assert np.abs(int8 - expected).max() < 0.5 * np.abs(expected).max()  # quantised, yet close


def test_optimum_loads_the_onnx_folder(pruned_with_empty_layer):
    from optimum.onnxruntime import ORTModelForSequenceClassification

    model, onnx_dir, _, batches = pruned_with_empty_layer
    ort_model = ORTModelForSequenceClassification.from_pretrained(onnx_dir)
    inputs = {key: torch.from_numpy(value) for key, value in batches[1].items()}
    with torch.no_grad():
        assert (ort_model(**inputs).logits - model(**inputs).logits).abs().max() <= 1e-4


def test_parity_gate_fails_loudly_on_a_mismatch(pruned_with_empty_layer):
    _, onnx_dir, _, batches = pruned_with_empty_layer
    other = TorchRunner("different", tiny_model(seed=1))
    result = compare_logits(other, OnnxRunner("onnx", onnx_dir / ONNX_FP32), batches)
    assert not result.passed and result.max_abs_diff > 1e-4
    with pytest.raises(VerificationError, match="parity gate failed: onnx differs from different"):
        require_parity(result)


def test_export_verified_refuses_a_graph_that_does_not_match(pruned_with_empty_layer, tmp_path):
    model, onnx_dir, _, batches = pruned_with_empty_layer
    tokenizer = load_model(onnx_dir.parent).tokenizer
    with pytest.raises(VerificationError, match="parity gate failed"):
        export_verified(model, tokenizer, tmp_path / "onnx", TorchRunner("wrong", tiny_model(seed=2)), batches)


def test_nan_logits_fail_the_gate(pruned_with_empty_layer):
    _, onnx_dir, _, batches = pruned_with_empty_layer

    class Broken:
        name = "broken"

        def logits(self, inputs):
            return np.full((inputs["input_ids"].shape[0], 2), np.nan, dtype=np.float32)

    assert not compare_logits(OnnxRunner("onnx", onnx_dir / ONNX_FP32), Broken(), batches).passed


def test_prediction_agreement_counts_examples(pruned_with_empty_layer):
    _, onnx_dir, _, batches = pruned_with_empty_layer
    runner = OnnxRunner("onnx", onnx_dir / ONNX_FP32)
    assert prediction_agreement(runner, runner, batches) == 1.0


def test_the_shipped_graph_runs_fast_in_a_default_session(pruned_with_empty_layer):
    """No session flags: a plain InferenceSession keeps Add + LayerNormalization (the fast kernels) and gives
    the same logits as our own session; Optimum's ORTModel loads the int8 file too."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification

    model, onnx_dir, record, batches = pruned_with_empty_layer
    operators = record.default_session_operators
    assert operators == default_session_operators(onnx_dir / ONNX_INT8)
    # two per layer and the embeddings' (not fused into EmbedLayerNormalization: onnxruntime anchors that fusion on
    # the first layer's attention, which this model's first layer no longer has)
    assert "SkipLayerNormalization" not in operators and operators["LayerNormalization"] == 5
    assert {"Attention", "DynamicQuantizeMatMul"} & set(operators) or "MatMulInteger" in operators
    plain = ort.InferenceSession(str(onnx_dir / ONNX_INT8))
    feeds = {item.name: batches[1][item.name].astype(np.int64) for item in plain.get_inputs()}
    np.testing.assert_array_equal(plain.run(None, feeds)[0], load_session(onnx_dir).run(None, feeds)[0])
    ort_model = ORTModelForSequenceClassification.from_pretrained(onnx_dir, file_name=ONNX_INT8)
    inputs = {key: torch.from_numpy(value) for key, value in batches[1].items()}
    np.testing.assert_allclose(ort_model(**inputs).logits.numpy(), plain.run(None, feeds)[0], atol=1e-6)


def test_layer_norm_adds_are_guarded_bit_for_bit(tmp_path):
    """The Add -> Sum rewrite changes no number: the guarded graph equals the unguarded one run without the
    session's SkipLayerNormalization fusion, exactly."""
    import onnx
    import onnxruntime as ort

    model = tiny_model()
    tokenizer = write_tokenizer(tmp_path / "tok")
    encoded = dict(tokenizer(["the movie was great and fun", "i hate it"], padding=True, return_tensors="np"))
    fp32 = export_onnx(model, tokenizer, tmp_path / "onnx")
    fuse_graph(fp32, tmp_path / "guarded.onnx")
    unguarded = onnx.load(tmp_path / "guarded.onnx")
    for node in unguarded.graph.node:
        if node.op_type == "Sum":
            node.op_type = "Add"
    onnx.save(unguarded, tmp_path / "unguarded.onnx")
    assert sum(node.op_type == "Sum" for node in onnx.load(tmp_path / "guarded.onnx").graph.node) == 4
    guarded_logits = OnnxRunner("guarded", tmp_path / "guarded.onnx").logits(encoded)
    unfused = ort.InferenceSession(str(tmp_path / "unguarded.onnx"), disabled_optimizers=["SkipLayerNormFusion"])
    feeds = {item.name: encoded[item.name].astype(np.int64) for item in unfused.get_inputs()}
    np.testing.assert_array_equal(guarded_logits, unfused.run(None, feeds)[0])
    assert "SkipLayerNormalization" in default_session_operators(tmp_path / "unguarded.onnx")
    assert "SkipLayerNormalization" not in default_session_operators(tmp_path / "guarded.onnx")
