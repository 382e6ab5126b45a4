"""The docs agree with the code: every option table row with compressor/defaults.py (flag, default, choices) and
with the command line (no row names an option attr-compress does not have), and every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from attr_compress.compressor.defaults import OPTIONS, Option

from attr_compress.cli.commands import cli
from tests.helpers import ROOT

README = ROOT / "README.md"
OPTIONS_DOC = ROOT / "docs" / "options.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
MAIN_TABLE = "<!-- options-table: main -->"

FLAG = re.compile(r"`(--[a-z0-9][a-z0-9-]*)`")
CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
ANCHOR = re.compile(r"<a id=\"([^\"]+)\"></a>")
BY_FLAG = {option.flag: option for option in OPTIONS.values()}


def rendered_default(option: Option) -> str:
    """How the docs write a default: ``off`` for None (not used unless given), ``on`` / ``off`` for a switch,
    anything else as code (`gauss`, `0.995`, `40000`)."""
    if option.default is None:
        return "off"
    if isinstance(option.default, bool):
        return "on" if option.default else "off"
    return f"`{option.default}`"


def cells(line: str) -> list[str]:
    """The cells of a markdown table row (escaped pipes stay inside their cell)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def option_rows(lines: list[str]) -> list[tuple[list[str], list[str]]]:
    """(flags named in the first cell, all cells) of every table row whose first cell names a flag."""
    rows = []
    for line in lines:
        if line.startswith("|"):
            row = cells(line)
            flags = FLAG.findall(row[0]) if row else []
            if flags:
                rows.append((flags, row))
    return rows


def by_first_flag(rows: list[tuple[list[str], list[str]]]) -> tuple[dict[str, list[str]], list[str]]:
    """Rows by the first flag they name, and the flags named by more than one row."""
    table: dict[str, list[str]] = {}
    repeated = []
    for flags, row in rows:
        if flags[0] in table:
            repeated.append(flags[0])
        table[flags[0]] = row
    return table, repeated


def main_table_lines(text: str) -> list[str]:
    """The lines of the table right after the README's main-options marker."""
    assert MAIN_TABLE in text, f"README.md has no '{MAIN_TABLE}' before its main options table"
    after = text.split(MAIN_TABLE, 1)[1].lstrip("\n").splitlines()
    table = []
    for line in after:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def option_problems(table: dict[str, list[str]], options: list[Option], *, choices: bool) -> list[str]:
    """What is wrong with the rows of ``options``: missing, another default, other choices (column 2)."""
    problems = []
    for option in options:
        row = table.get(option.flag)
        if row is None:
            problems.append(f"{option.flag}: no row")
            continue
        if row[1] != rendered_default(option):
            problems.append(f"{option.flag}: default {row[1]!r}, defaults.py says {rendered_default(option)!r}")
        if choices and set(CODE.findall(row[2])) != set(option.choices or ()):
            problems.append(f"{option.flag}: choices {row[2]!r}, defaults.py says {option.choices}")
    return problems


def command_line_flags() -> set[str]:
    """Every long option of attr-compress and of each of its commands, with the --no- forms of switches."""
    params = [*cli.params, *(param for command in cli.commands.values() for param in command.params)]
    return {opt for param in params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", text), re.MULTILINE)
    return {slug(heading) for heading in headings} | set(ANCHOR.findall(text))


def broken_links(document: Path, text: str) -> list[str]:
    """Relative links (outside code blocks) whose file, or whose heading anchor, does not exist."""
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading or anchor '{fragment}' in {resolved.name}")
    return broken


# docs/options.md: the full table


def test_every_option_has_its_row_with_its_default_and_choices():
    table, repeated = by_first_flag(option_rows(OPTIONS_DOC.read_text(encoding="utf-8").splitlines()))
    assert not repeated, f"options named by more than one row of docs/options.md: {repeated}"
    assert option_problems(table, list(OPTIONS.values()), choices=True) == []


def test_no_row_names_an_option_attr_compress_does_not_have():
    known = command_line_flags()
    rows = option_rows(OPTIONS_DOC.read_text(encoding="utf-8").splitlines())
    unknown = sorted({flag for flags, _ in rows for flag in flags} - known)
    assert not unknown, f"docs/options.md names options no attr-compress command has: {unknown}"


def test_every_option_of_the_table_is_an_option_of_the_run():
    run_flags = {opt for param in cli.commands["run"].params for opt in param.opts}
    assert {option.flag for option in OPTIONS.values()} <= run_flags


# README.md: the main options table


def test_the_readme_main_table_names_options_with_their_defaults():
    rows = option_rows(main_table_lines(README.read_text(encoding="utf-8")))
    assert len(rows) >= 8, "the README's main options table lost its rows"
    table, repeated = by_first_flag(rows)
    assert not repeated
    not_shared = sorted(set(table) - set(BY_FLAG))
    assert not not_shared, f"rows of the README's main table that are not in compressor/defaults.py: {not_shared}"
    assert option_problems(table, [BY_FLAG[flag] for flag in table], choices=False) == []


def test_every_readme_table_row_names_a_real_option():
    rows = option_rows(README.read_text(encoding="utf-8").splitlines())
    unknown = sorted({flag for flags, _ in rows for flag in flags} - command_line_flags())
    assert not unknown


# links


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_headings(document):
    assert document.is_file()
    assert broken_links(document, document.read_text(encoding="utf-8")) == []


# the checks themselves


def test_the_checks_catch_a_wrong_default_missing_choices_an_unknown_flag_and_a_dead_link(tmp_path):
    steps, rule = OPTIONS["steps"], OPTIONS["rule"]
    text = [
        "| option | default | choices | meaning |",
        "|---|---|---|---|",
        f"| `{steps.flag}` | `{steps.default + 1}` |  | wrong default |",
        f"| `{rule.flag}` | {rendered_default(rule)} | `{rule.choices[0]}` | too few choices |",
        "| `--no-such-option` | off |  | not an option |",
    ]
    table, _ = by_first_flag(option_rows(text))
    problems = option_problems(table, [steps, rule, OPTIONS["seed"]], choices=True)
    assert [problem.split(":")[0] for problem in problems] == [steps.flag, rule.flag, "--seed"]
    assert "--no-such-option" not in command_line_flags() and "--steps" in command_line_flags()

    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    document = tmp_path / "doc.md"
    links = "[a](there.md) [b](there.md#a-heading) [c](gone.md) [d](there.md#nowhere) [e](https://example.org)"
    assert broken_links(document, links) == [
        "gone.md: no such file",
        "there.md#nowhere: no heading or anchor 'nowhere' in there.md",
    ]


def test_defaults_are_rendered_one_way():
    assert rendered_default(OPTIONS["distill_minutes"]) == "off"
    assert rendered_default(OPTIONS["lsq_damping"]) == "on"
    assert rendered_default(OPTIONS["rule"]) == f"`{OPTIONS['rule'].default}`"
    assert slug("Earlier figures (previous rounds' code)") == "earlier-figures-previous-rounds-code"
