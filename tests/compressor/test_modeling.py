"""Loading user model folders: fp16 and pickle weights, and every broken folder gives an InputError."""

import json
import shutil

import pytest
import torch
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import load_model

from tests.helpers import tiny_model, write_tokenizer


def saved(tmp_path, *, half=False, safe=True, tokenizer=True):
    folder = tmp_path / "model"
    model = tiny_model()
    (model.half() if half else model).save_pretrained(folder, safe_serialization=safe)
    if tokenizer:
        write_tokenizer(folder)
    return folder


def test_fp16_weights_load_as_fp32(tmp_path):
    loaded = load_model(saved(tmp_path, half=True))
    assert loaded.model.dtype == torch.float32
    reference = tiny_model().half().float()
    assert torch.equal(loaded.model.classifier.weight, reference.classifier.weight)
    assert loaded.stored_dtype == "float16"


def test_pickle_weights_load(tmp_path):
    loaded = load_model(saved(tmp_path, safe=False))
    assert loaded.weights_file == "pytorch_model.bin"
    assert torch.equal(loaded.model.classifier.weight, tiny_model().classifier.weight)
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_missing_tokenizer(tmp_path):
    with pytest.raises(InputError, match="has no tokenizer"):
        load_model(saved(tmp_path, tokenizer=False))


def test_missing_weights(tmp_path):
    folder = saved(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(InputError, match="has no weights"):
        load_model(folder)


def test_truncated_weights(tmp_path):
    folder = saved(tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot load the weights") as error:
        load_model(folder)
    assert "\n" not in str(error.value)


def test_weights_that_do_not_match_the_config(tmp_path):
    folder = saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 40
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="re-save the model"):
        load_model(folder)


def test_weights_without_a_classifier_head(tmp_path):
    folder = saved(tmp_path)
    from safetensors.torch import load_file, save_file

    weights = {k: v for k, v in load_file(folder / "model.safetensors").items() if not k.startswith("classifier")}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="do not match its config"):
        load_model(folder)


def test_a_file_instead_of_a_folder(tmp_path):
    folder = saved(tmp_path)
    with pytest.raises(InputError, match="is a file, not a model folder"):
        load_model(folder / "config.json")
    shutil.rmtree(folder)
