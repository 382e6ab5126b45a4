"""One output policy for every command that writes a folder: work happens in a hidden staging folder beside
the target, which is renamed into place only when everything passed; an existing folder is replaced only
with ``force`` and only when attr-compress wrote it (its marker file says so)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from attr_compress.compressor.errors import AttrCompressError, InputError

logger = logging.getLogger(__name__)

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

    One writer per output: a lock beside ``out`` is held from the first check to the rename, so of two runs
    on the same ``--out`` the second stops at once. Holding it, leftovers of runs that were killed (their
    staging folders) are removed, and ``out`` is checked again just before the rename. ``contents`` (which
    command wrote it) goes into the folder's marker, which later runs read to know the folder is theirs to
    replace with ``--force``.
    """
    out = Path(out)
    check_output_folder(out, force=force)
    _make_parent(out)
    with _output_lock(out):
        for stale in remove_stale_partials(out):
            logger.info(f"removed '{stale}', left by an attr-compress run that was killed")
        staging = out.parent / f".{out.name}.partial-{os.getpid()}"
        try:
            shutil.rmtree(staging, ignore_errors=True)  # a leftover of an earlier process with our pid
            staging.mkdir()
            _write_marker(staging, contents, complete=False)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise InputError(
                f"cannot create the output folder beside '{out}' ({err.strerror}); pass another --out"
            ) from None
        try:
            yield staging
            _write_marker(staging, contents, complete=True)
            check_output_folder(out, force=force)  # a folder may have appeared there while we worked
            _move_into_place(staging, out)
        except BaseException as err:
            shutil.rmtree(staging, ignore_errors=True)
            translated = in_users_terms(err, staging, out)
            if translated is None:
                raise
            raise translated from err


def in_users_terms(err: BaseException, staging: Path, out: Path) -> BaseException | None:
    """The same error with the staging folder, which is gone once the error is raised, named as the output it
    was to become; None when the error does not name it."""
    hidden, shown = str(staging), str(out)

    def fix(name: object) -> object:
        return name.replace(hidden, shown) if isinstance(name, str) else name

    if isinstance(err, AttrCompressError) and hidden in str(err):
        return type(err)(str(err).replace(hidden, shown))
    if isinstance(err, shutil.Error) and hidden in str(err) and err.args and isinstance(err.args[0], list):
        return shutil.Error([tuple(fix(part) for part in entry) for entry in err.args[0]])
    if isinstance(err, OSError) and hidden in f"{err.filename}{err.filename2}":
        return OSError(err.errno, err.strerror, fix(err.filename), None, fix(err.filename2))
    return None


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create '{out.parent}' ({err.strerror}); pass another --out") from None


def _write_marker(folder: Path, contents: str, *, complete: bool) -> None:
    marker = {"kind": MARKER_KIND, "contents": contents, "pid": os.getpid(), "complete": complete}
    (folder / MARKER_FILE).write_text(json.dumps(marker) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing ``out`` (checked: ours, --force) is set aside first and put
    back if the rename fails, so the user's folder is never lost half-way."""
    if not out.exists():
        staging.rename(out)
        return
    retired = out.parent / f".{out.name}.replaced-{os.getpid()}"
    out.rename(retired)
    try:
        staging.rename(out)
    except BaseException:
        retired.rename(out)
        raise
    shutil.rmtree(retired, ignore_errors=True)


@contextmanager
def _output_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on ``.<out>.lock`` (released by the kernel even when the process is killed)."""
    path = out.parent / f".{out.name}.lock"
    while True:
        try:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
        except OSError as err:
            raise InputError(
                f"cannot write in '{out.parent}' ({err.strerror}); pass --out with a folder you can write"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise InputError(
                f"another attr-compress run (pid {owner}) is writing '{out}'; wait for it to finish or choose "
                "another --out"
            ) from None
        if _same_file(handle, path):  # not a lock file another run unlinked after we opened it
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)
        handle.close()


def _same_file(handle: IO[str], path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def remove_stale_partials(out: Path) -> list[Path]:
    """Staging folders for ``out`` whose run is gone (the caller holds ``out``'s lock, so no live run owns
    one): removed when they are ours (marker inside) and their process is dead. Returns what was removed."""
    removed = []
    for pattern in (f".{out.name}.partial-*", f".{out.name}.replaced-*"):
        for folder in out.parent.glob(pattern):
            pid = folder.name.rsplit("-", 1)[-1]
            if folder.is_dir() and written_by_us(folder) and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True
