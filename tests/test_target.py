"""Choosing by measurement: the int8 recipe, and --keep/--keep-ffn for a latency target."""

from pathlib import Path

import numpy as np
import pytest

from attr_compress import search as target_module
from attr_compress.search import FFN_KEEPS, HEAD_KEEPS, SearchInputs, search_target
from compressor.data import load_labelled_data
from compressor.encoded import encode_data
from compressor.errors import InputError
from compressor.importance import HeadImportance
from compressor.modeling import load_model
from compressor.neurons import NeuronImportance
from compressor.pruning import ffn_widths, heads_per_layer
from compressor.recovery import RecoveryOptions
from evaluation.target import SEARCH_MARGIN, LatencyTarget
from evaluation.tuning import candidate_recipes, choose_recipe
from exporters.recipes import OPTIMUM_BASELINE, Recipe
from exporters.runtime import TorchRunner
from tests.conftest import tiny_model, write_tokenizer


def test_recipe_choice_is_the_fastest_within_the_accuracy_tolerance():
    recipes = candidate_recipes()
    assert len(recipes) == 9 and len({recipe.name for recipe in recipes}) == 9
    results = {recipe.name: {"accuracy": 0.90, "latency_p50_ms": 2.0, "throughput_per_s": 10.0} for recipe in recipes}
    fastest_but_wrong, fast, _ = recipes[3], recipes[5], recipes[7]
    results[fastest_but_wrong.name].update(accuracy=0.80, latency_p50_ms=0.5)
    results[fast.name].update(accuracy=0.897, latency_p50_ms=0.9)
    tuning = choose_recipe(recipes, results, tolerance=0.005, threads=1, fusion_note="fused graph matches PyTorch")
    assert tuning.recipe == fast
    assert "2.22x Optimum's recipe" in tuning.reason
    rows = {row["name"]: row for row in tuning.candidates}
    assert not rows[fastest_but_wrong.name]["eligible"] and rows[fast.name]["eligible"]
    assert Recipe.from_dict(tuning.chosen) == fast and tuning.recipe != OPTIMUM_BASELINE


def test_without_a_fused_graph_only_plain_recipes_are_tried():
    assert {recipe.graph for recipe in candidate_recipes(fused=False)} == {"plain"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of"),
        ({"speedup": 2.0, "budget_ms": 1.0}, "exactly one of"),
        ({"speedup": 0.0}, "--target-speedup must be above 0"),
        ({"budget_ms": -1.0}, "--latency-budget must be above 0"),
    ],
)
def test_bad_targets_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        LatencyTarget(**kwargs)


def test_targets_compare_against_the_baseline_or_the_budget():
    assert LatencyTarget(speedup=2.5).met(9.0, 2.5) and not LatencyTarget(speedup=2.5).met(0.1, 2.49)
    assert LatencyTarget(budget_ms=1.0).met(1.0, 0.1) and not LatencyTarget(budget_ms=1.0).met(1.01, 99.0)


def fake_p50(keep: float, keep_ffn: float, layers: int = 2) -> float:
    """Per-unit costs plus a cost per layer, like a real CPU at batch 1."""
    return 0.1 * layers + 0.3 * keep + 0.5 * keep_ffn


def plan_p50(plan) -> float:
    counts = target_module.structure_counts(plan, 37)
    return fake_p50(
        counts["heads"] / plan.total_heads, counts["neurons"] / (37 * len(plan.head_mask)), counts["layers"]
    )


