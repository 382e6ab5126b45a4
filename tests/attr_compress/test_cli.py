"""The command line end to end on a tiny model: outputs, stages, and one-line errors with exit codes."""

import json
import shutil

import pytest
from attr_compress.compressor.errors import VerificationError
from attr_compress.exporters.parity import ParityResult

from attr_compress.cli import EXIT_CODES, main
from tests.helpers import SENTENCES, TRAIN_SENTENCES, pipeline_args, run, write_tsv


@pytest.fixture(scope="module")
def pipeline_run(tiny_model_dir, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "slim"
    code = None
    try:
        args = pipeline_args(tiny_model_dir, tiny_data, out, "--compare", "--keep-ffn", "0.5", "--recover", "lsq")
        main([str(arg) for arg in args])
    except SystemExit as exit_info:
        code = exit_info.code
    return code, out


def test_pipeline_writes_every_artifact(pipeline_run):
    code, out = pipeline_run
    assert code in (None, 0)
    for name in [
        "importance.json",
        "importance.png",
        "prune_plan.json",
        "ffn_importance.json",
        "recovery.json",
        "graph_tuning.json",
        "report.json",
        "report.md",
        "pruned/config.json",
        "pruned/model.safetensors",
        "pruned/vocab.txt",
        "onnx/model.onnx",
        "onnx/model_quantized.onnx",
        "onnx/runtime.json",
        "onnx/config.json",
        "onnx/export_record.json",
        "trees/tree_001.json",
        "trees/tree_001.svg",
        "trees/tree_002.svg",
    ]:
        assert (out / name).is_file(), name
    assert not (out / "_original_onnx").exists() and not (out / "_original_onnx_tuned").exists()
    assert not list(out.parent.glob(".slim.partial-*"))


def by_variant(rows):
    return {f"{row['model']}/{row['runtime']}": row for row in rows}


def test_report_holds_the_figures(pipeline_run):
    _, out = pipeline_run
    report = json.loads((out / "report.json").read_text())
    results = by_variant(report["results"])
    assert report["heads"]["kept"] == 4 and sum(report["heads"]["kept_per_layer"]) == 4
    assert set(results) == {
        "original/pytorch-fp32",
        "original/onnx-fp32",
        "original/onnx-int8",
        "original/onnx-int8-tuned",
        "pruned/pytorch-fp32",
        "pruned/onnx-fp32",
        "pruned/onnx-int8-tuned",
    }
    intermediate = 37  # tiny_config
    assert report["ffn"]["keep_ffn"] == 0.5 and sum(report["ffn"]["kept_per_layer"]) == round(0.5 * 2 * intermediate)
    assert report["parameters"]["pruned"]["ffn"] < report["parameters"]["original"]["ffn"]
    assert report["recovery"]["method"] == "lsq" and len(report["recovery"]["layers"]) == 2
    for layer in report["recovery"]["layers"]:
        for part in ("attention_output", "ffn_output"):
            assert layer[part]["error_after"] <= layer[part]["error_before"]
    tuning = report["graph_tuning"]
    trials = tuning["trials"]
    assert len(trials) == 9 and tuning["chosen"] in [trial["recipe"] for trial in trials]
    chosen = next(trial for trial in trials if trial["recipe"] == tuning["chosen"])
    fastest = min(trial["latency_p50_ms"] for trial in trials if trial["eligible"])
    assert chosen["eligible"] and chosen["latency_p50_ms"] <= 1.05 * fastest  # the first of the nearly fastest
    runtime = json.loads((out / "onnx/runtime.json").read_text())
    # the shipped recipe is the tuned one, with the per-MatMul exceptions chosen after recovery
    per_matmul = tuning["per_matmul"]
    assert {key: value for key, value in runtime["recipe"].items() if key != "name"} == per_matmul["chosen"]
    assert report["tuned_on"] == "pruned"
    assert {key: runtime["recipe"][key] for key in ("graph", "quantizer", "operators")} == {
        key: tuning["chosen"][key] for key in ("graph", "quantizer", "operators")
    }
    operators = report["export"]["pruned"]["default_session_operators"]  # what a plain InferenceSession runs
    assert operators and "SkipLayerNormalization" not in operators and "disabled_optimizers" not in runtime
    threads = report["export"]["pruned"]["thread_latency_ms"]  # measured on the shipped graph
    assert threads["1"] > 0 and threads[str(runtime["intra_op_num_threads"])] == min(threads.values())
    assert report["options"]["keep"] == report["heads"]["keep"] == 0.5 and report["options"]["keep_ffn"] == 0.5
    for row in results.values():
        assert 0 <= row["accuracy"] <= 1 and row["latency_p50_ms"] > 0 and row["throughput_per_s"] > 0
    original, pruned = results["original/pytorch-fp32"], results["pruned/pytorch-fp32"]
    assert results["pruned/onnx-fp32"]["accuracy"] == pruned["accuracy"]
    assert results["original/onnx-fp32"]["accuracy"] == original["accuracy"]
    ratio = results["original/onnx-int8"]["latency_p50_ms"] / results["pruned/onnx-int8-tuned"]["latency_p50_ms"]
    assert report["ratios"]["speedup_p50_pruned_int8_vs_original_int8"] == pytest.approx(ratio)
    assert report["data"]["calibration_shared_with_evaluation"] is True
    assert "held apart from the rows measured" in (out / "report.md").read_text()
    assert [t["stage"].split(" (")[0] for t in report["timings"]][:2] == [
        "load model and data",
        "score heads with attattr",
    ]
    peaks = [t["peak_memory_gib"] for t in report["timings"]]
    assert 0.1 < peaks[0] <= peaks[-1] < 24 and peaks == sorted(peaks)  # a high-water mark, per stage
    assert f"(peak memory so far {peaks[-1]:.2f} GiB)" in (out / "report.md").read_text()
    assert report["parameters"]["pruned"]["attention"] < report["parameters"]["original"]["attention"]
    comparison = report["why"]["comparison"]
    assert set(comparison) == {"attattr", "attention", "random", "taylor"}
    assert comparison["attattr"]["spearman_with_chosen"] == pytest.approx(1.0)
    assert "## Why these heads" in (out / "report.md").read_text()
    importance = json.loads((out / "importance.json").read_text())
    assert len(importance["scores"]) == 2 and len(importance["scores"][0]) == 4
    assert importance["steps"] == 3 and importance["examples"] == 3 and importance["objective"] == "gold-log"
    tree = json.loads((out / "trees/tree_001.json").read_text())
    data = report["data"]
    assert tree["tokens"][0] == "[CLS]" and tree["meta"]["row"] == data["evaluation_row_numbers"][0]
    # the rows that chose (recipe, candidate, recovery) and those that scored are held apart from the rows measured
    assert data["selection_rows"] == 6 and data["calibration_examples"] == 3
    assert data["evaluation_rows"] == 3 == len(data["evaluation_row_numbers"])
    assert not set(data["selection_row_numbers"]) & set(data["evaluation_row_numbers"])
    markdown = (out / "report.md").read_text()
    drop = (results["original/pytorch-fp32"]["accuracy"] - results["pruned/onnx-int8-tuned"]["accuracy"]) * 100
    assert report["drop_points"] == pytest.approx(drop)
    assert markdown.splitlines()[0].startswith(f"# attr-compress: **{-drop + 0.0:+.2f} points** accuracy")
    interval = report["drop_interval"]
    assert interval["level"] == 0.95 and interval["low"] <= drop <= interval["high"]
    assert "Newcombe" in interval["method"] and "95% interval" in markdown.splitlines()[0]
    # where the points went: the pruned fp32 graph's drop, and int8's on top of it, on the same rows
    fp32 = (results["original/pytorch-fp32"]["accuracy"] - results["pruned/onnx-fp32"]["accuracy"]) * 100
    split = report["drop_split"]
    assert split["pruning_and_recovery_fp32_points"] == pytest.approx(fp32)
    assert split["pruning_and_recovery_fp32_points"] + split["int8_points"] == pytest.approx(drop)
    assert 0 <= report["disagreement_on_measured_rows"] <= 1 and "int8 for" in markdown
    served = report["disagreement_on_data_rows"]
    selection = report["selection_check"]["drop"]
    changed = report["disagreement_on_measured_rows"] * 3 + selection["changed"]
    assert served == pytest.approx(changed / (3 + selection["rows"]))
    assert report["disagreement_on_data_rows_interval"]["low"] <= served <= 1
    assert "rows of --data no stage trained on (the selection and the measured rows: text as served)" in markdown
    low, high = report["speedup_spread"]["vs_original_int8"]
    assert low <= report["ratios"]["speedup_p50_pruned_int8_vs_original_int8"] <= high
    assert len(results["pruned/onnx-int8-tuned"]["round_p50_ms"]) == 3 and "round by round" in markdown


def test_latency_budget_run_chooses_and_reports_the_sizes(tiny_model_dir, tiny_data, tmp_path, capsys):
    args = pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim", "--trees", "0", "--recover", "lsq")
    del args[args.index("--keep") : args.index("--keep") + 2]
    code, out, err = run([*args, "--latency-budget", "1000", "--max-drop", "100"], capsys)  # every candidate meets
    assert code == 0, err
    report = json.loads((tmp_path / "slim/report.json").read_text())
    search = report["target_search"]
    assert report["target_met_in_final_measurement"] and search["margin"] >= 1.03
    # the structure closest to the original on the unlabelled rows wins; here the whole model meets the budget
    keys = [
        (c["judgement"]["fidelity"]["disagreements"], c["judgement"]["fidelity"]["kl"]) for c in search["candidates"]
    ]
    chosen = next(c for c in search["candidates"] if c["structure"] == search["chosen"])
    assert (chosen["judgement"]["fidelity"]["disagreements"], chosen["judgement"]["fidelity"]["kl"]) == min(keys)
    assert [layer["heads"] for layer in search["chosen"]["layers"]] == report["heads"]["kept_per_layer"]
    assert search["confirmations"][-1]["met"] and search["latency_model"]["timings"]
    assert report["tuned_on"] == "original"
    check = report["selection_check"]
    assert check["enforced"] and check["max_drop"] == 100 and check["drop"]["rows"] == 6
    assert (tmp_path / "slim/target_search.json").is_file() and "## Latency target" in (
        tmp_path / "slim/report.md"
    ).read_text()


def test_a_target_whose_drop_is_shown_beyond_max_drop_ships_nothing(
    tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch
):
    from attr_compress.evaluation.fidelity import PairedDrop

    lost_everything = PairedDrop(rows=6, original_correct=6, candidate_correct=0, lost=6, gained=0)
    monkeypatch.setattr("attr_compress.evaluation.fidelity.paired_drop", lambda *args: lost_everything)
    args = pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim", "--trees", "0", "--recover", "lsq")
    del args[args.index("--keep") : args.index("--keep") + 2]
    code, out, err = run([*args, "--latency-budget", "1000"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "loses 100.00 points (95% interval" in err
    assert "more than --max-drop 1" in err and "relax --max-drop or the target" in err
    assert list(tmp_path.iterdir()) == []


def test_stages_run_alone_and_chain(tiny_model_dir, tiny_data, tmp_path, capsys):
    code, out, err = run(
        [
            "score",
            tiny_model_dir,
            "--calib",
            tiny_data,
            "--out",
            tmp_path / "scores",
            "--examples",
            "4",
            "--steps",
            "2",
            "--ffn",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads((tmp_path / "scores/ffn_importance.json").read_text())["kind"] == "ffn-importance"
    code, out, err = run(
        [
            "prune",
            tiny_model_dir,
            "--importance",
            tmp_path / "scores/importance.json",
            "--keep",
            "0.25",
            "--ffn-importance",
            tmp_path / "scores/ffn_importance.json",
            "--keep-ffn",
            "0.5",
            "--recover",
            "lsq",
            "--calib",
            tiny_data,
            "--out",
            tmp_path / "pruned",
        ],
        capsys,
    )
    assert code == 0, err
    assert "kept 2/8 heads" in out and (tmp_path / "pruned/recovery.json").is_file()
    code, out, err = run(["export", tmp_path / "pruned", "--data", tiny_data, "--out", tmp_path / "onnx"], capsys)
    assert code == 0, err
    assert "parity max |diff|" in out
    code, out, err = run(
        [
            "evaluate",
            tiny_model_dir,
            tmp_path / "pruned",
            tmp_path / "onnx",
            "--data",
            tiny_data,
            "--latency-examples",
            "3",
            "--out",
            tmp_path / "eval.json",
        ],
        capsys,
    )
    assert code == 0, err
    results = by_variant(json.loads((tmp_path / "eval.json").read_text())["results"])
    assert set(results) == {"tiny-bert0/pytorch-fp32", "pruned/pytorch-fp32", "onnx/onnx-fp32", "onnx/onnx-int8"}
    code, out, err = run(
        ["tree", tiny_model_dir, "--data", tiny_data, "--out", tmp_path / "trees", "--trees", "1", "--steps", "2"],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "trees/tree_001.svg").is_file()


def test_parity_failure_exits_1_and_leaves_nothing(tiny_model_dir, tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "attr_compress.exporters.verified.compare_logits",
        lambda reference, candidate, batches, atol: ParityResult(candidate.name, reference.name, 0.5, atol, []),
    )
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim"), capsys)
    assert code == EXIT_CODES[VerificationError] == 1
    assert err.strip().splitlines() == [
        "error: parity gate failed: onnx-fp32 differs from original by 0.5 in the logits (allowed 0.0001)"
    ]
    assert list(tmp_path.iterdir()) == []


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def config_folder(root, config):
    return write(root / "m" / "config.json", json.dumps(config)).parent


BAD_MODELS = {
    "missing": (lambda root: root / "nope", "does not exist"),
    "no config": (lambda root: write(root / "m" / "weights.txt", "x").parent, "has no config.json"),
    "malformed config": (lambda root: write(root / "m" / "config.json", "{not json").parent, "is not valid JSON"),
    "other architecture": (
        lambda root: config_folder(root, {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}),
        "holds GPT2LMHeadModel, which is not supported; supported: BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT",
    ),
    "albert (shared layers)": (
        lambda root: config_folder(
            root, {"model_type": "albert", "architectures": ["AlbertForSequenceClassification"]}
        ),
        "holds AlbertForSequenceClassification, which is not supported; supported: BERT, RoBERTa",
    ),
    "deberta (disentangled attention)": (
        lambda root: config_folder(
            root, {"model_type": "deberta-v2", "architectures": ["DebertaV2ForSequenceClassification"]}
        ),
        "holds DebertaV2ForSequenceClassification, which is not supported; supported: BERT, RoBERTa",
    ),
    "family and class disagree": (
        lambda root: config_folder(root, {"model_type": "roberta", "architectures": ["BertForSequenceClassification"]}),
        "holds BertForSequenceClassification but its model_type is 'roberta'; repair config.json",
    ),
    "bare encoder": (
        lambda root: config_folder(root, {"model_type": "bert", "architectures": ["BertModel"]}),
        "holds BertModel, which is not supported",
    ),
    "custom code": (
        lambda root: config_folder(root, {"model_type": "bert", "auto_map": {"x": "y"}}),
        "custom code",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_folders_give_one_line_and_exit_2(case, tmp_path, tiny_data, capsys):
    make, message = BAD_MODELS[case]
    code, _, err = run(pipeline_args(make(tmp_path), tiny_data, tmp_path / "out"), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("keep", ["0", "1.5", "-0.2"])
def test_keep_outside_zero_one_exits_2(keep, tiny_model_dir, tiny_data, tmp_path, capsys):
    args = pipeline_args(tiny_model_dir, tiny_data, tmp_path / "out")
    args[args.index("--keep") + 1] = keep
    code, _, err = run(args, capsys)
    assert code == 2 and "--keep must be in (0, 1]" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--examples", "--steps", "--fidelity-examples"])
def test_counts_below_one_exit_2(option, tiny_model_dir, tiny_data, tmp_path, capsys):
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "out", option, "0"), capsys)
    assert code == 2 and f"{option} must be at least 1" in err


def test_negative_threads_exit_2(tiny_model_dir, tiny_data, tmp_path, capsys):
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "out", "--threads", "-1"), capsys)
    assert code == 2 and "--threads must be 0 or more" in err


@pytest.mark.parametrize(
    "change, message",
    [
        (["--keep-ffn", "0"], "--keep-ffn must be in (0, 1]"),
        (["--keep-ffn", "1.2"], "--keep-ffn must be in (0, 1]"),
        (["--target-speedup", "2"], "a latency target chooses --keep, --keep-ffn and --drop-layers"),
        (["--target-speedup", "2", "--latency-budget", "1", "DROP-KEEP"], "exactly one of"),
        (["--latency-budget", "-1", "DROP-KEEP"], "--latency-budget must be above 0"),
        (["DROP-KEEP"], "pass --keep (fraction of heads kept) or a latency target"),
        (["--fit-examples", "0"], "--fit-examples must be at least 1"),
    ],
)
def test_bad_ffn_recovery_and_target_options_exit_2(change, message, tiny_model_dir, tiny_data, tmp_path, capsys):
    args = pipeline_args(tiny_model_dir, tiny_data, tmp_path / "out")
    if "DROP-KEEP" in change:
        del args[args.index("--keep") : args.index("--keep") + 2]
    code, _, err = run([*args, *(item for item in change if item != "DROP-KEEP")], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_prune_with_ffn_keep_but_no_ffn_scores_exits_2(tiny_model_dir, tiny_data, tmp_path, capsys):
    code, _, err = run(
        ["score", tiny_model_dir, "--calib", tiny_data, "--out", tmp_path / "s", "--examples", "2", "--steps", "1"],
        capsys,
    )
    assert code == 0, err
    args = ["prune", tiny_model_dir, "--importance", tmp_path / "s/importance.json", "--keep", "0.5", "--keep-ffn"]
    code, _, err = run([*args, "0.5", "--out", tmp_path / "p"], capsys)
    assert code == 2 and "run `attr-compress score --ffn` first" in err
    code, _, err = run([*args, "1", "--recover", "lsq", "--out", tmp_path / "p"], capsys)
    assert code == 2 and "--recover lsq fits on calibration data; pass --calib FILE" in err
    assert not (tmp_path / "p").exists()


def test_unknown_label_exits_2(tiny_model_dir, tmp_path, capsys):
    data = write(tmp_path / "bad.tsv", "sentence\tlabel\nthe movie\tmaybe\n")
    code, _, err = run(pipeline_args(tiny_model_dir, data, tmp_path / "out"), capsys)
    assert code == 2 and "'maybe'" in err and "not one of the model's labels" in err


def test_missing_data_file_exits_2(tiny_model_dir, tmp_path, capsys):
    code, _, err = run(pipeline_args(tiny_model_dir, tmp_path / "none.tsv", tmp_path / "out"), capsys)
    assert code == 2 and "none.tsv" in err


def test_no_data_and_no_glue_dir_says_pass_data(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    code, _, err = run([tiny_model_dir, "--keep", "0.5", "--out", tmp_path / "out"], capsys)
    assert code == 2 and "pass --data" in err


def test_task_data_found_through_glue_dir(tiny_model_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    write_tsv(tmp_path / "glue" / "SST-2" / "dev.tsv")
    write_tsv(tmp_path / "glue" / "SST-2" / "train.tsv", TRAIN_SENTENCES)
    monkeypatch.setenv("GLUE_DIR", str(tmp_path / "glue"))
    code, _, err = run(
        [
            tiny_model_dir,
            "--keep",
            "0.75",
            "--out",
            tmp_path / "out",
            "--examples",
            "3",
            "--steps",
            "2",
            "--trees",
            "0",
            "--latency-examples",
            "2",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["data"]["evaluation"].endswith("SST-2/dev.tsv")
    assert report["data"]["calibration"].endswith("SST-2/train.tsv")
    assert report["data"]["calibration_shared_with_evaluation"] is False


def test_existing_output_is_refused_without_force(pipeline_run, tiny_model_dir, tiny_data, tmp_path, capsys):
    foreign = tmp_path / "mine"
    write(foreign / "precious.txt", "user data")
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, foreign), capsys)
    assert code == 2 and "already exists; pass --force" in err
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, foreign, "--force"), capsys)
    assert code == 2 and "was not written by attr-compress" in err
    assert (foreign / "precious.txt").read_text() == "user data"


def test_force_replaces_our_own_output(tiny_model_dir, tiny_data, tmp_path, capsys):
    out = tmp_path / "slim"
    assert run(pipeline_args(tiny_model_dir, tiny_data, out, "--trees", "0"), capsys)[0] == 0
    write(out / "stale.txt", "old")
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, out, "--trees", "0", "--force"), capsys)
    assert code == 0, err
    assert not (out / "stale.txt").exists() and (out / "report.json").is_file()


def test_default_out_is_next_to_the_model(tiny_model_dir, tiny_data, tmp_path, capsys):
    model = tmp_path / "clf"
    shutil.copytree(tiny_model_dir, model)
    args = pipeline_args(model, tiny_data, "unused", "--trees", "0")
    del args[args.index("--out") : args.index("--out") + 2]
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert (tmp_path / "clf-attr-keep0.5-ffn1" / "report.json").is_file()
    assert "clf-attr-keep0.5" in out


def test_help_lists_the_stages(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("score", "prune", "export", "evaluate", "tree"):
        assert command in out


def test_debug_shows_the_traceback(tmp_path, tiny_data, capsys):
    code, _, err = run(["--debug", tmp_path / "nope", "--keep", "0.5", "--data", tiny_data], capsys)
    assert code == 2 and "Traceback" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_gpu_requested_without_one_exits_2_before_any_work(tiny_model_dir, tiny_data, tmp_path, capsys):
    code, _, err = run(pipeline_args(tiny_model_dir, tiny_data, tmp_path / "out", "--device", "cuda"), capsys)
    assert code == 2 and "asked for a GPU but none is available" in err
    assert "score heads" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_prune_on_a_missing_gpu_exits_2_before_any_work(tiny_model_dir, tiny_data, tmp_path, capsys):
    importance = tmp_path / "importance.json"
    code, _, err = run(
        ["score", tiny_model_dir, "--calib", tiny_data, "--examples", "4", "--out", tmp_path / "s"], capsys
    )
    assert code == 0, err
    args = ["prune", tiny_model_dir, "--importance", tmp_path / "s" / "importance.json", "--keep", "0.5"]
    code, _, err = run(
        [*args, "--calib", tiny_data, "--recover", "lsq", "--device", "cuda", "--out", tmp_path / "p"], capsys
    )
    assert code == 2 and "asked for a GPU but none is available" in err.strip().splitlines()[-1]
    assert "refitting" not in err and not (tmp_path / "p").exists() and not importance.exists()


def test_auto_recovery_tries_lsq_and_distillation_and_keeps_the_better(tiny_model_dir, tiny_data, tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", TRAIN_SENTENCES * 4)
    args = pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim", "--keep-ffn", "0.5", "--distill-steps", "4")
    args[args.index("--calib") + 1] = train
    code, out, err = run(args, capsys)
    assert code == 0, err
    recovery = json.loads((tmp_path / "slim/recovery.json").read_text())
    tried = recovery["compared"]
    closest = min(tried, key=lambda m: (tried[m]["disagreement"], tried[m]["kl"], m != "lsq"))
    assert set(tried) == {"lsq", "distill"} and recovery["method"] == closest
    if recovery["method"] == "distill":
        assert recovery["distill"]["steps"] == 4 and recovery["distill"]["planned_from"] == "steps"
    assert "Chosen by fidelity to the original on the unlabelled rows" in (tmp_path / "slim/report.md").read_text()


def test_select_data_file_chooses_and_other_data_rows_measure(tiny_model_dir, tiny_data, tmp_path, capsys):
    select = write_tsv(tmp_path / "select.tsv", SENTENCES[:5])
    args = pipeline_args(tiny_model_dir, tiny_data, tmp_path / "slim", "--select-data", select)
    args[args.index("--calib") + 1] = write_tsv(tmp_path / "train.tsv", TRAIN_SENTENCES)
    code, out, err = run(args, capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "slim/report.json").read_text())["data"]
    # the five choosing rows are also --data rows: found by content, they are not measured
    assert data["evaluation_rows"] == len(SENTENCES) - 5 and data["selection_rows"] == 5
    assert data["excluded"] == ["5 rows of --data also in --select-data were not measured"]
    assert "--select-data" in data["selection"]
    code, out, err = run(
        [*pipeline_args(tiny_model_dir, tiny_data, tmp_path / "other"), "--select-data", tmp_path / "missing.tsv"],
        capsys,
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing.tsv" in err
    assert not (tmp_path / "other").exists()
