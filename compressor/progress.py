"""Progress bars, one way: tqdm on stderr, redrawn at most every ``QUIET_INTERVAL`` seconds when stderr is not a
terminal (a CI log or a file then gets a line every half minute, not a redraw per step)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

QUIET_INTERVAL = 30.0


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool, **options: Any) -> Any:
    """A tqdm bar (``desc``, ``unit``, ``total`` as tqdm takes them), or a silent one when not ``enabled`` or in
    a torchrun process other than rank 0 (one bar for the whole job)."""
    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        disable=not enabled or torchrun_worker(),
        mininterval=0.1 if interactive else QUIET_INTERVAL,
        maxinterval=QUIET_INTERVAL * 2,
        **options,
    )


def torchrun_worker() -> bool:
    """Whether this is a torchrun process other than rank 0: it neither logs progress nor talks (read from the
    environment torchrun sets, so it holds before any process group exists)."""
    return int(os.environ.get("RANK", "0")) > 0