class FakeTimer:
    """Latency that falls with fewer heads and neurons, as on a real CPU, without timing anything."""

    calls: list = []

    def __init__(self, loaded, recipe, singles, threads, folder, baseline_graph):
        FakeTimer.calls = []
        self.recipe = recipe
        config = loaded.config
        self.shape = (config.num_hidden_layers * config.num_attention_heads, config.num_hidden_layers * 37)

    def measure(self, plan):
        FakeTimer.calls.append((plan.keep, plan.keep_ffn, tuple(plan.dropped_layers)))
        return self.timing(plan_p50(plan))

    def build(self, model, recipes, name):
        return [model for _ in recipes]

    def runner(self, graph, recipe, name):
        runner = TorchRunner(name, graph)
        total_heads, total_neurons = self.shape
        layers = len(graph.bert.encoder.layer)
        runner.p50 = fake_p50(sum(heads_per_layer(graph)) / total_heads, sum(ffn_widths(graph)) / total_neurons, layers)
        return runner

    def discard(self, name):
        pass

    def time(self, runner):
        return self.timing(runner.p50)

    @staticmethod
    def timing(p50):
        return {"p50_ms": p50, "baseline_p50_ms": 2.0, "speedup": 2.0 / p50}


def search(tiny_model_dir, tiny_data, monkeypatch, target, reference_accuracy=1.0, ffn_mass=None, drops=False):
    monkeypatch.setattr(target_module, "_Timer", FakeTimer)
    loaded = load_model(tiny_model_dir)
    layers = loaded.config.num_hidden_layers
    data = load_labelled_data(tiny_data, loaded.label2id)
    selection = encode_data(loaded, data, singles=4)
    common = {"steps": 1, "rule": "left", "examples": 1, "seed": 0, "calibration": "x", "model": "m"}
    heads = HeadImportance(
        scores=np.random.default_rng(1).random((layers, 4)).tolist(),
        method="attattr",
        target="gold",
        aggregation="x",
        **common,
    )
    neuron_scores = np.random.default_rng(0).random((layers, 37)) * np.asarray(ffn_mass or [1.0] * layers)[:, None]
    neurons = NeuronImportance(scores=neuron_scores.tolist(), target="gold-log", aggregation="x", **common)
    inputs = SearchInputs(
        loaded,
        heads,
        neurons,
        target,
        selection,
        [],
        RecoveryOptions("none"),
        reference_accuracy=reference_accuracy,
        max_drop=1.0,
        drop_layers=drops,
    )
    return search_target(inputs, OPTIMUM_BASELINE, baseline_graph=Path("unused-by-the-fake-timer.onnx"))


def test_target_search_walks_the_staircase_and_picks_a_candidate_that_meets_it(tiny_model_dir, tiny_data, monkeypatch):
    result = search(tiny_model_dir, tiny_data, monkeypatch, LatencyTarget(speedup=3.0))
    limit = 2.0 / (3.0 * SEARCH_MARGIN)  # baseline 2 ms, 3x, with the search's margin
    chosen = next(row for row in result.candidates if (row["keep"], row["keep_ffn"]) == (result.keep, result.keep_ffn))
    assert chosen["meets_target"] and chosen["p50_ms"] <= limit
    # one row of the staircase per head keep: the largest FFN keep that meets the target
    frontier = [row for row in result.candidates if "int8" in row]
    assert frontier and all(len(row["int8"]) == 2 for row in frontier)  # both weight granularities tried
    for row in frontier:
        larger = [f for f in FFN_KEEPS if f > row["keep_ffn"]]
        assert not larger or fake_p50(row["keep"], larger[-1]) > limit
    best_row, best = max(
        ((row, result_) for row in frontier for result_ in row["int8"] if result_["meets_target"]),
        key=lambda pair: (pair[0]["selection_accuracy_fp32"], pair[1]["selection_accuracy"], pair[1]["speedup"]),
    )
    assert result.recipe == best["recipe"] and (result.keep, result.keep_ffn) == (
        best_row["keep"],
        best_row["keep_ffn"],
    )
    assert len(FakeTimer.calls) < len(HEAD_KEEPS) * len(FFN_KEEPS) / 2  # far fewer than the full grid
    assert result.keep_ffn < 1.0 and "stayed within --max-drop 1 of the original's 1.0000" in result.reason


