"""One output policy for every command that writes a folder: work happens in a hidden staging folder beside
the target, which is renamed into place only when everything passed; an existing folder is replaced only
with ``force`` and only when attr-compress wrote it (its marker file says so)."""

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
MARKER_FILE = ".attr-compress.json"
MARKER_KIND = "attr-compress-output"


def written_by_us(folder: Path) -> bool:
    """A folder is ours when it holds our marker (or, from older versions, a report.json of our kind)."""
    for name, kind in ((MARKER_FILE, MARKER_KIND), (REPORT_FILE, REPORT_KIND)):
        try:
            if json.loads((folder / name).read_text(encoding="utf-8")).get("kind") == kind:
                return True
        except (OSError, ValueError, AttributeError):
            continue
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
    probe = out.parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise InputError(f"cannot write in '{probe}' (read-only or no permission); pass --out with a writable folder")


@contextmanager
def staged_folder(out: str | Path, *, force: bool, contents: str = "run") -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``out``; rename it into place only if the block succeeds.

    ``contents`` (which command wrote it) goes into the folder's marker, which later runs read to know the
    folder is theirs to replace with ``--force``.
    """
    out = Path(out)
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
        marker = {"kind": MARKER_KIND, "contents": contents}
        (staging / MARKER_FILE).write_text(json.dumps(marker) + "\n", encoding="utf-8")
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
