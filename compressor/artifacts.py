"""JSON artifacts passed between stages: a ``kind`` tag and a schema version, never pickles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from compressor.errors import InputError

T = TypeVar("T", bound="JsonArtifact")


def read_json(path: Path, remedy: str) -> Any:
    """Parse a JSON file, or raise a one-line InputError ending in ``remedy``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"'{path}' is not valid JSON ({err}); {remedy}") from None


def write_json(data: Any, path: str | Path) -> None:
    """Deterministic JSON (sorted keys, fixed indent) so identical runs give identical bytes."""
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


class JsonArtifact:
    """Mixin for frozen dataclasses that round-trip through JSON files."""

    kind: ClassVar[str]
    schema: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "schema": self.schema, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if data.get("kind") != cls.kind:
            raise InputError(f"expected a '{cls.kind}' file, found kind '{data.get('kind')}'; pass the right file")
        if data.get("schema") != cls.schema:
            raise InputError(f"'{cls.kind}' schema {data.get('schema')} is not {cls.schema}; re-run the stage")
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def save(self, path: str | Path) -> None:
        write_json(self.to_dict(), path)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        file = Path(path)
        if not file.is_file():
            raise InputError(f"'{file}' does not exist; run the stage that writes the {cls.kind} first")
        data = read_json(file, "re-run the stage that writes it")
        if not isinstance(data, dict):
            raise InputError(f"'{file}' is not a {cls.kind} file; re-run the stage that writes it")
        return cls.from_dict(data)


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour shapes the results, for every record we write."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("attr-compress", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
