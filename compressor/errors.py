"""The project's own exceptions, each carrying a one-line message that says what is wrong and what to do.

Library code raises them; only the command line (``attr_compress.cli``) maps them to exit codes.
"""

import dataclasses
import math
from typing import Any


class AttrCompressError(Exception):
    """Base class of every error attr-compress raises on purpose."""


class InputError(AttrCompressError):
    """The user's input is wrong (path, file, option); the message says what to do."""


class ModelLoadError(InputError):
    """A model folder's weights do not load; ``reason`` is the loader's own words, for messages that must
    name another cause than the user's model (a cache entry)."""

    def __init__(self, folder: object, reason: str) -> None:
        super().__init__(f"cannot load the weights in '{folder}' ({reason}); re-save the model")
        self.reason = reason


class VerificationError(AttrCompressError):
    """A produced artifact failed a check (for example ONNX parity with PyTorch)."""


def check_counts(**values: int) -> None:
    """Numeric options that must be at least one (examples, steps, threads, ...), named as on the command line."""
    for name, value in values.items():
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


OPTION_GROUPS = ("data", "scoring", "recovery")  # fields that hold options of their own, unnamed on the command line


def check_finite(options: Any, path: tuple[str, ...] = ()) -> None:
    """Every float of an options dataclass, and of those it holds, is a finite number (NaN compares false with
    every bound, so it would slip through the range checks and fail only after the work)."""
    for field in dataclasses.fields(options):
        value, names = getattr(options, field.name), (*path, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_finite(value, names)
        elif isinstance(value, float) and not math.isfinite(value):
            option = "-".join(name for name in names if name not in OPTION_GROUPS).replace("_", "-")
            raise InputError(f"--{option} must be a finite number, got {value}")
