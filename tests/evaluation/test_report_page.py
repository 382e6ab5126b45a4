"""report.html: written by every run, self-contained, and drawn by a real browser (headless Chromium).

The browser half needs Chromium and Playwright's Python driver; `.ci/run` installs Chromium when it is
missing, and here the tests are skipped with the reason when no browser can be found. Screenshots at a
laptop and a phone width land in ``build/screenshots/`` for a person to look at.
"""

import json
import re
import shutil

import pytest
from attr_compress.compressor.explain.drawing import tree_svg
from attr_compress.compressor.explain.trees import AttributionTree
from attr_compress.evaluation.curves import Metrics, SweepResult, SweptMethod
from attr_compress.evaluation.report.html import render_html
from attr_compress.evaluation.report.record import Report
from attr_compress.evaluation.report.sweep import render_sweep_html

from attr_compress.cli import main
from tests.helpers import ROOT, pipeline_args

SCREENSHOTS = ROOT / "build" / "screenshots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def target_run(tiny_model_dir, tiny_data, tmp_path_factory):
    """A run with a latency target, so the page has search candidates, recovery and two trees."""
    out = tmp_path_factory.mktemp("page") / "slim"
    args = pipeline_args(tiny_model_dir, tiny_data, out, "--recover", "lsq")
    del args[args.index("--keep") : args.index("--keep") + 2]
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in [*args, "--latency-budget", "1000", "--max-drop", "100"]])
        raise SystemExit(0)
    assert exit_info.value.code == 0
    return out


def test_the_page_shows_the_report_figures(target_run):
    page = (target_run / "report.html").read_text(encoding="utf-8")
    report = json.loads((target_run / "report.json").read_text())
    layers, heads = len(report["importance"]["scores"]), len(report["importance"]["scores"][0])
    assert page.count('class="mark head-cell"') == layers * heads
    assert page.count('data-kept="1"') == report["heads"]["kept"]
    assert page.count('class="tree-svg"') == len(report["trees"]) == 2
    drop, interval = report["drop_points"], report["drop_interval"]
    assert f"{-drop + 0.0:+.2f} points</b> (95% interval {-interval['high'] + 0.0:+.2f} to" in page
    assert "Newcombe" in page and "Clopper-Pearson" in page and "--max-drop is checked" in page
    speedup = report["ratios"]["speedup_p50_pruned_int8_vs_original_int8"]
    assert f"<b>{speedup:.2f}x</b>" in page
    judged = len(report["target_search"]["candidates"])
    assert judged > 0 and page.count("selection accuracy") >= judged
    for check in report["export"]["pruned"]["parity"]:
        assert check["candidate"] in page


def test_the_page_requests_nothing(target_run):
    page = (target_run / "report.html").read_text(encoding="utf-8")
    assert "default-src 'none'" in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"\b(src|href)=", page)
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg")


def test_tree_layout_escapes_tokens_and_keeps_sentence_order():
    tree = AttributionTree.from_dict(
        {
            "kind": "attribution-tree",
            "schema": 1,
            "tokens": ["[CLS]", "<b>", "good", "&", "[SEP]"],
            "root": 2,
            "threshold": 0.4,
            "edges": [
                {"parent": 2, "child": 1, "layer": 3, "score": 0.9},
                {"parent": 1, "child": 3, "layer": 0, "score": 0.5},
            ],
            "meta": {},
        }
    )
    svg = tree_svg(tree)
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&amp;" in svg
    xs = [float(x) for x in re.findall(r'<text x="([\d.]+)" y="[\d.]+" font-size="13"', svg)]
    assert len(xs) == 3 and xs == sorted(xs)  # tokens 1, 2, 3 left to right
    assert svg.count("<path") == 2 and "L4" in svg and "L1" in svg


def test_sweep_page_draws_one_line_per_method():
    sweep = SweepResult(
        model="m",
        evaluation="dev.tsv",
        evaluation_rows=10,
        calibration="train.tsv",
        calibration_examples=5,
        keeps=[1.0, 0.5, 0.25],
        unpruned=Metrics(0.9),
        methods={
            name: SweptMethod(accuracy=[0.9, 0.8, value], auc=0.8, seconds=1.0)
            for name, value in (("attattr", 0.7), ("random", 0.5))
        },
        random_seeds=[0],
        latency_method=None,
        latency=None,
        threads=1,
        steps=6,
        rule="gauss",
        seed=0,
    )
    page = render_sweep_html(sweep)
    assert page.count("<polyline") == 2 and page.count('class="mark"') == 6 and "random: 0.5000 at 0.75" in page


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.fixture(scope="module")
def browser():
    executable = _browser()
    if executable is None:
        pytest.skip(f"no Chromium found (looked for {', '.join(BROWSERS)}); `.ci/run` installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's driver is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_a_browser_draws_the_page(browser, target_run, width):
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors, requests = [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    url = (target_run / "report.html").as_uri()
    page.goto(url)
    report = json.loads((target_run / "report.json").read_text())
    scores = report["importance"]["scores"]
    assert errors == [] and requests == [url]
    assert page.locator(".head-cell").count() == len(scores) * len(scores[0])
    drawn = page.locator("svg, #verdict, .bar")
    assert drawn.count() >= 6
    for index in range(drawn.count()):
        box = drawn.nth(index).bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, index
        assert box["x"] >= 0 and box["x"] + min(box["width"], width) <= width + 1  # nothing pushed off the page
    assert page.locator(".tree-svg").count() == 2
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"report-{width}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_the_page_renders_from_a_saved_report(target_run):
    """report.json alone (plus the trees) rebuilds the same page: the page holds nothing the report does not."""
    report = Report.from_dict(json.loads((target_run / "report.json").read_text()))
    trees = [
        AttributionTree.from_dict(json.loads((target_run / "trees" / f"{name}.json").read_text()))
        for name in report.trees
    ]
    assert render_html(report, trees) == (target_run / "report.html").read_text(encoding="utf-8")
