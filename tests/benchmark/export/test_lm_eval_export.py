"""lm-eval export: the task files, the settings they carry, and the hooks' rows and scores (no lm-eval needed)."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml
from benchmark.cli.commands import export_lm_eval as command

from benchmark.cli.main import main as cli_main
from benchmark.config import UsageError, budget_settings
from benchmark.core.paths import default_data_dir
from benchmark.engine.collate import ViewEncoder
from benchmark.engine.prompting import PROMPT_VERSION, PromptFormat
from benchmark.export.lm_eval import CellConfigError, LmEvalSettings, export_lm_eval
from benchmark.export.lm_eval_hooks import load_dataset, process_results
from benchmark.models.loading import load_family_tokenizer
from benchmark.store import config_hash
from tasks import load as load_task
from tasks.base import subset

DATA_DIR = default_data_dir()
needs_data = pytest.mark.skipif(DATA_DIR is None, reason="task data not found (set CTKD_DATA_DIR or provide ../shared/data)")


class _TaskLoader(yaml.SafeLoader):
    """Reads lm-eval's ``!function module.name`` tags as plain strings."""


_TaskLoader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))


def read_task(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


@needs_data
def test_export_writes_one_task_per_name_with_our_settings(tmp_path: Path) -> None:
    settings = LmEvalSettings(PromptFormat("plain", 2, 7, 300), limit_eval=12, max_new_tokens=None)
    written = export_lm_eval(tmp_path, ["qed", "ftqa"], DATA_DIR, settings)
    assert [p.name for p in written] == ["ctkd_qed.yaml", "ctkd_fairytaleqa.yaml"]
    assert "from benchmark.export.lm_eval_hooks import load_dataset, process_results" in (tmp_path / "ctkd_utils.py").read_text()
    qed = read_task(tmp_path / "ctkd_qed.yaml")
    assert qed["task"] == "ctkd_qed" and qed["tag"] == ["ctkd"] and qed["output_type"] == "generate_until"
    assert qed["doc_to_text"] == "prompt" and qed["num_fewshot"] == 0 and qed["test_split"] == "test"
    assert qed["generation_kwargs"] == {"until": ["\n"], "do_sample": False, "max_gen_toks": 32}
    assert qed["metric_list"] == [{"metric": "f1", "aggregation": "mean", "higher_is_better": True},
                                  {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}]
    assert qed["metadata"] == {"version": PROMPT_VERSION, "ctkd_task": "qed", "data_dir": str(DATA_DIR.resolve()),
                               "prompt_style": "plain", "shots": 2, "shot_seed": 7, "max_prompt_tokens": 300,
                               "limit_eval": 12}
    assert qed["custom_dataset"] == "!function ctkd_utils.load_dataset"
    assert qed["process_results"] == "!function ctkd_utils.process_results"
    fairytale = read_task(tmp_path / "ctkd_fairytaleqa.yaml")
    assert [m["metric"] for m in fairytale["metric_list"]] == ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    assert fairytale["metadata"]["ctkd_task"] == "fairytaleqa"


def test_settings_from_a_budget_and_from_a_cell(tmp_path: Path) -> None:
    smoke = LmEvalSettings.from_settings(budget_settings("smoke"))
    assert smoke == LmEvalSettings(PromptFormat("plain", 0, 0, 256), limit_eval=16, max_new_tokens=None)
    paper = LmEvalSettings.from_settings(budget_settings("paper"))
    assert paper == LmEvalSettings(PromptFormat("plain", 0, 0, 1024), limit_eval=None, max_new_tokens=150)
    prompt = {"style": "plain", "shots": 1, "shot_seed": 0, "max_prompt_tokens": 200, "version": PROMPT_VERSION}
    config = {"cell": {"task": "dialogsum", "pair": "p", "method": "sft", "seed": 1}, "eval_prompt": prompt,
              "eval": {"limit_eval": 8, "max_new_tokens": 64}}
    cell = tmp_path / "dialogsum" / "p" / "sft" / "seed1"
    cell.mkdir(parents=True)
    (cell / "config.json").write_text(json.dumps({"format": 2, "hash": config_hash(config), "config": config}))
    assert LmEvalSettings.from_cell(cell) == ("dialogsum", LmEvalSettings(PromptFormat("plain", 1, 0, 200), 8, 64))
    config["eval_prompt"] = {**prompt, "version": PROMPT_VERSION + 1}
    (cell / "config.json").write_text(json.dumps({"format": 2, "hash": config_hash(config), "config": config}))
    with pytest.raises(CellConfigError, match=f"its prompts are version {PROMPT_VERSION + 1}"):
        LmEvalSettings.from_cell(cell)
    with pytest.raises(CellConfigError, match="nope is not a cell directory"):
        LmEvalSettings.from_cell(tmp_path / "nope")
    (cell / "config.json").write_text(json.dumps({"hash": config_hash(config), "config": config}))  # format 1
    with pytest.raises(CellConfigError, match="is in store format 1, this code reads formats 2, 3; re-run the cell"):
        LmEvalSettings.from_cell(cell)


@needs_data
def test_command_exports_and_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert command.main(parse(str(tmp_path / "all"), "--budget", "small", "--limit-eval", "5")) == 0
    names = sorted(p.name for p in (tmp_path / "all").glob("*.yaml"))
    assert names == [f"ctkd_{n}.yaml" for n in sorted(["qed", "squad", "fairytaleqa", "pubmedqa", "dialogsum"])]
    meta = read_task(tmp_path / "all" / "ctkd_squad.yaml")["metadata"]
    assert (meta["max_prompt_tokens"], meta["limit_eval"]) == (768, 5)
    assert "--tasks ctkd --include_path" in capsys.readouterr().out
    for argv, message in [
        (["--tasks", "qedd"], "--tasks: unknown task 'qedd'"),
        (["--limit-eval", "0"], "--limit-eval 0: expected an integer > 0"),
        (["--data-dir", str(tmp_path), "--tasks", "qed"], "data directory for task 'qed' not found"),
        (["--like-cell", str(tmp_path), "--tasks", "qed"], "--like-cell takes the task, the prompt and the examples"),
        (["--like-cell", str(tmp_path)], "--like-cell " + str(tmp_path) + " is not a cell directory"),
    ]:
        with pytest.raises(UsageError, match=re.escape(message)):
            command.main(parse(str(tmp_path / "x"), *argv))
    assert not (tmp_path / "x").exists()  # nothing is written on bad input


@needs_data
def test_export_lm_eval_is_a_run_bench_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["export-lm-eval", str(tmp_path), "--tasks", "qed"]) == 0
    assert (tmp_path / "ctkd_qed.yaml").is_file()
    assert cli_main(["export-lm-eval", str(tmp_path), "--tasks", "nope"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@needs_data
@pytest.mark.parametrize("name", ["qed", "dialogsum"])
def test_hook_rows_carry_the_evaluators_prompts_ids_and_references(tmp_path: Path, name: str) -> None:
    tokenizer = load_family_tokenizer("gpt2")
    tokenizer.save_pretrained(tmp_path)
    fmt = PromptFormat("plain", 2, 3, 300)  # tight enough that shots are dropped and contexts cut
    rows = load_dataset(ctkd_task=name, data_dir=str(DATA_DIR), prompt_style="plain", shots=2, shot_seed=3,
                        max_prompt_tokens=300, limit_eval=12, pretrained=str(tmp_path), dtype="float32", version=1)
    assert list(rows) == ["test"]
    rows = rows["test"]
    task = load_task(name, DATA_DIR)
    examples = subset(task.load("test"), 12)
    encoder = ViewEncoder(task, tokenizer, fmt, task.load("train"), max_answer_tokens=64)
    rendered = [encoder.render(e) for e in examples]
    assert rows["id"] == [e.id for e in examples]
    assert rows["references"] == [list(e.references) for e in examples]
    assert rows["prompt"] == [r.text for r in rendered]
    assert rows["task"] == [name] * 12
    assert {r.shots_used for r in rendered} != {2} or any(r.context_truncated for r in rendered)  # the budget acted
    with pytest.raises(ValueError, match="pass --model_args pretrained=<model dir or hub id>"):
        load_dataset(ctkd_task=name, data_dir=str(DATA_DIR), prompt_style="plain", shots=0, shot_seed=0,
                     max_prompt_tokens=300)


def test_process_results_cleans_and_scores_like_the_evaluator() -> None:
    qed = {"task": "qed", "references": ["The small intestine", "small intestine"]}
    assert process_results(qed, ["  small intestine\nand more"]) == {"f1": 100.0, "exact_match": 100.0}
    # "the large intestine" vs "The small intestine": tokens {large, intestine} vs {small, intestine} after
    # dropping the article: precision 1/2, recall 1/2, F1 = 50.
    assert process_results(qed, ["the large intestine"]) == {"f1": 50.0, "exact_match": 0.0}
    summary = {"task": "dialogsum", "references": ["Tom buys a car.", "A car is bought by Tom."]}
    scores = process_results(summary, ["Tom buys a red car.\nPerson2 says"])
    # rouge1 vs the first reference: 4 shared unigrams (tom buys a car), P = 4/5, R = 4/4, F = 8/9.
    assert scores["rouge1"] == pytest.approx(100 * 8 / 9)
    assert set(scores) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
