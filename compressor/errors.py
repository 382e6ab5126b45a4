"""The project's own exceptions, each carrying a one-line message that says what is wrong and what to do.

Library code raises them; only the command line (``attr_compress.cli``) maps them to exit codes.
"""


class AttrCompressError(Exception):
    """Base class of every error attr-compress raises on purpose."""


class InputError(AttrCompressError):
    """The user's input is wrong (path, file, option); the message says what to do."""


class VerificationError(AttrCompressError):
    """A produced artifact failed a check (for example ONNX parity with PyTorch)."""


def check_counts(**values: int) -> None:
    """Numeric options that must be at least one (examples, steps, threads, ...), named as on the command line."""
    for name, value in values.items():
        if value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
