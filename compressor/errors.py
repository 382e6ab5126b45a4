"""The project's own exceptions: the CLI turns them into one line on stderr and an exit code."""


class AttrCompressError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(AttrCompressError):
    """The user's input is wrong (path, file, option); the message says what to do."""

    exit_code = 2


class VerificationError(AttrCompressError):
    """A produced artifact failed a check (for example ONNX parity with PyTorch)."""

    exit_code = 1
