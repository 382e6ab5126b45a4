"""Stage results cached by content, so a repeated or resumed run never does the same work twice.

A result's key is a hash of everything that changes it: the stage, the model's weights (tensor bytes and
shapes), the data rows used (text, pair, label) and every option that matters.
Results live under ``$XDG_CACHE_HOME/attr-compress`` (``~/.cache/attr-compress`` by default), one folder per
stage; delete that folder to clear the cache, or pass ``--no-cache``. Entries are written to a temporary
name and renamed, so a killed run never leaves a half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressor.data import Example

CACHE_VERSION = 2  # bump when a stage's result changes meaning


def cache_root() -> Path:
    """The platform's per-user cache folder (XDG), then ours inside it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attr-compress"


def digest(*parts: Any) -> str:
    """A stable hash of JSON-able parts (dataclasses and paths as their text)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_digest(path: str | Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()[:32]


def rows_digest(examples: Iterable[Example]) -> str:
    """The rows' content (not their file name): a one-byte change to a used row changes it."""
    return digest([(e.text, e.text_pair, e.label) for e in examples])


def model_digest(model: Any) -> str:
    """The weights and the shapes, hashed tensor by tensor (what any stage result depends on)."""
    hasher = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        hasher.update(name.encode())
        hasher.update(str(tuple(tensor.shape)).encode())
        hasher.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    hasher.update(json.dumps(getattr(model.config, "attr_compress", None), sort_keys=True, default=str).encode())
    return hasher.hexdigest()[:32]


@dataclass(frozen=True)
class StageCache:
    """Where results live (``root``), or nothing at all (``root`` None: --no-cache)."""

    root: Path | None

    @classmethod
    def default(cls, enabled: bool = True) -> StageCache:
        return cls(cache_root() if enabled else None)

    def _entry(self, stage: str, key: str) -> Path | None:
        return None if self.root is None else self.root / stage / f"v{CACHE_VERSION}-{key}"

    def load_json(self, stage: str, key: str) -> Any | None:
        entry = self._entry(stage, key)
        if entry is None:
            return None
        try:
            return json.loads((entry / "result.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def json(self, stage: str, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The stored JSON result, or ``compute()`` stored; and whether it came from the cache."""
        stored = self.load_json(stage, key)
        if stored is not None:
            return stored, True
        value = compute()
        self.save_json(stage, key, value)
        return value, False

    def save_json(self, stage: str, key: str, value: Any) -> None:
        self._publish(stage, key, lambda folder: (folder / "result.json").write_text(json.dumps(value)))

    def folder(self, stage: str, key: str) -> Path | None:
        """A stored folder, or None."""
        entry = self._entry(stage, key)
        return entry / "files" if entry is not None and (entry / "files").is_dir() else None

    def save_folder(self, stage: str, key: str, source: Path) -> None:
        self._publish(stage, key, lambda folder: shutil.copytree(source, folder / "files"))

    def _publish(self, stage: str, key: str, write: Any) -> None:
        """Write into a temporary folder, then rename it into place; a cache that cannot be written is skipped
        (it only saves time)."""
        entry = self._entry(stage, key)
        if entry is None or entry.exists():
            return
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".incoming-", dir=entry.parent))
        except OSError:
            return
        try:
            write(scratch)
            scratch.rename(entry)
        except OSError:  # a full disk, or another run published the same entry first
            shutil.rmtree(scratch, ignore_errors=True)
