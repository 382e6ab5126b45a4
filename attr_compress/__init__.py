"""attr-compress as a library: one call, or each stage alone on in-memory transformers models.

    import attr_compress as ac

    report = ac.compress("model/", keep=0.5, data="dev.tsv", calib="train.tsv", out="slim/")
    print(report.shipped.accuracy, report.ratios["speedup_p50_pruned_int8_vs_original_int8"])

Stages (each one function with typed inputs and a typed result): ``score_heads`` / ``score_neurons`` ->
``plan_pruning`` -> ``prune`` -> ``recover`` -> ``export_verified`` (+ ``tune_recipe``, ``ship_int8``) ->
``evaluate`` -> ``explain`` -> ``Report`` / ``render_markdown``. Errors are ``AttrCompressError``s
carrying a one-line message. Names are imported on first use, so ``import attr_compress`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compress": "attr_compress.pipeline",
    "run": "attr_compress.pipeline",
    "PipelineOptions": "attr_compress.pipeline",
    "DataOptions": "attr_compress.compressor.data.task",
    "AttrCompressError": "attr_compress.compressor.errors",
    "InputError": "attr_compress.compressor.errors",
    "VerificationError": "attr_compress.compressor.errors",
    "LoadedModel": "attr_compress.compressor.models.loading",
    "load_model": "attr_compress.compressor.models.loading",
    "load_labelled_data": "attr_compress.compressor.data.files",
    "sample_labelled_data": "attr_compress.compressor.data.files",
    "ScoringOptions": "attr_compress.compressor.scoring.options",
    "score_heads": "attr_compress.compressor.scoring.options",
    "score_neurons": "attr_compress.compressor.scoring.options",
    "HeadImportance": "attr_compress.compressor.scoring.heads",
    "NeuronImportance": "attr_compress.compressor.scoring.neurons",
    "PrunePlan": "attr_compress.compressor.pruning.prune",
    "plan_pruning": "attr_compress.compressor.pruning.prune",
    "prune": "attr_compress.compressor.pruning.prune",
    "save_pruned": "attr_compress.compressor.pruning.prune",
    "RecoveryOptions": "attr_compress.compressor.recovery.lsq",
    "encode_for_fit": "attr_compress.compressor.recovery.lsq",
    "recover": "attr_compress.compressor.recovery.lsq",
    "encode_data": "attr_compress.compressor.data.encoded",
    "parity_batches": "attr_compress.compressor.data.encoded",
    "Recipe": "attr_compress.exporters.recipes",
    "OPTIMUM_BASELINE": "attr_compress.exporters.recipes",
    "export_verified": "attr_compress.exporters.verified",
    "ship_int8": "attr_compress.exporters.verified",
    "TorchRunner": "attr_compress.exporters.runtime",
    "OnnxRunner": "attr_compress.exporters.runtime",
    "load_session": "attr_compress.exporters.runtime",
    "tune_recipe": "attr_compress.evaluation.tuning",
    "evaluate": "attr_compress.evaluation.measure",
    "explain": "attr_compress.compressor.explain.examples",
    "Report": "attr_compress.evaluation.report.record",
    "render_markdown": "attr_compress.evaluation.report.markdown",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'attr_compress' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
