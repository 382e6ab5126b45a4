"""Command line: `attr-compress MODEL --keep 0.5` runs the pipeline; subcommands run one stage each.

``options`` builds the click options from the one table of names, defaults and choices
(``compressor.defaults``); ``commands`` parses them and calls the same stage functions the pipeline calls;
``boundary`` (``main``) is the one place that turns errors into one line and an exit code, and configures the
log. Heavy imports stay inside commands, so `--help` is instant.
"""

from attr_compress.cli.boundary import EXIT_CODES, main
from attr_compress.cli.commands import cli

__all__ = ["EXIT_CODES", "cli", "main"]
