"""Latency of every model variant side by side, measured in one process so the ratios compare like with like.

Variants: the original model as PyTorch fp32 (SDPA attention, as users run it), ONNX fp32 (Optimum's plain
export), ONNX fp32 after onnxruntime's transformer fusions, ONNX int8 by Optimum's recipe (plain graph,
per-channel: the baseline of the ratios) and ONNX int8 by the fast recipe (fused graph, onnxruntime's
quantize_dynamic, per-tensor, MatMul + Attention; --recipe-json overrides it); then, per --pair KEEP,KEEP_FFN
(default --keep 0.5 --keep-ffn 0.3), the pruned model (heads ranked by attattr, FFN neurons by integrated
gradients, both on --calib-examples calibration rows; LSQ recovery fitted on --fit-examples other calibration
rows) as PyTorch fp32, ONNX fp32 and ONNX int8 by both recipes.

Each model is exported once (``export_verified``: the fp32 graph and, where shown or quantised, its fused
form, each checked against PyTorch within 1e-4; a fused graph that fails is rebuilt without attention fusion)
and its int8 graphs are quantised from those checked graphs (``quantize_all``). Every ONNX graph runs in a
default onnxruntime session at the measured thread count.

Batch-1 latency is measured two ways, at each thread count (1 and 2), on the first --latency-examples dev rows:

- Round-robin (``evaluate_runners``, which also gives accuracy and batch-32 throughput on the dev set): all
  variants are loaded at once and each example goes through every variant before the next example, so
  drift in machine load touches all variants alike: the like-for-like, drift-robust comparison of the ratios.
  But it measures models under interference: each run starts with a cold cache (the previous variant evicted
  this one's weights), which penalises the small, fast graphs most, and with 2 threads the runtimes' idle
  worker threads compete for the cores (see OMP_WAIT_POLICY below).
- Isolated: each variant alone, one after the other: its session is created, it runs 20 warm-up examples,
  then the --latency-examples examples back to back (all timed), and it is released before the next variant.
  Weights stay in cache and no other runtime is about, which is what a server running one model sees; the
  price is that load drift between variants is not cancelled out.

One markdown table per thread count for each way: round-robin ones (accuracy, p50/p90, throughput, speed-ups
over PyTorch fp32 and over the original int8 (Optimum)), then isolated ones (p50/p90, speed-ups over the
original int8 (Optimum) and over PyTorch fp32, both also timed isolated). Last, an onnxruntime per-operator
profile of the fast-recipe int8 graph of the first pair at batch 1 with 1 thread: time per run by operator
type and its share of the model_run time. Profiling adds overhead, so its absolute numbers are inflated; read
the shares, not the microseconds.

OMP_WAIT_POLICY is set to PASSIVE (unless already set) before PyTorch loads: PyTorch's OpenMP workers then
sleep between operators instead of spin-waiting. On a 2-core machine the spinning made the runtimes fight
when interleaved in one process (round-robin at 2 threads: PyTorch fp32 69 ms against 9.5 ms at 1 thread,
every ONNX variant's p90 about 13 ms). onnxruntime's own thread pool is not OpenMP, so this does not change
its spinning. PASSIVE can cost PyTorch a little at 2 threads (workers wake per operator); run with
OMP_WAIT_POLICY=ACTIVE to time PyTorch with spinning workers.

Usage: python benchmarks/latency.py [--pair 0.5,0.3 --pair 0.4,0.2] [--out latency.json]
Quick run: python benchmarks/latency.py --dev-examples 100 --latency-examples 40 --calib-examples 20 \
    --fit-examples 100
"""

from __future__ import annotations

import os

