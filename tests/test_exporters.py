import numpy as np
import pytest
import torch

from compressor.errors import VerificationError
from compressor.pruning import plan_pruning, prune_model, save_pruned
from exporters.onnx_export import ONNX_FP32, ONNX_INT8, ONNX_OPTIMIZED
from exporters.parity import compare_logits, prediction_agreement, require_parity
from exporters.runtime import OnnxRunner, TorchRunner
from exporters.verified import EXPORT_RECORD, ExportRecord, export_verified
from tests.conftest import tiny_model, write_tokenizer


@pytest.fixture(scope="module")
def pruned_with_empty_layer(tmp_path_factory):
    """A tiny model whose first layer lost every head, saved and exported with the parity gate."""
    folder = tmp_path_factory.mktemp("pruned")
    tokenizer = write_tokenizer(folder)
    model = prune_model(tiny_model(), plan_pruning([[-1.0, -2.0, -3.0, -4.0], [0.3, 0.05, 0.4, 0.7]], 0.375))
    save_pruned(model, tokenizer, folder)
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
    record = export_verified(folder, onnx_dir, TorchRunner("pytorch", model), batches)
    return model, onnx_dir, record, batches


def test_zero_head_layer_exports_with_parity(pruned_with_empty_layer):
    model, onnx_dir, record, batches = pruned_with_empty_layer
    assert {ONNX_FP32, ONNX_OPTIMIZED, ONNX_INT8} <= {path.name for path in onnx_dir.iterdir()}
    assert all(check["passed"] and check["max_abs_diff"] <= 1e-4 for check in record.parity)
    expected = TorchRunner("pytorch", model).logits(batches[1])
    for name in (ONNX_FP32, ONNX_OPTIMIZED):
        assert np.abs(OnnxRunner(name, onnx_dir / name).logits(batches[1]) - expected).max() <= 1e-4
    assert 0.0 <= record.int8_agreement <= 1.0
    assert ExportRecord.load(onnx_dir / EXPORT_RECORD) == record


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
    _, onnx_dir, _, batches = pruned_with_empty_layer
    with pytest.raises(VerificationError, match="parity gate failed"):
        export_verified(onnx_dir.parent, tmp_path / "onnx", TorchRunner("wrong", tiny_model(seed=2)), batches)


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
