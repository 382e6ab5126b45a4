"""The tables ``benchmarks/latency.py`` prints: every variant side by side (round-robin and isolated), the pruned
pairs and the parity of each graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PYTORCH = "original PyTorch fp32"
BASELINE = "original ONNX int8 Optimum"
ISOLATED_WARMUP = 20  # untimed examples before an isolated variant is timed


def table(results: dict[str, dict[str, Any]], order: Sequence[str]) -> str:
    torch_p50 = results[PYTORCH]["latency_p50_ms"]
    base = results[BASELINE]
    lines = [
        "| variant | accuracy | p50 ms | p90 ms | batch-32 ex/s | p50 speed-up vs PyTorch fp32 "
        "| p50 speed-up vs original int8 (Optimum) | throughput ratio vs original int8 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in order:
        row = results[name]
        p50 = row["latency_p50_ms"]
        lines.append(
            f"| {name} | {row['accuracy']:.4f} | {p50:.3f} | {row['latency_p90_ms']:.3f} "
            f"| {row['throughput_per_s']:.1f} | {torch_p50 / p50:.2f}x | {base['latency_p50_ms'] / p50:.2f}x "
            f"| {row['throughput_per_s'] / base['throughput_per_s']:.2f}x |"
        )
    return "\n".join(lines)


def isolated_table(
    isolated: dict[str, dict[str, Any]], round_robin: dict[str, dict[str, Any]], order: Sequence[str]
) -> str:
    torch_p50 = isolated[PYTORCH]["latency_p50_ms"]
    base_p50 = isolated[BASELINE]["latency_p50_ms"]
    lines = [
        "| variant | p50 ms | p90 ms | p50 speed-up vs original int8 (Optimum) | p50 speed-up vs PyTorch fp32 "
        "| round-robin p50 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in order:
        row = isolated[name]
        p50 = row["latency_p50_ms"]
        lines.append(
            f"| {name} | {p50:.3f} | {row['latency_p90_ms']:.3f} | {base_p50 / p50:.2f}x | {torch_p50 / p50:.2f}x "
            f"| {round_robin[name]['latency_p50_ms']:.3f} |"
        )
    return "\n".join(lines)


def print_pairs_and_parity(report: dict[str, Any]) -> None:
    """One line per pruned model (heads, FFN neurons, parameters kept), one per exported model (parity)."""
    print()
    for pair in report["pairs"]:
        kept_ffn = sum(pair["ffn_kept_per_layer"]) if pair["ffn_kept_per_layer"] else None
        ffn_text = f", FFN neurons kept {kept_ffn}" if kept_ffn is not None else ""
        print(
            f"{pair['name']}: heads kept {pair['heads_kept']}/{pair['total_heads']}{ffn_text}, "
            f"parameters {pair['parameters'] / 1e6:.2f}M of {pair['original_parameters'] / 1e6:.2f}M"
        )
    for name, notes in report["graphs"].items():
        fusion = notes.get("fusion", {})
        fused_text = ""
        if fusion:
            attention = "with" if fusion["attention_fusion"] else "WITHOUT"
            fused_text = f", fused fp32 {fusion['max_abs_diff']:.2g} ({attention} attention fusion)"
        print(
            f"parity vs PyTorch (max |logit diff|), {name}: ONNX fp32 {notes['onnx_fp32_max_abs_diff']:.2g}{fused_text}"
        )


def print_latency_tables(report: dict[str, Any], names: Sequence[str], data: Path) -> None:
    """The round-robin tables, then the isolated ones, one per thread count."""
    settings = report["settings"]
    singles = settings["latency_examples"]
    print(
        f"\n{settings['dev_examples']} dev examples ({data.parent.name}) for accuracy and batch-32 throughput; "
        f"batch-1 latency over the first {singles} (first {min(10, singles // 2)} not counted), round-robin"
    )
    for threads in settings["threads"]:
        print(f"\n### Round-robin, {threads} thread(s)\n")
        print(table(report["results"][str(threads)], names))
    print(
        f"\nIsolated: each variant alone, {ISOLATED_WARMUP} warm-up examples, then the first {singles} timed back "
        "to back (what a server running one model sees); last column: the round-robin p50 for comparison"
    )
    for threads in settings["threads"]:
        print(f"\n### Isolated, {threads} thread(s)\n")
        print(isolated_table(report["isolated"][str(threads)], report["results"][str(threads)], names))
