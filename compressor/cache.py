"""Stage results cached by content, so a repeated or resumed run never does the same work twice, and never
hands back another model's result.

A result's key is derived from the stage's typed inputs by ``fingerprint``, never listed by hand: every field
of every options dataclass (unless its metadata says ``NOT_IN_KEY``: progress bars), the model as it computes
(``ModelIdentity``: weights, the whole config as loaded, the tokenizer's files), the rows used (their text and
labels), and the code (attr-compress's own source and the versions of the libraries that compute). A new
option or input is in the key the moment it is added; a value the fingerprint does not know is an error, not
a silent ``str()``.

Results live under ``$XDG_CACHE_HOME/attr-compress`` (``~/.cache/attr-compress`` by default), one folder per
stage and key. Each entry holds a manifest of its files' hashes, written last; a read that finds a missing,
extra or changed file is a miss (said in one line; the entry is recomputed and replaced), and files copied out
of an entry are checked again where they land. Entries are written to a temporary name and renamed, so a
killed run never leaves a half-written entry.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from attr_compress.compressor.artifacts import from_plain, to_plain

logger = logging.getLogger(__name__)

CACHE_VERSION = 4  # bump when the layout of an entry changes
MANIFEST = "manifest.json"
RESULT = "result.json"
FILES = "files"
NOT_IN_KEY = {"key": False}  # field metadata: changes nothing a stage computes (progress bars)
SOURCE_PACKAGES = ("compressor", "exporters", "evaluation", "attr_compress")
COMPUTING_LIBRARIES = ("attr-compress", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime")


def cache_root() -> Path:
    """The platform's per-user cache folder (XDG), then ours inside it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attr-compress"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def fingerprint(value: Any) -> Any:
    """A canonical JSON form of a stage input. Objects say what identifies them with ``cache_identity()``;
    dataclasses are every field (by name, with their type's name); paths are refused, because a file's name
    is not its content (pass the content's identity instead)."""
    if hasattr(value, "cache_identity"):
        return {"type": type(value).__qualname__, "identity": fingerprint(value.cache_identity())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            field.name: fingerprint(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.metadata.get("key", True)
        }
        return {"type": type(value).__qualname__, **fields}
    if isinstance(value, enum.Enum):
        return {"enum": type(value).__qualname__, "value": fingerprint(value.value)}
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return fingerprint(value.item())
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, by its values
        return fingerprint(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return {
            "array": sha256_hex(np.ascontiguousarray(value).tobytes()),
            "shape": value.shape,
            "dtype": str(value.dtype),
        }
    if isinstance(value, list | tuple):
        return [fingerprint(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): fingerprint(item) for key, item in value.items()}
    raise TypeError(f"{type(value).__qualname__} has no cache identity; give it cache_identity() or pass its content")


@functools.lru_cache(maxsize=1)
def code_identity() -> dict[str, Any]:
    """attr-compress's own source (every module, hashed) and the versions of the libraries that compute: a
    result made by other code is never reused."""
    from attr_compress.compressor.artifacts import library_versions

    root = Path(__file__).resolve().parents[1]
    hasher = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            hasher.update(str(path.relative_to(root)).encode())
            hasher.update(path.read_bytes())
    versions = library_versions()
    return {"source": hasher.hexdigest(), **{name: versions.get(name) for name in COMPUTING_LIBRARIES}}


def stage_key(stage: str, inputs: Any) -> str:
    """The cache key of ``stage`` run on ``inputs`` (anything ``fingerprint`` takes) by this code."""
    text = json.dumps(
        {"stage": stage, "layout": CACHE_VERSION, "code": code_identity(), "inputs": fingerprint(inputs)},
        sort_keys=True,
    )
    return sha256_hex(text.encode())[:40]


@dataclass(frozen=True)
class ThisMachine:
    """What timings depend on: measured elsewhere, they would mislead."""

    node: str
    processor: str
    cpus: int

    @classmethod
    def here(cls) -> ThisMachine:
        return cls(platform.node(), platform.processor() or platform.machine(), os.cpu_count() or 1)


def manifest_of(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but the manifest itself) and its hash."""
    return {
        path.relative_to(folder).as_posix(): file_digest(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    }


def damage(folder: Path, expected: Mapping[str, str]) -> str | None:
    """What differs between ``folder`` and a manifest (None: nothing)."""
    try:
        found = manifest_of(folder)
    except OSError as err:
        return f"unreadable ({err.strerror})"
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    changed = sorted(name for name in set(expected) & set(found) if expected[name] != found[name])
    for what, names in (("missing", missing), ("changed", changed), ("unexpected", extra)):
        if names:
            return f"{what} file {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "")
    return None


@dataclass(frozen=True)
class StageCache:
    """Where results live (``root``), or nothing at all (``root`` None: --no-cache). An entry found damaged is
    said (logged), recomputed and replaced. An entry this cache wrote itself is served again but not counted as
    reused: "reused" means made by an earlier run."""

    root: Path | None
    written: set[Path] = field(default_factory=set, compare=False)

    @classmethod
    def default(cls, enabled: bool = True) -> StageCache:
        return cls(cache_root() if enabled else None)

    def entry(self, stage: str, inputs: Any) -> Path | None:
        """The folder of ``stage``'s result on ``inputs`` (it may not exist), or None without a cache."""
        return None if self.root is None else self.root / stage / f"v{CACHE_VERSION}-{stage_key(stage, inputs)}"

    def record(self, stage: str, inputs: Any, kind: Any, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The stored record of type ``kind`` (a dataclass, or e.g. ``X | None``), or ``compute()`` stored; and
        whether it came from the cache."""
        entry = self.entry(stage, inputs)
        if entry is not None and self._verified(stage, entry):
            try:
                stored = json.loads((entry / RESULT).read_text(encoding="utf-8"))
                return from_plain(kind, stored), entry not in self.written
            except (OSError, ValueError, TypeError) as err:
                self._discard(stage, entry, f"unreadable result ({err})")
        value = compute()
        plain = json.dumps(to_plain(value))
        self._publish(entry, lambda folder: (folder / RESULT).write_text(plain, encoding="utf-8"))
        return value, False

    def folder(self, stage: str, inputs: Any, into: Path, kind: Any, build: Callable[[Path], Any]) -> tuple[Any, bool]:
        """Fill ``into`` (which must not exist) with the stored folder, checked again where it landed, and
        return the record of type ``kind`` stored with it; or run ``build(into)``, which returns that record,
        and store both. Also returns whether it came from the cache."""
        entry = self.entry(stage, inputs)
        if entry is not None and self._verified(stage, entry):
            stored = self._copy_out(stage, entry, into)
            if stored is not None:
                return from_plain(kind, stored["record"]), entry not in self.written
        value = build(into)

        def write(folder: Path) -> None:
            shutil.copytree(into, folder / FILES)
            (folder / RESULT).write_text(json.dumps({"record": to_plain(value)}), encoding="utf-8")

        self._publish(entry, write)
        return value, False

    def _copy_out(self, stage: str, entry: Path, into: Path) -> Any | None:
        """The entry's stored JSON (``{"record": ...}``), with its files copied to ``into`` and checked there;
        None (and ``into`` gone) when the entry turns out unusable. A failure to write ``into`` (a full disk) is
        the output's, raised."""
        files = {
            name[len(FILES) + 1 :]: digest
            for name, digest in self._manifest(entry).items()
            if name.startswith(FILES + "/")
        }
        try:
            stored = json.loads((entry / RESULT).read_text(encoding="utf-8"))
            for name in files:
                (into / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry / FILES / name, into / name)
        except OSError as err:
            shutil.rmtree(into, ignore_errors=True)
            if str(into) in str(err.filename):
                raise
            self._discard(stage, entry, f"cannot be read: {err.strerror}")
            return None
        except ValueError as err:
            shutil.rmtree(into, ignore_errors=True)
            self._discard(stage, entry, f"unreadable record: {err}")
            return None
        problem = damage(into, files)
        if problem is not None:
            shutil.rmtree(into, ignore_errors=True)
            self._discard(stage, entry, f"its copy in the output differs: {problem}")
            return None
        return stored

    def _manifest(self, entry: Path) -> dict[str, str]:
        return json.loads((entry / MANIFEST).read_text(encoding="utf-8"))["files"]

    def _verified(self, stage: str, entry: Path) -> bool:
        """Whether ``entry`` exists and matches its manifest; a damaged one is removed and said so."""
        if not entry.exists():
            return False
        try:
            manifest = self._manifest(entry)
        except (OSError, ValueError, KeyError, TypeError) as err:
            self._discard(stage, entry, f"no readable manifest ({type(err).__name__})")
            return False
        problem = damage(entry, manifest)
        if problem is not None:
            self._discard(stage, entry, problem)
            return False
        return True

    def _discard(self, stage: str, entry: Path, problem: str) -> None:
        logger.warning(f"cache: the '{stage}' entry {entry} is damaged ({problem}); recomputing it")
        shutil.rmtree(entry, ignore_errors=True)

    def _publish(self, entry: Path | None, write: Callable[[Path], Any]) -> None:
        """Write into a temporary folder, add the manifest last, then rename it into place; a cache that cannot
        be written is skipped (it only saves time)."""
        if entry is None or entry.exists():
            return
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=".incoming-", dir=entry.parent))
        except OSError:
            return
        try:
            write(scratch)
            manifest = {"files": manifest_of(scratch)}
            (scratch / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
            scratch.rename(entry)
            self.written.add(entry)
        except OSError:  # a full disk, or another run published the same entry first
            shutil.rmtree(scratch, ignore_errors=True)
