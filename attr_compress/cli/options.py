"""Click options built from the one table of names, defaults, choices and help (``compressor.defaults``), the
groups of them several commands share, and their conversion into the options dataclasses."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import click

from attr_compress.compressor.defaults import METHODS, OPTIONS
from attr_compress.compressor.errors import InputError


class FiniteFloat(click.ParamType):
    """A float option: NaN and infinity are refused when the command line is read, before any work."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloat()


def flag(name: str, **overrides: Any) -> Callable[[Any], Any]:
    """The click option of ``compressor.defaults.OPTIONS[name]`` (``overrides`` for a command's own help)."""
    option = OPTIONS[name]
    settings: dict[str, Any] = {"default": option.default, "help": option.help}
    settings["show_default"] = option.default is not None
    if option.choices:
        settings["type"] = click.Choice(option.choices)
    elif option.type is float:
        settings["type"] = FINITE
    elif option.type is not bool:
        settings["type"] = option.type
    declaration = f"{option.flag}/--no-{option.flag[2:]}" if option.type is bool else option.flag
    return click.option(declaration, **{**settings, **overrides})


def with_options(command: Any, options: list[Any]) -> Any:
    """``command`` decorated by ``options`` in the order they are listed (so --help lists them that way)."""
    for option in reversed(options):
        command = option(command)
    return command


def data_options(command: Any) -> Any:
    """Column options shared by every command that reads labelled data, passed on as one ``columns`` dict."""

    @functools.wraps(command)
    def with_columns(
        *args: Any, text_column: str | None, text_pair_column: str | None, label_column: str | None, **kwargs: Any
    ) -> Any:
        columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
        return command(*args, columns=columns, **kwargs)

    return with_options(
        with_columns,
        [
            click.option("--text-column", help="Column with the (first) text; detected for GLUE files."),
            click.option("--text-pair-column", help="Column with the second text of pair tasks."),
            click.option("--label-column", help="Column with the gold label."),
        ],
    )


SCORING = ("method", "examples", "steps", "rule", "settle", "seed", "device", "max_batch_tokens")
RECOVERY = (
    "recover",
    "fit_examples",
    "lsq_damping",
    "distill_tokens",
    "distill_hidden",
    "distill_augment",
    "distill_steps",
    "distill_int8_aware",
    "distill_minutes",
)


def scoring_options(command: Any) -> Any:
    return with_options(command, [flag(name) for name in SCORING])


def recovery_options(command: Any) -> Any:
    return with_options(command, [flag(name) for name in RECOVERY])


def scoring_from(options: dict[str, Any], quiet: bool = False) -> Any:
    """ScoringOptions from the shared scoring options (they are removed from ``options``)."""
    from attr_compress.compressor.scoring.options import ScoringOptions

    return ScoringOptions(**{name: options.pop(name) for name in SCORING if name in options}, progress=not quiet)


def recovery_from(options: dict[str, Any], seed: int, device: str) -> Any:
    """RecoveryOptions from the recovery options (they are removed from ``options``); ``device`` distils."""
    from attr_compress.compressor.recovery.distill import DistillOptions
    from attr_compress.compressor.recovery.lsq import RecoveryOptions

    distill = DistillOptions(
        tokens=options.pop("distill_tokens"),
        hidden=options.pop("distill_hidden"),
        augment=options.pop("distill_augment"),
        steps=options.pop("distill_steps"),
        minutes=options.pop("distill_minutes"),
        quantization_aware=options.pop("distill_int8_aware"),
        seed=seed,
        device=device,
    )
    return RecoveryOptions(
        method=options.pop("recover"),
        fit_examples=options.pop("fit_examples"),
        distill=distill,
        seed=seed,
        damped=options.pop("lsq_damping"),
    )


def layer_list(text: str) -> tuple[int, ...]:
    """'5,6' -> (4, 5): 1-based layer numbers as the user counts them, 0-based inside."""
    try:
        return tuple(int(part) - 1 for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--drop-layers takes comma-separated layer numbers like 5,6; got {text!r}") from None


def float_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        keeps = tuple(float(item) for item in value.split(","))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a comma-separated list of numbers, e.g. 0.9,0.5,0.1") from None
    if not all(0 < keep <= 1 for keep in keeps):
        raise click.BadParameter(f"every keep level must be in (0, 1], got {value}")
    return keeps


def method_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    methods = tuple(item.strip() for item in value.split(",") if item.strip())
    unknown = [method for method in methods if method not in METHODS]
    if unknown or not methods:
        raise click.BadParameter(f"unknown method(s) {unknown or value!r}; choose from {', '.join(METHODS)}")
    return methods
