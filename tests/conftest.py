"""Tiny random BERT classifiers built in code (no network), and small data files for them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

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
SHARED = Path(__file__).resolve().parents[2] / "shared"


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny classifier folder with its tokenizer, as a user would pass it."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_model().save_pretrained(folder)
    write_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_tsv(tmp_path_factory.mktemp("data") / "dev.tsv")


@pytest.fixture
def tiny_inputs():
    tokenizer = write_tokenizer(Path(__import__("tempfile").mkdtemp()))
    return tokenizer(
        ["the movie was great and fun", "i hate it", "awful actors , bad story"], padding=True, return_tensors="pt"
    )


def write_file(folder: Path, name: str, content: str | bytes) -> Path:
    """Write text (UTF-8) or raw bytes into ``folder/name``."""
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory):
    """Runs in tests never read or fill the user's cache: module-scoped runs share one for the session..."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path_factory, monkeypatch):
    """...and every test starts cold, so a cached stage never hides the behaviour a test checks."""
    folder = tmp_path_factory.mktemp("xdg-cache-test")
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder
