"""The one error boundary: the library raises, only ``main`` exits. The project's errors become one line and an
exit code (EXIT_CODES), the machine's faults one line naming the file, anything else one line asking for
--debug; Ctrl-C and SIGTERM leave nothing behind. ``main`` also configures the log once: every module logs
through ``logging`` under ``attr_compress``, shown on stderr unless --quiet."""

from __future__ import annotations

import errno
import logging
import shutil
import signal
import sys
import traceback
from typing import Any

import click

from attr_compress.cli.commands import cli
from attr_compress.compressor.errors import AttrCompressError, InputError, VerificationError
from attr_compress.compressor.progress import torchrun_worker

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_CODES: dict[type[AttrCompressError], int] = {InputError: 2, VerificationError: 1}
USER_FIXABLE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


class Terminated(BaseException):
    """Raised by the SIGTERM handler so staged folders are cleaned up like on Ctrl-C."""


def say(message: str) -> None:
    click.echo(message, err=True)


def configure_log(quiet: bool) -> None:
    """Messages of every attr-compress module on stderr, as plain lines; warnings only with --quiet, and from
    every torchrun process but rank 0 (one voice for the whole job)."""
    logger = logging.getLogger("attr_compress")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False  # torch.distributed gives the root logger a handler of its own: no line twice
    logger.setLevel(logging.WARNING if quiet or torchrun_worker() else logging.INFO)


def _terminate(_signum: int, _frame: Any) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Entry point: the one place that turns errors into exit codes (2 usage, 1 failed check, 130/143 signal)."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    configure_log(quiet="--quiet" in args)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(args=args, prog_name="attr-compress", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        say("interrupted; no output was written")
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        say("terminated; no output was written")
        sys.exit(EXIT_TERMINATED)
    except click.UsageError as err:  # one line, like every other error (click would add the usage text)
        command = f" {err.ctx.command_path.split(' ', 1)[-1]}" if err.ctx and " " in err.ctx.command_path else ""
        say(f"error: {err.format_message()}; see 'attr-compress{command} --help'")
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except AttrCompressError as err:
        if debug:
            traceback.print_exc()
        say(f"error: {err}")
        sys.exit(next((code for kind, code in EXIT_CODES.items() if isinstance(err, kind)), 1))
    except OSError as err:  # the machine's faults: a full disk, a file we may not write
        if debug:
            traceback.print_exc()
        say(f"error: {os_error_line(err)}")
        sys.exit(2 if err.errno in USER_FIXABLE_ERRNOS else 1)
    except Exception as err:  # noqa: BLE001 - the boundary: never a raw traceback
        if debug:
            traceback.print_exc()
        message = " ".join(str(err).split())[:300]
        say(f"internal error: {type(err).__name__}: {message}; re-run with --debug and report it")
        sys.exit(1)


def os_error_line(err: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do."""
    if isinstance(err, shutil.Error) and err.args and isinstance(err.args[0], list) and err.args[0]:
        _, destination, why = err.args[0][0]  # copytree gathers (source, destination, reason) per file
        return f"{why} (copying to '{destination}'); nothing was written: check the disk and pass another --out"
    where = f" on '{err.filename}'" if err.filename else ""
    remedy = {
        errno.ENOSPC: "free some disk space or pass --out on another disk",
        errno.EDQUOT: "free some of your disk quota or pass --out elsewhere",
        errno.EROFS: "pass --out on a writable disk",
    }.get(err.errno, "check the permissions or pass another --out")
    return f"{err.strerror or type(err).__name__}{where}; nothing was written: {remedy}"