def test_the_fastest_candidate_within_the_drop_wins(tiny_model_dir, tiny_data, monkeypatch):
    result = search(tiny_model_dir, tiny_data, monkeypatch, LatencyTarget(speedup=3.0), reference_accuracy=0.0)
    trials = [trial for row in result.candidates for trial in row.get("int8", []) if trial["meets_target"]]
    assert max(trial["speedup"] for trial in trials) == max(
        trial["speedup"]
        for row in result.candidates
        for trial in row.get("int8", [])
        if trial["recipe"] == result.recipe and (row["keep"], row["keep_ffn"]) == (result.keep, result.keep_ffn)
    )
    assert result.reason.startswith("the fastest of")


def test_an_unreachable_target_is_a_clear_error(tiny_model_dir, tiny_data, monkeypatch):
    with pytest.raises(InputError, match=r"no candidate meets the target .*lower the target"):
        search(tiny_model_dir, tiny_data, monkeypatch, LatencyTarget(budget_ms=0.1))


def test_the_search_drops_the_layers_with_least_attribution_under_a_fitted_latency_model(
    tmp_path, tiny_data, monkeypatch
):
    folder = tmp_path / "four-layers"
    tiny_model(num_hidden_layers=4).save_pretrained(folder)
    write_tokenizer(folder)
    # layer 3 (0-based 2) carries the least FFN attribution, then layer 4
    result = search(
        folder, tiny_data, monkeypatch, LatencyTarget(speedup=2.6), 0.0, ffn_mass=[4.0, 3.0, 0.1, 0.2], drops=True
    )
    drops = {tuple(row["drop_layers"]) for row in result.candidates}
    assert drops == {(), (2,)}
    model = result.latency_model
    # the fake CPU: 0.1 ms per layer, 0.3 ms for all 16 heads, 0.5 ms for all 148 neurons
    assert model.layer_ms == pytest.approx(0.1, abs=0.01) and model.head_ms == pytest.approx(0.3 / 16, rel=0.1)
    assert model.neuron_ms == pytest.approx(0.5 / 148, rel=0.1) and model.rms_error_ms < 0.01
    dropped_calls = [call for call in FakeTimer.calls if call[2]]
    assert len(dropped_calls) <= 1 + 2 * len(HEAD_KEEPS)  # about one confirming measurement per row
    judged = [row for row in result.candidates if "selection_accuracy_fp32" in row]
    assert sum("int8" in row for row in judged) == min(len(judged), target_module.INT8_JUDGED)
    # everything is within the drop (reference 0): the fastest int8 graph wins, whatever its structure
    fastest = max((trial["speedup"], row["keep"]) for row in judged for trial in row.get("int8", []))
    assert result.reason.startswith("the fastest of") and result.keep == fastest[1]


def test_a_candidate_that_misses_when_re_timed_hands_over_to_the_next_smaller_ffn_keep(
    tiny_model_dir, tiny_data, monkeypatch
):
    build_runner = FakeTimer.runner

    def slower_when_re_timed(self, graph, recipe, name):  # every int8 graph re-times 4% slower than measured
        built = build_runner(self, graph, recipe, name)
        built.p50 *= 1.04
        return built

    monkeypatch.setattr(FakeTimer, "runner", slower_when_re_timed)
    result = search(tiny_model_dir, tiny_data, monkeypatch, LatencyTarget(speedup=3.0))
    judged = [row for row in result.candidates if "int8" in row]
    missed = [row for row in judged if not any(r["meets_target"] for r in row["int8"])]
    assert missed  # the staircase's answers sit at the target's edge
    scored = [row for row in result.candidates if "selection_accuracy_fp32" in row]
    for row in missed:  # each handed over to the next smaller FFN keep of its row, scored and queued
        smaller = FFN_KEEPS[FFN_KEEPS.index(row["keep_ffn"]) + 1]
        assert any((other["keep"], other["keep_ffn"]) == (row["keep"], smaller) for other in scored)
    chosen = next(row for row in judged if (row["keep"], row["keep_ffn"]) == (result.keep, result.keep_ffn))
    assert any(r["meets_target"] for r in chosen["int8"])
