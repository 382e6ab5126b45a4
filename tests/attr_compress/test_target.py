"""Choosing by measurement without riding on noise: the int8 recipe, the latency model, the per-layer
allocation and the latency-target search."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from attr_compress.compressor.data.encoded import encode_data
from attr_compress.compressor.data.files import load_labelled_data
from attr_compress.compressor.errors import InputError
from attr_compress.compressor.models.loading import load_model
from attr_compress.compressor.pruning.structures import (
    LayerShape,
    Sensitivity,
    Structure,
    allocate,
    measure_sensitivity,
    neuron_grid,
    plan_structure,
)
from attr_compress.compressor.recovery.lsq import RecoveryOptions, encode_for_fit
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.neurons import NeuronImportance
from attr_compress.evaluation.fidelity import Fidelity, Judge, Judgement, PairedDrop
from attr_compress.evaluation.target import FIXED_SHARES, CostPrior, LatencyModel, LatencyTarget, Timing
from attr_compress.evaluation.tuning import candidate_recipes, choose_recipe
from attr_compress.exporters import runtime
from attr_compress.exporters.recipes import OPTIMUM_BASELINE
from attr_compress.exporters.runtime import TorchRunner

from attr_compress import search as search_module
from attr_compress.search import SearchInputs, design_structures, search_target
from tests.helpers import TRAIN_SENTENCES, write_tsv


def judgement(disagreement: float) -> Judgement:
    return Judgement(Fidelity(1000, round(disagreement * 1000), 0.01), PairedDrop(100, 90, 90, 0, 0))


def test_recipe_choice_is_the_first_nearly_fastest_of_those_close_to_the_original():
    recipes = candidate_recipes()
    assert len(recipes) == 9 and len({recipe.name for recipe in recipes}) == 9
    results = {recipe.name: {"latency_p50_ms": 2.0, "throughput_per_s": 10.0} for recipe in recipes}
    judgements = [judgement(0.010) for _ in recipes]
    far, early, late = 3, 5, 7
    judgements[far] = judgement(0.050)  # the fastest, but far from the original
    results[recipes[far].name]["latency_p50_ms"] = 0.5
    results[recipes[late].name]["latency_p50_ms"] = 0.90
    results[recipes[early].name]["latency_p50_ms"] = 0.93  # within 5% of the fastest eligible: equally fast
    tuning = choose_recipe(recipes, judgements, results, tolerance=0.005, threads=1, fusion_note="fused")
    assert tuning.recipe == recipes[early]
    assert not tuning.trials[far].eligible and tuning.trials[early].eligible
    assert "2.15x Optimum's recipe" in tuning.reason and tuning.recipe != OPTIMUM_BASELINE
    results[recipes[late].name]["latency_p50_ms"] = 0.80  # now clearly faster
    assert (
        choose_recipe(recipes, judgements, results, tolerance=0.005, threads=1, fusion_note="").recipe == recipes[late]
    )


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
    assert LatencyTarget(speedup=2.5).ratio(3.0) == pytest.approx(0.4)
    assert LatencyTarget(budget_ms=1.0).ratio(4.0) == pytest.approx(0.25)


# A fake CPU: the baseline takes 1; a structure costs 0.05 + per layer 0.02, per attention block 0.04, per head
# 0.01, per FFN block 0.03 and per neuron 0.001 (of the baseline's time).
TRUE_COSTS = {"layers": 0.02, "attention_blocks": 0.04, "heads": 0.01, "ffn_blocks": 0.03, "neurons": 0.001}


def true_ratio(structure: Structure) -> float:
    return 0.05 + sum(TRUE_COSTS[name] * count for name, count in structure.features().items())


def timings(structures, noise: float = 0.0, seed: int = 0) -> list[Timing]:
    rng = np.random.default_rng(seed)
    return [
        Timing(s, [true_ratio(s) * (1 + noise * rng.standard_normal()) for _ in range(3)], true_ratio(s), 1.0)
        for s in structures
    ]


def test_the_latency_model_recovers_every_cost_from_the_designed_structures():
    structures = design_structures(4, 4, 37)
    model = LatencyModel.fit(timings(structures))
    assert model.intercept == pytest.approx(0.05, abs=1e-6) and model.rms_error < 1e-6
    for name, cost in TRUE_COSTS.items():
        assert model.coefficients[name] == pytest.approx(cost, rel=1e-4), name
    shape = LayerShape(2, 10)
    assert model.layer_cost(shape) == pytest.approx(0.02 + 0.04 + 0.02 + 0.03 + 0.01)
    assert model.layer_cost(LayerShape(0, 0, True)) == 0
    noisy = LatencyModel.fit(timings(structures, noise=0.05))
    assert all(value >= 0 for value in noisy.coefficients.values())  # never a negative cost
    assert noisy.margin(0.4) == model.margin(0.4) >= 1.03  # noise cannot move the budget through the margin


def brute_force(sensitivity: Sensitivity, cost, budget: float) -> float:
    layers = len(sensitivity.dropped)
    options = [
        [
            (sensitivity.attention[layer][i] + sensitivity.ffn[layer][j], cost(LayerShape(h, n)))
            for i, h in enumerate(sensitivity.head_counts)
            for j, n in enumerate(sensitivity.neuron_counts)
        ]
        + ([(sensitivity.dropped[layer], 0.0)] if layer > 0 else [])
        for layer in range(layers)
    ]
    return min(
        sum(loss for loss, _ in combination)
        for combination in itertools.product(*options)
        if sum(spend for _, spend in combination) <= budget
    )


def test_the_allocation_is_the_least_loss_within_the_budget():
    rng = np.random.default_rng(3)
    heads, neurons = [0, 1, 2, 3], [0, 5, 10]
    attention = [sorted(rng.random(4) * 2, reverse=True) for _ in range(3)]
    ffn = [sorted(rng.random(3) * 2, reverse=True) for _ in range(3)]
    sensitivity = Sensitivity(heads, neurons, attention, ffn, [3.0, 0.2, 0.5], rows=10)
    model = LatencyModel.fit(timings(design_structures(3, 3, 10)))
    for budget in (0.1, 0.3, 0.5, 0.8):
        structure = allocate(sensitivity, model.layer_cost, budget, resolution=4000)
        assert structure is not None and not structure.layers[0].dropped
        spent = sum(model.layer_cost(shape) for shape in structure.layers)
        assert spent <= budget + 1e-9
        loss = sum(
            sensitivity.dropped[layer]
            if shape.dropped
            else attention[layer][heads.index(shape.heads)] + ffn[layer][neurons.index(shape.neurons)]
            for layer, shape in enumerate(structure.layers)
        )
        assert loss == pytest.approx(brute_force(sensitivity, model.layer_cost, budget), abs=1e-9)
    assert allocate(sensitivity, model.layer_cost, 0.0) is None


def test_a_structure_keeps_the_best_attributed_heads_and_neurons_of_each_layer():
    heads = np.array([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.8, 0.6]])
    neurons = np.array([[1.0, 3.0, 2.0], [5.0, 4.0, 6.0]])
    plan = plan_structure(Structure((LayerShape(2, 1), LayerShape(0, 2))), heads, neurons)
    assert plan.head_mask == [[0, 1, 1, 0], [0, 0, 0, 0]] and plan.ffn_mask == [[0, 1, 0], [1, 0, 1]]
    assert plan.kept_heads == 2 and plan.keep == pytest.approx(0.25)
    dropped = plan_structure(Structure((LayerShape(4, 3), LayerShape(0, 0, True))), heads, neurons)
    assert dropped.dropped_layers == [1] and Structure.of_plan(dropped, 3).layers[1].dropped
    assert neuron_grid(37) == sorted(set(neuron_grid(37))) and neuron_grid(37)[0] == 0 and neuron_grid(37)[-1] == 37


@pytest.fixture
def scored(tiny_model_dir):
    loaded = load_model(tiny_model_dir)
    common = {"steps": 1, "rule": "left", "examples": 1, "seed": 0, "calibration": "x", "model": "m"}
    heads = HeadImportance(
        scores=np.random.default_rng(1).random((2, 4)).tolist(),
        method="attattr",
        objective="gold",
        aggregation="x",
        **common,
    )
    neurons = NeuronImportance(
        scores=np.random.default_rng(0).random((2, 37)).tolist(), objective="gold-log", aggregation="x", **common
    )
    return loaded, heads, neurons


def test_sensitivity_is_zero_for_the_whole_layer_and_grows_as_it_thins(scored, tiny_data):
    loaded, heads, neurons = scored
    batches = encode_for_fit(loaded, load_labelled_data(tiny_data, loaded.label2id).examples)
    sensitivity = measure_sensitivity(loaded.model, batches, heads.array, neurons.array)
    for layer in range(2):
        assert sensitivity.attention[layer][-1] == pytest.approx(0, abs=1e-6)
        assert sensitivity.ffn[layer][-1] == pytest.approx(0, abs=1e-6)
        assert sensitivity.attention[layer][0] > 0 and sensitivity.ffn[layer][0] > 0 and sensitivity.dropped[layer] > 0
    assert sensitivity.rows == 12 and sensitivity.neuron_counts == neuron_grid(37)


class _NoisyClock:
    """A stand-in for the ``time`` module of the runtime: ``perf_counter`` reads a virtual clock that advances
    only when a runner runs, by its weight bytes (1 ns per byte) times a random factor within +-``noise``."""

    def __init__(self, rng: np.random.Generator, noise: float) -> None:
        self.rng = rng
        self.noise = noise
        self.now = 0.0
        self.costs: dict[int, float] = {}

    def perf_counter(self) -> float:
        return self.now

    def cost(self, runner) -> float:
        if isinstance(runner, runtime.OnnxRunner):
            return self.costs[id(runner)]
        return sum(p.numel() * 4 for p in runner.model.parameters()) * 1e-9

    def loading(self, init):
        """Wrap ``OnnxRunner.__init__`` to price a graph while its file exists (some are deleted once loaded)."""

        def load(runner, name, path, **kwargs):
            import onnx
            from onnx import numpy_helper

            weights = onnx.load(str(path)).graph.initializer
            self.costs[id(runner)] = sum(numpy_helper.to_array(weight).nbytes for weight in weights) * 1e-9
            init(runner, name, path, **kwargs)

        return load

    def charging(self, logits):
        def timed(runner, inputs):
            self.now += self.cost(runner) * (1 + self.rng.uniform(-self.noise, self.noise))
            return logits(runner, inputs)

        return timed


class FakeGraphs:
    """Times structures on the fake CPU (with optional noise), builds nothing."""

    noise = 0.0
    seed = 0

    def __init__(self, inputs, folder):
        self.rng = np.random.default_rng(FakeGraphs.seed)

    def runner(self, model, name):
        return model

    def time(self, runners, structures):
        return [
            Timing(s, [true_ratio(s) * (1 + self.rng.uniform(-self.noise, self.noise)) for _ in range(3)], 1.0, 1.0)
            for s in structures
        ]


def search(scored, tiny_data, target, monkeypatch, noise=0.0, seed=0):
    loaded, heads, neurons = scored
    monkeypatch.setattr(search_module, "_Graphs", FakeGraphs)
    FakeGraphs.noise, FakeGraphs.seed = noise, seed
    data = load_labelled_data(tiny_data, loaded.label2id)
    encoded = encode_data(loaded, data, singles=4)
    batches = encode_for_fit(loaded, data.examples)
    judge = Judge(TorchRunner("original", loaded.model), encoded, encoded)
    inputs = SearchInputs(
        loaded,
        heads,
        neurons,
        target,
        judge,
        batches,
        batches,
        RecoveryOptions("none"),
        encoded.singles,
        OPTIMUM_BASELINE,
        Path("unused-by-the-fake-graphs.onnx"),
    )
    return search_target(inputs)


def test_the_search_plans_judges_and_confirms_a_structure_that_meets_the_target(scored, tiny_data, monkeypatch):
    result = search(scored, tiny_data, LatencyTarget(speedup=3.0), monkeypatch)
    assert true_ratio(result.chosen) <= 1 / 3  # meets the target (the prior's shape is not the fake CPU's)
    assert result.chosen != Structure.uniform(2, 4, 37)
    assert result.confirmations and result.confirmations[-1].met
    chosen = result.chosen_candidate
    assert chosen.judgement.key == min(candidate.judgement.key for candidate in result.candidates)
    origins = {candidate.origin for candidate in result.candidates}
    assert origins and all(origin.startswith("per-layer allocation") for origin in origins)
    assert result.margin >= 1.03 and result.target_ratio == pytest.approx(1 / 3)
    assert result.latency_model.coefficients["heads"] == pytest.approx(0.01, rel=1e-3)


def test_global_rankings_compete_only_when_asked_for(scored, tiny_data, monkeypatch):
    original = SearchInputs.__init__

    def global_allocation(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "allocation": "global"})

    monkeypatch.setattr(SearchInputs, "__init__", global_allocation)
    result = search(scored, tiny_data, LatencyTarget(speedup=3.0), monkeypatch)
    assert all(candidate.origin.startswith("global ranking") for candidate in result.candidates)
    assert true_ratio(result.chosen) <= 1 / 3


def test_an_unreachable_target_is_a_clear_error(scored, tiny_data, monkeypatch):
    with pytest.raises(InputError, match=r"no structure is predicted to meet the target .*lower the target"):
        search(scored, tiny_data, LatencyTarget(speedup=30.0), monkeypatch)


def test_timing_noise_does_not_move_the_choice(scored, tiny_data, monkeypatch):
    """Eight runs whose every timing carries independent noise within +-3% choose the same structure."""
    chosen = {
        search(scored, tiny_data, LatencyTarget(speedup=3.0), monkeypatch, noise=0.03, seed=seed).chosen
        for seed in range(8)
    }
    assert len(chosen) == 1


def test_the_allocation_ladder_does_not_move_with_timing_noise_on_the_demo_shape():
    """The demo's shape (6 layers x 12 heads x 1536 neurons), a fixed sensitivity, 16 latency models fitted to
    timings with independent 3% noise: every one picks the same allocation for a 2.5x target."""
    rng = np.random.default_rng(5)
    heads, neurons = list(range(13)), neuron_grid(1536)
    attention = [list(np.sort(rng.random(13))[::-1] * np.linspace(1, 0, 13) / (layer + 1)) for layer in range(6)]
    ffn = [list(np.sort(rng.random(17))[::-1] * np.linspace(1, 0, 17) / (layer + 1)) for layer in range(6)]
    sensitivity = Sensitivity(heads, neurons, attention, ffn, [1.0] * 6, rows=128)
    costs = {"layers": 0.012, "attention_blocks": 0.02, "heads": 0.004, "ffn_blocks": 0.01, "neurons": 0.00005}
    design = design_structures(6, 12, 1536)
    chosen = set()
    for seed in range(16):
        noise = np.random.default_rng(seed)
        truth = [0.04 + sum(costs[name] * count for name, count in s.features().items()) for s in design]
        model = LatencyModel.fit(
            [
                Timing(s, [t * (1 + noise.uniform(-0.03, 0.03)) for _ in range(3)], t, 1.0)
                for s, t in zip(design, truth, strict=True)
            ]
        )
        prior = CostPrior.of(hidden=384, heads=12, width=1536, tokens=25)
        layers_budget, _ = search_module.budget(model, 0.4)
        chosen.add(search_module.on_the_ladder(sensitivity, prior, model, layers_budget, allow_drop=True).structure)
    assert len(chosen) == 1


def test_the_cost_prior_is_a_share_of_a_full_layer_in_multiply_adds_and_fixed_overheads():
    prior = CostPrior.of(hidden=16, heads=4, width=37, tokens=10)
    assert prior(LayerShape(4, 37)) == pytest.approx(1.0) and prior(LayerShape(0, 0, True)) == 0
    assert prior(LayerShape(0, 0)) == pytest.approx(FIXED_SHARES["layers"])
    # a head costs its q, k, v and output projections and its scores and context, in neurons' multiply-adds
    assert prior.head == pytest.approx((4 * 16 * 4 + 2 * 10 * 4) / 32)
    assert prior(LayerShape(2, 10)) < prior(LayerShape(3, 10)) < prior(LayerShape(3, 37))


def test_a_target_missed_when_measured_replans_with_the_model_rescaled(scored, tiny_data, monkeypatch):
    real = FakeGraphs.time

    def slower_when_confirmed(self, runners, structures):
        found = real(self, runners, structures)
        if len(structures) == 1:  # the confirming measurement: 10% slower than the design predicted
            return [Timing(t.structure, [r * 1.10 for r in t.ratios], 1.0, 1.0) for t in found]
        return found

    monkeypatch.setattr(FakeGraphs, "time", slower_when_confirmed)
    result = search(scored, tiny_data, LatencyTarget(speedup=2.5), monkeypatch)
    assert len(result.confirmations) == 2 and not result.confirmations[0].met and result.confirmations[1].met
    assert true_ratio(result.chosen) * 1.10 <= 0.4


def confirmed_at(factors):
    """A FakeGraphs.time whose n-th confirming measurement is ``factors[n]`` times the true latency."""
    real, seen = FakeGraphs.time, []

    def timed(self, runners, structures):
        found = real(self, runners, structures)
        if len(structures) != 1:
            return found
        factor = factors[min(len(seen), len(factors) - 1)]
        seen.append(factor)
        return [Timing(t.structure, [r * factor for r in t.ratios], 1.0, 1.0) for t in found]

    return timed


def test_a_target_beaten_by_far_when_measured_replans_for_accuracy(scored, tiny_data, monkeypatch):
    monkeypatch.setattr(FakeGraphs, "time", confirmed_at([0.6]))  # the model predicts 40% too slow
    result = search(scored, tiny_data, LatencyTarget(speedup=5.0), monkeypatch)
    first, second = result.confirmations
    assert first.met and second.met and first.speedup > second.speedup
    assert result.chosen == second.structure and true_ratio(result.chosen) > true_ratio(first.structure)


def test_a_replan_that_misses_ships_the_last_structure_that_met(scored, tiny_data, monkeypatch):
    monkeypatch.setattr(FakeGraphs, "time", confirmed_at([0.6, 1.5]))
    result = search(scored, tiny_data, LatencyTarget(speedup=5.0), monkeypatch)
    first, second = result.confirmations
    assert first.met and not second.met and result.chosen == first.structure


def test_the_design_is_fixed_and_covers_every_feature():
    first, second = design_structures(6, 12, 1536), design_structures(6, 12, 1536)
    assert first == second and len(first) >= 12
    features = np.array([[1, *s.features().values()] for s in first])
    assert np.linalg.matrix_rank(features) == features.shape[1]


def test_a_target_run_writes_the_search_and_two_runs_ship_the_same_weights(
    tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch, tmp_path_factory
):
    """End to end, with every latency read from a clock that charges each call its graph's weight bytes times
    up to +-3% of noise: two cold runs choose the same structure and ship byte-identical weights. (The real
    clock cannot be used: the tiny model's calls take 30-60 us, where the machine's own noise is tens of %.)"""
    import json

    clock = _NoisyClock(np.random.default_rng(7), noise=0.03)
    monkeypatch.setattr(runtime, "time", clock)
    for runner in (runtime.OnnxRunner, runtime.TorchRunner):
        monkeypatch.setattr(runner, "logits", clock.charging(runner.logits))
    monkeypatch.setattr(runtime.OnnxRunner, "__init__", clock.loading(runtime.OnnxRunner.__init__))
    from tests.helpers import run

    calib = write_tsv(tmp_path / "train.tsv", TRAIN_SENTENCES * 3)
    outputs = []
    for name in ("first", "second"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp(f"cache-{name}")))
        out = tmp_path / name
        args = [
            tiny_model_dir,
            "--target-speedup",
            "1.1",
            "--data",
            tiny_data,
            "--calib",
            calib,
            "--out",
            out,
            "--examples",
            "6",
            "--steps",
            "2",
            "--trees",
            "0",
            "--latency-examples",
            "200",
            "--select-examples",
            "6",
            "--fit-examples",
            "12",
            "--distill-steps",
            "2",
            "--max-drop",
            "100",
            "--quiet",
        ]
        code, _, err = run(args, capsys)
        assert code == 0, err
        outputs.append(out)
    searches = [json.loads((out / "target_search.json").read_text()) for out in outputs]
    assert searches[0]["chosen"] == searches[1]["chosen"]
    assert all(search["candidates"] and search["confirmations"] for search in searches)
    weights = [(out / "pruned/model.safetensors").read_bytes() for out in outputs]
    assert weights[0] == weights[1]
