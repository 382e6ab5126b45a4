"""Fixtures only (helpers live in tests/helpers.py): a tiny model folder, its data, and a cache of its own
for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import tiny_model, write_tokenizer, write_tsv


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
