"""The packages depend one way: compressor (data, models, scoring, pruning, recovery) <- exporters <-
evaluation <- attr_compress (pipeline, API, CLI). Parsed from the source, lazy imports included."""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

LAYERS = ("compressor", "exporters", "evaluation", "attr_compress")


def layer(module: str) -> str:
    """The layer an imported module belongs to: attr_compress.compressor.x is compressor, attr_compress.cli is
    attr_compress; anything else (other distributions) by its own top-level name."""
    parts = module.split(".")
    if parts[0] == "attr_compress":
        return parts[1] if len(parts) > 1 and parts[1] in LAYERS[:-1] else "attr_compress"
    return parts[0]


def imported_packages(path: Path) -> set[str]:
    """The layers of every import in a file, wherever it stands (module level or inside a function)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(layer(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(layer(node.module))
    return names


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_one_above_it(package):
    above = set(LAYERS[LAYERS.index(package) + 1 :])
    offenders = {
        f"{path.relative_to(ROOT)} imports {sorted(imported_packages(path) & above)}"
        for path in (ROOT / package).rglob("*.py")
        if imported_packages(path) & above
    }
    assert not offenders, offenders


def test_the_check_sees_lazy_imports(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "def f():\n    from attr_compress.evaluation.report.record import Report\n    import attr_compress.cli\n"
    )
    assert imported_packages(module) == {"evaluation", "attr_compress"}


def source_files() -> list[Path]:
    return sorted(path for package in LAYERS for path in (ROOT / package).rglob("*.py"))


def test_modules_and_functions_fit_on_a_few_screens():
    """A newcomer reads a module in one sitting and a function on one screen (about 400 and 60 lines)."""
    too_long = []
    for path in source_files():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 420:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                too_long.append(f"{path.relative_to(ROOT)}: {node.name} has {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_tests_share_helpers_through_one_module():
    """Tests import shared code from tests.helpers (or the family builders), never from another test or conftest."""
    offenders = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if (module or "").startswith("tests.") and module not in ("tests.helpers", "tests.families"):
                offenders.add(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_every_package_folder_is_installed():
    """pyproject.toml lists every folder with an __init__.py, so a wheel holds what an editable install sees."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(project["packages"])
    folders = {"attr_compress": "attr_compress", **{layer: f"attr_compress.{layer}" for layer in LAYERS[:-1]}}
    found = {
        ".".join([folders[init.relative_to(ROOT).parts[0]], *init.relative_to(ROOT).parts[1:-1]])
        for layer in LAYERS
        for init in (ROOT / layer).rglob("__init__.py")
    }
    assert found == listed
