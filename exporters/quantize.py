"""Dynamic int8 quantisation with Optimum's ORTQuantizer."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from attr_compress.exporters.onnx_export import ONNX_FP32, ONNX_INT8, quiet


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":")[1].split()}


def quantize_dynamic(
    onnx_dir: str | Path, *, per_channel: bool = True, source: str = ONNX_FP32, target: str | Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """Write ``target`` (default: model_quantized.onnx beside ``source``): int8 weights, activations
    quantised at run time. Nothing else in ``onnx_dir`` is touched.

    The preset follows this CPU's instruction set (VNNI, AVX-512, AVX2 or ARM64); the choice is returned
    for the record.
    """
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    flags = cpu_flags()
    if "avx512_vnni" in flags:
        preset = "avx512_vnni"
    elif "avx512f" in flags:
        preset = "avx512"
    elif "avx2" in flags:
        preset = "avx2"
    else:
        preset = "arm64"
    config = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=per_channel)
    quantizer = ORTQuantizer.from_pretrained(str(onnx_dir), file_name=source)
    target = Path(target) if target is not None else Path(onnx_dir) / ONNX_INT8
    with tempfile.TemporaryDirectory(prefix="attr-compress-quantize-", dir=target.parent) as scratch, quiet():
        quantizer.quantize(config, save_dir=scratch, file_suffix="quantized")
        (Path(scratch) / f"{Path(source).stem}_quantized.onnx").replace(target)
    return target, {"preset": preset, "per_channel": per_channel, "source": source, "dynamic": True}
