"""The verdict of a run in words, computed in one place and read by every view (report.md, report.html, the
command line): the accuracy change with its interval, the disagreement with the original, what --max-drop said."""

from __future__ import annotations

from attr_compress.evaluation.fidelity import Fidelity, PairedDrop
from attr_compress.evaluation.report.record import Report, SelectionCheck


def change_text(drop_points: float) -> str:
    """An accuracy change in points, signed as the reader expects: -0.46 is a loss."""
    return f"{-drop_points + 0.0:+.2f}"  # + 0.0: no "-0.00"


def drop_sentence(drop: PairedDrop, where: str) -> str:
    """The drop against the original with its interval, the level and the method, in one sentence."""
    interval = drop.interval()
    return (
        f"Against the original (PyTorch fp32) on {where}: {change_text(drop.drop_points)} points, "
        f"{interval.level:.0%} interval {change_text(interval.high)} to {change_text(interval.low)} "
        f"({interval.method}; {drop.lost} of {drop.rows} rows lost, {drop.gained} gained)."
    )


def fidelity_sentence(fidelity: Fidelity) -> str:
    interval = fidelity.interval()
    return (
        f"On {fidelity.rows:,} unlabelled rows of the calibration text that chose only, never trained, the shipped "
        f"model disagrees with the original on {fidelity.disagreement:.2%} of them ({interval.level:.0%} interval "
        f"{interval.low:.2%} to {interval.high:.2%}, {interval.method}); mean KL {fidelity.kl:.4f} nats."
    )


def selection_line(check: SelectionCheck) -> str:
    """What --max-drop was checked against, and what it said."""
    interval = check.drop.interval()
    if not check.enforced:
        verdict = "for information (--max-drop applies to latency targets)"
    elif check.confirmed:
        verdict = f"the whole interval is within --max-drop {check.max_drop:g}"
    else:
        verdict = (
            f"**not confirmed within --max-drop {check.max_drop:g}**: the selection rows allow a drop up to "
            f"{interval.high:.2f} points (the run refuses only a model whose interval lies wholly beyond it)"
        )
    return (
        f"--max-drop is checked before shipping against the paired drop on the {check.drop.rows} selection rows: "
        f"{change_text(check.drop_points)} points ({interval.level:.0%} interval {change_text(interval.high)} to "
        f"{change_text(interval.low)}); {verdict}."
    )


def headline(report: Report) -> str:
    """The verdict in one line: the accuracy drop (bold) and what it bought."""
    speedup, interval = report.ratios["speedup_p50_pruned_int8_vs_original_int8"], report.drop.interval()
    return (
        f"# attr-compress: **{change_text(report.drop_points)} points** accuracy against the original "
        f"({interval.level:.0%} interval {change_text(interval.high)} to {change_text(interval.low)}), "
        f"{speedup:.2f}x faster than its int8 ONNX"
    )


SPREAD_LABELS = {
    "vs_original_int8": "over the original int8",
    "vs_original_pytorch_fp32": "over the original pytorch fp32",
}


def spread_text(spread: dict[str, list[float]]) -> str:
    """'round by round: 2.41x-2.60x over the original int8, ...' from the paired timing rounds, or nothing."""
    parts = [f"{low:.2f}x-{high:.2f}x {SPREAD_LABELS[name]}" for name, (low, high) in spread.items()]
    return f"round by round: {', '.join(parts)}" if parts else ""


def served_sentence(report: Report) -> str:
    """How often the shipped model disagrees with the original on text as served, and where the points went."""
    served, split = report.served_disagreement, report.drop_split
    interval = served.interval()
    line = (
        f"On the {served.rows} rows of --data no stage trained on (the selection and the measured rows: text as "
        f"served) the shipped model's class differs from the original's on {served.disagreement:.2%} of them "
        f"({interval.level:.0%} interval {interval.low:.2%} to {interval.high:.2%}, {interval.method}); on the "
        f"measured rows alone on {report.measured_disagreement:.2%}."
    )
    if split is not None:
        line += (
            f" Of the {change_text(report.drop_points)} points, pruning and recovery (the pruned model's fp32 graph) "
            f"account for {change_text(split['pruning_and_recovery_fp32_points'])}, int8 for "
            f"{change_text(split['int8_points'])}."
        )
    return line
