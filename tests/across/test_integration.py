"""The CLI on the real shared demo model (MiniLM-L6 fine-tuned on SST-2), with few examples."""

import json

import numpy as np
import pytest

from attr_compress.cli import main
from tests.helpers import SHARED

MODEL = SHARED / "models" / "minilm-l6-sst2"
GLUE = SHARED / "data" / "glue"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MODEL.is_dir(), reason="shared demo model not present"),
]


def test_demo_model_end_to_end(tmp_path):
    dev = tmp_path / "dev.tsv"
    dev.write_text("".join((GLUE / "SST-2" / "dev.tsv").read_text().splitlines(keepends=True)[:49]))
    out = tmp_path / "slim"
    args = [
        str(MODEL),
        "--keep",
        "0.5",
        "--data",
        str(dev),
        "--calib",
        str(GLUE / "SST-2" / "train.tsv"),
        "--out",
        str(out),
        "--examples",
        "8",
        "--steps",
        "4",
        "--trees",
        "1",
        "--latency-examples",
        "12",
        "--quiet",
    ]
    try:
        main(args)
    except SystemExit as exit_info:
        assert exit_info.code in (None, 0)
    report = json.loads((out / "report.json").read_text())
    assert report["heads"]["total"] == 72 and report["heads"]["kept"] == 36
    assert report["data"]["evaluation_rows"] == 24 == report["data"]["selection_rows"]  # 48 rows, half held apart
    assert report["data"]["calibration_examples"] == 8
    assert report["data"]["calibration_rows_in_file"] == 67349
    original = next(row for row in report["results"] if (row["model"], row["runtime"]) == ("original", "pytorch-fp32"))
    assert original["accuracy"] >= 0.8  # a real fine-tuned model
    assert all(check["passed"] for check in report["export"]["pruned"]["parity"])

    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out / "onnx")
    inputs = tokenizer(
        ["a gorgeous , witty , seductive movie .", "one long string of cliches ."], padding=True, return_tensors="pt"
    )
    onnx_logits = ORTModelForSequenceClassification.from_pretrained(out / "onnx")(**inputs).logits
    torch_model = AutoModelForSequenceClassification.from_pretrained(out / "pruned").eval()
    torch_logits = torch_model(**inputs).logits.detach()
    assert np.abs(onnx_logits.detach().numpy() - torch_logits.numpy()).max() <= 1e-4
    heads = [layer.attention.self.num_attention_heads for layer in torch_model.bert.encoder.layer]
    silent = torch_model.config.attr_compress["silent_head_layers"]
    assert sum(0 if index in silent else count for index, count in enumerate(heads)) == 36
