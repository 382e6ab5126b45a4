"""Output folders that appear only when complete, and never replace a user's files by accident."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compressor.errors import InputError

REPORT_FILE = "report.json"
REPORT_KIND = "attr-compress-report"


def written_by_us(folder: Path) -> bool:
    """A folder is ours when its report.json carries our kind tag."""
    try:
        return json.loads((folder / REPORT_FILE).read_text(encoding="utf-8")).get("kind") == REPORT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def check_output_folder(out: Path, *, force: bool) -> None:
    """Fail before any work if the output cannot be written or would clobber something."""
    if out.exists():
        if not force:
            raise InputError(
                f"output folder '{out}' already exists; pass --force to replace it or choose another --out"
            )
        if not out.is_dir() or not written_by_us(out):
            raise InputError(
                f"'{out}' exists and was not written by attr-compress; it is never replaced, choose another --out"
            )
    parent = out.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise InputError(f"cannot write in '{probe}' (read-only or no permission); pass --out with a writable folder")


@contextmanager
def staged_folder(out: Path, *, force: bool) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``out``; rename it into place only if the block succeeds."""
    check_output_folder(out, force=force)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise InputError(
            f"cannot create the output folder beside '{out}' ({err.strerror}); pass another --out"
        ) from None
    try:
        yield staging
        if out.exists():
            retired = out.parent / f".{out.name}.replaced-{os.getpid()}"
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
