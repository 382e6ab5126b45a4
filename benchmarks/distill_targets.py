"""Which hidden states should the distillation match? One structure, refitted by least squares, then distilled
at the same token budget with each ``--distill-hidden`` target (and optionally other options), each judged on
rows that chose nothing: agreement with the original and the paired drop on the half of the dev set the tool
never sees, and the disagreement on the run's fidelity slice (text like the served rows').

    python -m benchmarks.distill_targets MODEL --data dev-a.tsv --unseen dev-b.tsv --calib train.tsv \\
        [--keep 0.4 --keep-ffn 0.3] [--targets first-token every-token none] [--tokens 600000] [--out targets.json]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from dataclasses import replace

from attr_compress.compressor.data.task import DataOptions, resolve_data
from attr_compress.compressor.defaults import DISTILL_HIDDEN, default
from attr_compress.compressor.models.loading import token_lengths
from attr_compress.compressor.recovery.distill import DistillOptions, TrainingText, distill
from attr_compress.evaluation.fidelity import Judge, all_logits, fidelity, paired_drop
from attr_compress.evaluation.measure import predict
from attr_compress.exporters.runtime import TorchRunner

import attr_compress as ac


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--unseen", required=True)
    parser.add_argument("--calib", required=True)
    parser.add_argument("--keep", type=float, default=0.4)
    parser.add_argument("--keep-ffn", type=float, default=0.3)
    parser.add_argument("--targets", nargs="+", default=list(DISTILL_HIDDEN), choices=DISTILL_HIDDEN)
    parser.add_argument("--tokens", type=int, default=default("distill_tokens"))
    parser.add_argument("--augment", type=float, default=default("distill_augment"))
    parser.add_argument("--out", default="distill_targets.json")
    args = parser.parse_args()

    loaded = ac.load_model(args.model)
    resolved = resolve_data(
        loaded.config.to_dict(),
        DataOptions(data=args.data, calib=args.calib),
        loaded.label2id,
        examples=default("examples"),
        seed=0,
        lengths=functools.partial(token_lengths, loaded),
    )
    original = TorchRunner("original", loaded.model)
    slice_rows = ac.encode_data(loaded, resolved.fidelity, singles=0, by_length=True)
    unseen = ac.encode_data(loaded, ac.load_labelled_data(args.unseen, loaded.label2id), singles=0)
    judge = Judge(original, slice_rows, slice_rows)
    reference = predict(original, unseen)
    reference_logits = judge.fidelity_reference

    scoring = ac.ScoringOptions()
    heads = ac.score_heads(loaded, resolved.calibration, scoring)
    neurons = ac.score_neurons(loaded, resolved.calibration, scoring)
    plan = ac.plan_pruning(heads.scores, args.keep, ffn_scores=neurons.scores, keep_ffn=args.keep_ffn)
    refitted = ac.prune(loaded.model, plan)
    fit = ac.encode_for_fit(loaded, resolved.fit.examples)
    ac.recover(loaded.model, refitted, fit, ac.RecoveryOptions("lsq"))
    held_out = frozenset(example.content for example in resolved.fidelity.examples)
    text = TrainingText(loaded, args.calib, resolved.calibration_rows, {}, held_out, resolved.lengths)

    def measured(name: str, model, seconds: float = 0.0, record=None) -> dict:
        runner = TorchRunner(name, model)
        predicted = predict(runner, unseen)
        row = {
            "name": name,
            "seconds": round(seconds, 1),
            "unseen_drop_points": paired_drop(reference, predicted, unseen.labels).drop_points,
            "unseen_disagreement": float((predicted != reference).mean()),
            "slice_disagreement": fidelity(reference_logits, all_logits(runner, slice_rows)).disagreement,
            "record": record and record.to_dict(),
        }
        print(json.dumps({k: v for k, v in row.items() if k != "record"}), flush=True)
        return row

    rows = [measured("lsq", refitted)]
    for target in args.targets:
        student = copy.deepcopy(refitted)
        options = replace(DistillOptions(), tokens=args.tokens, hidden=target, augment=args.augment)
        started = time.perf_counter()
        record = distill(loaded.model, student, text, options, progress=True)
        rows.append(measured(f"distill, {target}", student, time.perf_counter() - started, record))
    summary = {
        "model": args.model,
        "keep": args.keep,
        "keep_ffn": args.keep_ffn,
        "tokens": args.tokens,
        "unseen_rows": len(unseen.labels),
        "slice_rows": judge.rows,
        "rows": rows,
    }
    with open(args.out, "w") as handle:
        json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