# Before torch is imported (its OpenMP runtime reads this once, when it loads): PyTorch's OpenMP workers
# spin-wait after each operator by default, and so keep both cores busy while onnxruntime runs next in this
# process (and onnxruntime's spinning workers do the same to PyTorch); on 2 cores the round-robin timings at
# 2 threads were wrecked by it. PASSIVE makes idle OpenMP workers sleep. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from attr_compress.compressor.artifacts import library_versions, write_json
from attr_compress.compressor.data.encoded import EncodedData, encode_data, parity_batches
from attr_compress.compressor.data.files import load_labelled_data, sample_labelled_data
from attr_compress.compressor.data.rows import LabelledData
from attr_compress.compressor.models.loading import LoadedModel, load_model
from attr_compress.compressor.pruning.prune import count_parameters, plan_pruning, prune
from attr_compress.compressor.recovery.lsq import RecoveryOptions, encode_for_fit, recover
from attr_compress.compressor.scoring.heads import HeadImportance
from attr_compress.compressor.scoring.neurons import NeuronImportance
from attr_compress.compressor.scoring.options import ScoringOptions, score_heads, score_neurons
from attr_compress.evaluation.measure import evaluate_runners
from attr_compress.exporters.parity import compare_logits
from attr_compress.exporters.quantize import cpu_flags
from attr_compress.exporters.recipes import OPERATOR_SETS, OPTIMUM_BASELINE, Recipe
from attr_compress.exporters.runtime import OnnxRunner, TorchRunner, torch_threads
from attr_compress.exporters.verified import VerifiedGraphs, export_verified, quantize_all

from benchmarks.latency_tables import ISOLATED_WARMUP, PYTORCH, print_latency_tables, print_pairs_and_parity
from benchmarks.operator_profile import print_profile, profile_operators

SHARED = Path(__file__).resolve().parents[2] / "shared"
FAST_RECIPE = Recipe(graph="fused", quantizer="onnxruntime", per_channel=False, operators="matmul+attention")
ATOL = 1e-4
PROFILE_WARMUP = 10  # profiled runs left out of the operator profile


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Variant:
    """One row of the tables: a PyTorch model or an ONNX graph."""

    name: str
    model: Any = None
    path: Path | None = None

    def runner(self, threads: int) -> TorchRunner | OnnxRunner:
        if self.model is not None:
            return TorchRunner(self.name, self.model)
        return OnnxRunner(self.name, self.path, threads=threads)


@dataclass(frozen=True)
class Setup:
    """The models and data every variant is built from and measured on."""

    loaded: LoadedModel  # eager attention: scoring needs the attention probabilities
    original_sdpa: Any  # the original as users run it (SDPA attention): the timed PyTorch fp32 row
    dev: LabelledData
    encoded: EncodedData
    batches: list[dict[str, np.ndarray]]  # parity batches for the export checks


@dataclass(frozen=True)
class Calibration:
    """Head scores, FFN neuron scores (None when no pair prunes FFN neurons) and the fit batches for LSQ."""

    heads: HeadImportance
    neurons: NeuronImportance | None
    fit_inputs: list[dict[str, Any]]
    fit_examples: int
    recovery: RecoveryOptions


def parse_pair(text: str) -> tuple[float, float]:
    try:
        keep, keep_ffn = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KEEP,KEEP_FFN such as 0.5,0.3, got {text!r}") from None
    return keep, keep_ffn


def parse_recipe(text: str) -> Recipe:
    """A Recipe from inline JSON or a JSON file, e.g. '{"graph": "plain", "quantizer": "onnxruntime"}'."""
    source = Path(text).read_text(encoding="utf-8") if Path(text).is_file() else text
    try:
        recipe = Recipe.from_dict(json.loads(source))
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise argparse.ArgumentTypeError(f"--recipe-json needs a JSON object of Recipe fields ({err})") from None
    if (
        recipe.graph not in ("plain", "fused")
        or recipe.quantizer not in ("optimum", "onnxruntime")
        or recipe.operators not in OPERATOR_SETS
    ):
        raise argparse.ArgumentTypeError(
            f"--recipe-json: graph is plain|fused, quantizer optimum|onnxruntime, operators {'|'.join(OPERATOR_SETS)}"
        )
    return recipe


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=SHARED / "models/minilm-l6-sst2")
    parser.add_argument("--data", type=Path, default=SHARED / "data/glue/SST-2/dev.tsv")
    parser.add_argument("--calib", type=Path, default=SHARED / "data/glue/SST-2/train.tsv")
    parser.add_argument("--keep", type=float, default=0.5, help="fraction of heads kept (without --pair)")
    parser.add_argument("--keep-ffn", type=float, default=0.3, help="fraction of FFN neurons kept (without --pair)")
    parser.add_argument("--pair", type=parse_pair, action="append", default=[], help="KEEP,KEEP_FFN; repeatable")
    parser.add_argument("--importance", type=Path, help="head importance.json to use instead of scoring")
    parser.add_argument("--ffn-importance", type=Path, help="ffn_importance.json to use instead of scoring")
    parser.add_argument("--calib-examples", type=int, default=200, help="calibration rows for scoring (seed 0)")
    parser.add_argument("--fit-examples", type=int, default=1000, help="calibration rows for LSQ recovery (seed 2)")
    parser.add_argument("--dev-examples", type=int, help="first N dev rows only (default: all)")
    parser.add_argument("--latency-examples", type=int, default=300, help="dev rows timed at batch 1")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--recipe-json", type=parse_recipe, default=FAST_RECIPE, help="fast recipe (JSON or file)")
    parser.add_argument("--profile-top", type=int, default=12, help="operator types shown in the profile")
    parser.add_argument("--out", type=Path, help="write everything as JSON here")
    args = parser.parse_args(argv)
    args.pairs = args.pair or [(args.keep, args.keep_ffn)]
    return args


