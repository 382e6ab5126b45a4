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
    "DataOptions": "compressor.task_data",
    "AttrCompressError": "compressor.errors",
    "InputError": "compressor.errors",
    "VerificationError": "compressor.errors",
    "LoadedModel": "compressor.modeling",
    "load_model": "compressor.modeling",
    "load_labelled_data": "compressor.data",
    "sample_labelled_data": "compressor.data",
    "ScoringOptions": "compressor.scoring",
    "score_heads": "compressor.scoring",
    "score_neurons": "compressor.scoring",
    "HeadImportance": "compressor.importance",
    "NeuronImportance": "compressor.neurons",
    "PrunePlan": "compressor.pruning",
    "plan_pruning": "compressor.pruning",
    "prune": "compressor.pruning",
    "save_pruned": "compressor.pruning",
    "RecoveryOptions": "compressor.recovery",
    "encode_for_fit": "compressor.recovery",
    "recover": "compressor.recovery",
    "encode_data": "compressor.encoded",
    "parity_batches": "compressor.encoded",
    "Recipe": "exporters.recipes",
    "OPTIMUM_BASELINE": "exporters.recipes",
    "export_verified": "exporters.verified",
    "ship_int8": "exporters.verified",
    "TorchRunner": "exporters.runtime",
    "OnnxRunner": "exporters.runtime",
    "load_session": "exporters.runtime",
    "tune_recipe": "evaluation.tuning",
    "evaluate": "evaluation.measure",
    "explain": "compressor.explain",
    "Report": "evaluation.report",
    "render_markdown": "evaluation.report",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'attr_compress' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
