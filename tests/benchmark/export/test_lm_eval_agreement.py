"""Agreement with lm-evaluation-harness: one saved tiny student, 16 examples of QED and DialogSum, both harnesses.

Our evaluator runs in this process; lm-eval runs as its users run it (``python -m lm_eval --model hf
--include_path <export>``) on the exported tasks. Same prompts, greedy decoding, batch size 8 on both sides.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.core.paths import default_data_dir
from benchmark.engine.collate import ViewEncoder
from benchmark.engine.evaluation import clean_prediction, evaluate
from benchmark.engine.prompting import PromptFormat
from benchmark.export.lm_eval import LmEvalSettings, export_lm_eval
from benchmark.models.loading import ModelSpec, load_model
from tasks import load as load_task
from tasks.base import subset
from tests.support.students import varied_tiny_student

pytest.importorskip("lm_eval", reason='lm-eval is not installed: pip install -e ".[lmeval]"')

REPO = Path(__file__).resolve().parents[3]
DATA_DIR = default_data_dir()
TASKS = ("qed", "dialogsum")
N_EXAMPLES, BATCH_SIZE = 16, 8
MAX_SCORE_GAP = 0.5  # points (scores are ×100)
MIN_SAME_SHARE = 0.9
FORMAT = PromptFormat("plain", 0, max_prompt_tokens=256)  # the smoke budget's student prompt


def save_random_student(folder: Path) -> Path:
    """A tiny student with prompt-dependent answers, saved as --save-students saves a student."""
    model, tokenizer = varied_tiny_student()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def ours(student: Path, name: str) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """(metrics, prompt by id, prediction by id) of our evaluator."""
    model, tokenizer = load_model(ModelSpec("student", "local", str(student)))
    task = load_task(name, DATA_DIR)
    examples = subset(task.load("test"), N_EXAMPLES)
    encoder = ViewEncoder(task, tokenizer, FORMAT, task.load("train"), max_answer_tokens=64)
    result = evaluate(model, encoder, examples, task.max_new_tokens, BATCH_SIZE)
    prompts = {e.id: encoder.render(e).text for e in examples}
    return result.metrics, prompts, {r["id"]: r["prediction"] for r in result.predictions}


def theirs(student: Path, task_dir: Path, out: Path) -> dict[str, tuple[dict[str, float], dict[str, str], dict[str, str]]]:
    """Per task: (metrics, prompt by id, prediction by id) of ``lm_eval`` run from the command line."""
    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={student},dtype=float32",
               "--tasks", ",".join(f"ctkd_{t}" for t in TASKS), "--include_path", str(task_dir),
               "--batch_size", str(BATCH_SIZE), "--device", "cpu", "--output_path", str(out), "--log_samples"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    by_task = {}
    for name in TASKS:
        samples = [json.loads(line) for line in next(out.rglob(f"samples_ctkd_{name}_*.jsonl")).read_text().splitlines()]
        metrics = {key.removesuffix(",none"): value for key, value in results[f"ctkd_{name}"].items()
                   if key.endswith(",none") and "_stderr" not in key}
        prompts = {s["doc"]["id"]: s["arguments"]["gen_args_0"]["arg_0"] for s in samples}
        predictions = {s["doc"]["id"]: clean_prediction(s["filtered_resps"][0]) for s in samples}
        by_task[name] = (metrics, prompts, predictions)
    return by_task


@pytest.mark.slow
@pytest.mark.skipif(DATA_DIR is None, reason="task data not found (set CTKD_DATA_DIR or provide ../shared/data)")
def test_ours_and_lm_eval_agree_on_a_saved_tiny_student(tmp_path: Path) -> None:
    student = save_random_student(tmp_path / "student")
    export_lm_eval(tmp_path / "tasks", TASKS, DATA_DIR, LmEvalSettings(FORMAT, limit_eval=N_EXAMPLES))
    lm_eval_side = theirs(student, tmp_path / "tasks", tmp_path / "lm_eval_out")
    for name in TASKS:
        our_metrics, our_prompts, our_predictions = ours(student, name)
        their_metrics, their_prompts, their_predictions = lm_eval_side[name]
        assert their_prompts.keys() == our_prompts.keys() and len(our_prompts) == N_EXAMPLES
        assert their_prompts == our_prompts, f"{name}: lm-eval was given other prompts than our evaluator"
        assert len(set(our_predictions.values())) > N_EXAMPLES // 2, "the student must answer prompts differently"
        differing = [(i, our_predictions[i], their_predictions[i]) for i in our_predictions
                     if our_predictions[i] != their_predictions[i]]
        listing = "\n".join(f"  {i}: ours {a!r} | lm-eval {b!r}" for i, a, b in differing)
        assert 1 - len(differing) / N_EXAMPLES >= MIN_SAME_SHARE, f"{name}: {len(differing)} predictions differ:\n{listing}"
        assert their_metrics.keys() == our_metrics.keys()
        gaps = {key: abs(our_metrics[key] - their_metrics[key]) for key in our_metrics}
        assert max(gaps.values()) <= MAX_SCORE_GAP, (
            f"{name}: scores differ by more than {MAX_SCORE_GAP}: ours {our_metrics}, lm-eval {their_metrics}\n{listing}")