def machine() -> dict[str, Any]:
    model_name = ""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model_name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": model_name or platform.processor(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "avx512_vnni": "avx512_vnni" in flags,
        "avx2": "avx2" in flags,
    }


def print_machine(recipe: Recipe) -> tuple[dict[str, Any], dict[str, str]]:
    """Print (and return) the machine, the library versions and both int8 recipes."""
    info = machine()
    versions = library_versions()
    print(f"machine: {info['platform']}, {info['cpu']}, {info['cpu_count']} CPUs ({info['usable_cpus']} usable)")
    print("versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    print(f"baseline int8 recipe: {OPTIMUM_BASELINE.name}; fast int8 recipe: {recipe.name}")
    return info, versions


def load_setup(args: argparse.Namespace) -> Setup:
    """The original model (eager and SDPA), the dev rows, encoded once, and the parity batches."""
    loaded = load_model(args.model)
    original_sdpa = load_model(args.model, attn_implementation="sdpa").model
    dev = load_labelled_data(args.data, loaded.label2id)
    if args.dev_examples is not None:
        dev = dev.head(args.dev_examples)
    encoded = encode_data(loaded, dev, batch_size=32, singles=args.latency_examples)
    return Setup(loaded, original_sdpa, dev, encoded, parity_batches(encoded))


def score_calibration(args: argparse.Namespace, loaded: LoadedModel) -> Calibration:
    """Head and FFN neuron scores (loaded from --importance/--ffn-importance, else scored on calibration rows,
    seed 0) and the LSQ fit batches (other calibration rows, the recovery's fit seed)."""
    heads = HeadImportance.load(args.importance) if args.importance else None
    neurons = NeuronImportance.load(args.ffn_importance) if args.ffn_importance else None
    needs_neurons = neurons is None and any(keep_ffn < 1 for _, keep_ffn in args.pairs)
    if heads is None or needs_neurons:
        scoring = ScoringOptions(method="attattr", examples=args.calib_examples, seed=0)
        calibration, _ = sample_labelled_data(args.calib, loaded.label2id, scoring.examples, scoring.seed)
        if heads is None:
            log(f"scoring heads ({scoring.method}) on {len(calibration)} calibration examples")
            heads = score_heads(loaded, calibration, scoring)
        if needs_neurons:
            log(f"scoring FFN neurons on {len(calibration)} calibration examples")
            neurons = score_neurons(loaded, calibration, scoring)
    recovery = RecoveryOptions(method="lsq", fit_examples=args.fit_examples, seed=0)
    fit, _ = sample_labelled_data(args.calib, loaded.label2id, recovery.fit_examples, recovery.fit_seed)
    return Calibration(heads, neurons, encode_for_fit(loaded, fit.examples), len(fit), recovery)


def new_report(
    args: argparse.Namespace, info: dict[str, Any], versions: dict[str, str], setup: Setup, calibration: Calibration
) -> dict[str, Any]:
    """The JSON report's skeleton: machine, versions, settings and recipes; results are filled in later."""
    return {
        "machine": info,
        "versions": versions,
        "settings": {
            "model": str(args.model),
            "data": str(args.data),
            "dev_examples": len(setup.dev),
            "latency_examples": len(setup.encoded.singles),
            "calib_examples": args.calib_examples,
            "fit_examples": calibration.fit_examples,
            "threads": args.threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "isolated_warmup_examples": ISOLATED_WARMUP,
            "importance": str(args.importance) if args.importance else "attattr (scored here)",
            "ffn_importance": str(args.ffn_importance) if args.ffn_importance else "score_neurons (scored here)",
        },
        "baseline_recipe": OPTIMUM_BASELINE.to_dict(),
        "fast_recipe": args.recipe_json.to_dict(),
        "pairs": [],
        "graphs": {},
        "results": {},  # round-robin, per thread count
        "isolated": {},  # batch-1 latency of each variant timed alone, per thread count
    }


def graph_notes(graphs: VerifiedGraphs, int8: dict[str, Path]) -> dict[str, Any]:
    """What the export checked: max |logit diff| of the fp32 graph and, if fused, of the fused graph kept."""
    notes: dict[str, Any] = {"onnx_fp32_max_abs_diff": graphs.parity[0]["max_abs_diff"], "parity": graphs.parity}
    if not graphs.fusion.get("skipped"):
        notes["fusion"] = {**graphs.fusion, "max_abs_diff": graphs.parity[-1]["max_abs_diff"]}
    notes["int8_graphs"] = {name: path.name for name, path in int8.items()}
    return notes


def build_graphs(
    prefix: str, model: Any, setup: Setup, folder: Path, recipe: Recipe, *, with_fused_fp32: bool
) -> tuple[list[Variant], dict[str, Any]]:
    """Export ``model`` once, checked against PyTorch (``export_verified``: fp32, and fused fp32 when shown or
    when the fast recipe quantises it), then both int8 graphs from those checked graphs (``quantize_all``)."""
    graphs = export_verified(
        model,
        setup.loaded.tokenizer,
        folder,
        TorchRunner("pytorch eager", model),
        setup.batches,
        fuse=with_fused_fp32 or recipe.graph == "fused",
        atol=ATOL,
        log=lambda message: log(f"{prefix}: {message}"),
    )
    log(f"{prefix}: quantising (Optimum recipe, fast recipe)")
    optimum, fast = quantize_all(graphs, [OPTIMUM_BASELINE, recipe], folder)
    variants = [Variant(f"{prefix} ONNX fp32", path=graphs.fp32)]
    if with_fused_fp32 and graphs.fused is not None:
        variants.append(Variant(f"{prefix} ONNX fp32 fused", path=graphs.fused))
    variants += [Variant(f"{prefix} ONNX int8 Optimum", path=optimum), Variant(f"{prefix} ONNX int8 fast", path=fast)]
    return variants, graph_notes(graphs, {"optimum": optimum, "fast": fast})


def prune_and_recover(
    keep: float, keep_ffn: float, setup: Setup, calibration: Calibration
) -> tuple[Any, Any, dict[str, Any]]:
    """The pruned model (eager, LSQ-recovered), its SDPA twin with the same weights (the timed PyTorch row) and
    the pair's entry for the report."""
    heads, neurons = calibration.heads, calibration.neurons
    prefix = f"pruned {keep:g}/{keep_ffn:g}"
    log(f"{prefix}: pruning and LSQ recovery on {calibration.fit_examples} examples")
    plan = plan_pruning(
        heads.scores, keep, heads.order, ffn_scores=None if neurons is None else neurons.scores, keep_ffn=keep_ffn
    )
    original = setup.loaded.model
    pruned = prune(original, plan)
    record = recover(original, pruned, calibration.fit_inputs, calibration.recovery, log=log)
    pruned_sdpa = prune(setup.original_sdpa, plan)
    pruned_sdpa.load_state_dict(pruned.state_dict())
    sdpa_diff = compare_logits(TorchRunner("eager", pruned), TorchRunner("sdpa", pruned_sdpa), setup.batches)
    entry = {
        "name": prefix,
        "keep": keep,
        "keep_ffn": keep_ffn,
        "heads_kept": plan.kept_heads,
        "total_heads": plan.total_heads,
        "ffn_kept_per_layer": plan.ffn_kept_per_layer,
        "parameters": count_parameters(pruned)["total"],
        "original_parameters": count_parameters(original)["total"],
        "pytorch_sdpa_vs_eager_max_abs_diff": sdpa_diff.max_abs_diff,
        "recovery": record.to_dict() if record else None,
    }
    return pruned, pruned_sdpa, entry


def build_variants(
    pairs: Sequence[tuple[float, float]],
    setup: Setup,
    calibration: Calibration,
    recipe: Recipe,
    folder: Path,
    report: dict[str, Any],
) -> list[Variant]:
    """Every variant in table order: the original (PyTorch, its graphs), then each pair's pruned model and graphs.
    Fills the report's "pairs" and "graphs"."""
    variants = [Variant(PYTORCH, model=setup.original_sdpa)]
    built, report["graphs"]["original"] = build_graphs(
        "original", setup.loaded.model, setup, folder / "original", recipe, with_fused_fp32=True
    )
    variants += built
    for keep, keep_ffn in pairs:
        pruned, pruned_sdpa, entry = prune_and_recover(keep, keep_ffn, setup, calibration)
        prefix = entry["name"]
        report["pairs"].append(entry)
        subfolder = folder / prefix.replace(" ", "_").replace("/", "_")
        built, report["graphs"][prefix] = build_graphs(prefix, pruned, setup, subfolder, recipe, with_fused_fp32=False)
        variants += [Variant(f"{prefix} PyTorch fp32", model=pruned_sdpa), *built]
    return variants


def measure_round_robin(
    variants: Sequence[Variant], encoded: EncodedData, thread_counts: Sequence[int], num_labels: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per thread count: accuracy, batch-32 throughput and round-robin batch-1 latency of all variants at once."""
    results = {}
    for threads in thread_counts:
        log(f"measuring {len(variants)} variants with {threads} thread(s)")
        runners = [variant.runner(threads) for variant in variants]
        results[str(threads)], _ = evaluate_runners(runners, encoded, threads=threads, num_labels=num_labels)
        del runners
    return results


def isolated_latency(
    variant: Variant, threads: int, singles: Sequence[dict[str, np.ndarray]], warmup: int = ISOLATED_WARMUP
) -> dict[str, Any]:
    """Batch-1 latency of ``variant`` alone: a fresh runner (ONNX session) at ``threads``, ``warmup`` untimed
    examples (cycling through ``singles`` if fewer), then every example of ``singles`` timed back to back."""
    with torch_threads(threads):
        runner = variant.runner(threads)
        for index in range(warmup):
            runner.logits(singles[index % len(singles)])
        times = []
        for inputs in singles:
            started = time.perf_counter()
            runner.logits(inputs)
            times.append(time.perf_counter() - started)
        del runner
    milliseconds = np.array(times) * 1000
    return {
        "latency_p50_ms": float(np.percentile(milliseconds, 50)),
        "latency_p90_ms": float(np.percentile(milliseconds, 90)),
        "latency_examples": int(milliseconds.size),
        "warmup_examples": warmup,
    }


def measure_isolated(
    variants: Sequence[Variant], singles: Sequence[dict[str, np.ndarray]], thread_counts: Sequence[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per thread count: batch-1 latency of each variant timed alone, one after the other."""
    isolated = {}
    for threads in thread_counts:
        log(f"timing {len(variants)} variants isolated (one at a time) with {threads} thread(s)")
        isolated[str(threads)] = {variant.name: isolated_latency(variant, threads, singles) for variant in variants}
    return isolated


def main() -> None:
    args = parse_args()
    recipe: Recipe = args.recipe_json
    info, versions = print_machine(recipe)
    setup = load_setup(args)
    calibration = score_calibration(args, setup.loaded)
    report = new_report(args, info, versions, setup, calibration)
    with tempfile.TemporaryDirectory(prefix="attr-compress-latency-") as scratch:
        folder = Path(scratch)
        variants = build_variants(args.pairs, setup, calibration, recipe, folder, report)
        num_labels = setup.loaded.config.num_labels
        report["results"] = measure_round_robin(variants, setup.encoded, args.threads, num_labels)
        report["isolated"] = measure_isolated(variants, setup.encoded.singles, args.threads)
        profiled = next(v for v in variants if v.name == f"{report['pairs'][0]['name']} ONNX int8 fast")
        log(f"profiling {profiled.name} at batch 1, 1 thread")
        profile = profile_operators(profiled.path, setup.encoded.singles, folder, warmup=PROFILE_WARMUP)
        report["profile"] = {"variant": profiled.name, **profile}
    names = [variant.name for variant in variants]
    print_pairs_and_parity(report)
    print_latency_tables(report, names, args.data)
    print_profile(report["profile"], args.profile_top)
    if args.out:
        write_json(report, args.out)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
