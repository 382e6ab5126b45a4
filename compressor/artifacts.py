"""JSON artifacts passed between stages: a ``kind`` tag and a schema version, never pickles."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union

from attr_compress.compressor.errors import InputError

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


def to_plain(value: Any) -> Any:
    """JSON types for a value: nested artifacts keep their kind tag, other dataclasses become dicts."""
    if isinstance(value, JsonArtifact):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(item) for item in value]
    return value


def from_plain(kind: Any, value: Any) -> Any:
    """The typed value of ``kind`` (a dataclass, list[...], dict[str, ...], optional) from its JSON form."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if value is None:
        return None
    if origin in (Union, types.UnionType):
        options = [argument for argument in arguments if argument is not type(None)]
        return from_plain(options[0], value) if len(options) == 1 else value
    if origin is list:
        return [from_plain(arguments[0], item) for item in value]
    if origin is tuple:  # tuple[X, ...] or a fixed tuple[X, Y]
        kinds = [arguments[0]] * len(value) if len(arguments) == 2 and arguments[1] is Ellipsis else arguments
        return tuple(from_plain(kind, item) for kind, item in zip(kinds, value, strict=True))
    if origin is dict:
        return {key: from_plain(arguments[1], item) for key, item in value.items()}
    if isinstance(kind, type) and issubclass(kind, JsonArtifact) and kind.kind != value.get("kind", kind.kind):
        raise InputError(f"expected a '{kind.kind}' record, found '{value.get('kind')}'; re-run the stage")
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        names = {field.name for field in dataclasses.fields(kind)}
        return kind(**{key: from_plain(hints[key], item) for key, item in value.items() if key in names})
    return value


class JsonArtifact:
    """Mixin for frozen dataclasses that round-trip through JSON files."""

    kind: ClassVar[str]
    schema: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        fields = {field.name: to_plain(getattr(self, field.name)) for field in dataclasses.fields(self)}
        return {"kind": self.kind, "schema": self.schema, **fields}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if data.get("kind") != cls.kind:
            raise InputError(f"expected a '{cls.kind}' file, found kind '{data.get('kind')}'; pass the right file")
        if data.get("schema") != cls.schema:
            raise InputError(f"'{cls.kind}' schema {data.get('schema')} is not {cls.schema}; re-run the stage")
        return from_plain(cls, data)

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
