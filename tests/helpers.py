"""What tests share besides fixtures: tiny random BERT classifiers built in code (no network), small data
files for them, the repository's paths, and running the command line in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from attr_compress.cli import main

WORDS = [
    *[
        "the",
        "a",
        "movie",
        "film",
        "story",
        "plot",
        "actor",
        "actors",
        "great",
        "good",
        "bad",
        "awful",
        "boring",
        "fun",
        "funny",
        "dull",
        "brilliant",
    ],
    *[
        "is",
        "was",
        "not",
        "very",
        "quite",
        "really",
        "and",
        "but",
        "it",
        "this",
        "that",
        "of",
        "to",
        "with",
        ".",
        ",",
        "!",
        "?",
        "i",
        "you",
        "love",
        "hate",
    ],
]
ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared"  # the shared demo assets beside it


def tiny_config(**overrides) -> BertConfig:
    settings = dict(
        vocab_size=len(WORDS) + 5,
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_size=32,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
        finetuning_task="sst2",
        architectures=["BertForSequenceClassification"],
    )
    settings.update(overrides)
    return BertConfig(**settings)


def tiny_model(seed: int = 0, attn: str = "eager", **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = tiny_config(**overrides)
    config._attn_implementation = attn
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # larger weights than the default init, so heads matter and tests can fail
        for name, parameter in model.named_parameters():
            if "LayerNorm" not in name:
                parameter.normal_(0, 0.3)
    return model


def write_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), model_max_length=64)
    tokenizer.save_pretrained(folder)
    return tokenizer


SENTENCES = [
    ("the movie was great and fun", "positive"),
    ("the plot is boring and dull", "negative"),
    ("i love this film", "positive"),
    ("awful actors , bad story", "negative"),
    ("really brilliant , very funny !", "positive"),
    ("i hate it", "negative"),
    ("not good but not bad", "negative"),
    ("this story was quite good", "positive"),
    ("a dull , boring plot", "negative"),
    ("the actors were great", "positive"),
    ("it was fun", "positive"),
    ("very bad film", "negative"),
]


# other rows for a calibration file: a measured row that is also a training row is never measured
TRAIN_SENTENCES = [
    ("a great story and great actors", "positive"),
    ("the film is awful", "negative"),
    ("you love the plot", "positive"),
    ("boring , boring , boring", "negative"),
    ("funny and brilliant", "positive"),
    ("i hate the actors", "negative"),
    ("not fun", "negative"),
    ("quite a good movie", "positive"),
    ("the story was dull", "negative"),
    ("really great fun", "positive"),
    ("very good actors", "positive"),
    ("this plot is bad", "negative"),
]


def write_tsv(path: Path, rows=SENTENCES, numeric: bool = False) -> Path:
    labels = {"negative": "0", "positive": "1"}
    lines = ["sentence\tlabel"] + [f"{text}\t{labels[label] if numeric else label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_file(folder: Path, name: str, content: str | bytes) -> Path:
    """Write text (UTF-8) or raw bytes into ``folder/name``."""
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def pipeline_args(model, data, out, *extra):
    return [
        model,
        "--keep",
        "0.5",
        "--data",
        data,
        "--calib",
        data,
        "--out",
        out,
        "--examples",
        "6",
        "--steps",
        "3",
        "--trees",
        "2",
        "--latency-examples",
        "4",
        "--select-examples",
        "6",
        "--fit-examples",
        "6",
        "--quiet",
        *extra,
    ]
