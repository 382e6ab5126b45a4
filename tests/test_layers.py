"""The packages depend one way: compressor (data, models, scoring, pruning, recovery) <- exporters <-
evaluation <- attr_compress (pipeline, API, CLI). Parsed from the source, lazy imports included."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("compressor", "exporters", "evaluation", "attr_compress")


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every import in a file, wherever it stands (module level or inside a function)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
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
    module.write_text("def f():\n    from evaluation.report import Report\n    import attr_compress.cli\n")
    assert imported_packages(module) == {"evaluation", "attr_compress"}
