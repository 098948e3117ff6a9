"""End-to-end CLI tests on a tiny pair and real task files (skipped when ../shared/data is absent)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.core.paths import default_data_dir

REPO = Path(__file__).resolve().parents[3]
DATA = default_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="task data not found (set CTKD_DATA_DIR or provide ../shared/data)")
TINY = "tiny-qwen2-to-gpt2"
FAST = ["--pairs", TINY, "--tasks", "qed", "--limit-eval", "4", "--max-new-tokens", "6", "--eval-batch-size", "4",
        "--no-leaderboard"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "run_bench.py", *args], cwd=REPO, capture_output=True, text=True, env=env)


def test_ls_lists_every_registered_name_first(capsys, monkeypatch):
    from benchmark.cli.commands import ls

    from benchmark.models.pairs import PAIRS
    from methods.registry import load_methods

    # Measuring every reachable pair's overlap loads its tokenizers (a minute for Gemma's GGUF): tested on its own.
    monkeypatch.setattr(ls, "overlap_note", lambda pair, cache_dir: f"overlap of {pair.name}")

    assert main(["ls", "methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == load_methods().names()
    assert any(line.startswith("mlot\tteacher: topk_logits") for line in lines)
    assert main(["ls", "pairs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == PAIRS.names()
    assert any(line.startswith(TINY) and line.endswith(f"\treachable\toverlap of {TINY}") for line in lines)
    assert any("llama2-7b-chat" in line and "not reachable" in line
               and line.endswith("\toverlap: not measured (its tokenizers are not here)") for line in lines)
    assert main(["ls", "tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == ["dialogsum", "fairytaleqa", "pubmedqa", "qed", "squad"]
    assert any(line.startswith("qed\tmetric: f1\t") for line in lines)


@needs_data
def test_a_run_whose_every_pair_is_skipped_fails_with_the_reason(tmp_path, capsys):
    # A 7B pair's models are not on this machine: the pair is skipped, and with it everything the run asked for.
    pair = "llama2-7b-chat-to-opt-350m"
    args = ["--pairs", pair, *FAST[2:], "--methods", "sft", "--output", str(tmp_path)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert f"skipped pair {pair}: " in out and "nothing ran: every requested pair was skipped" in out
    assert not any(tmp_path.glob("qed/**/DONE"))


@needs_data
def test_dry_run_prints_the_grid(tmp_path, capsys):
    assert main(["--methods", "sft,uld", "--seeds", "1", "2", *FAST, "--output", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "todo  qed/tiny-qwen2-to-gpt2/teacher/seed0" in out
    assert "todo  qed/tiny-qwen2-to-gpt2/uld/seed2" in out
    assert "6 cells, 0 skipped pairs" in out
    assert not any(tmp_path.glob("qed/**/DONE"))
    # A dry run writes nothing, not even the result store's directory.
    assert main(["--methods", "sft", *FAST, "--output", str(tmp_path / "new store"), "--dry-run"]) == 0
    assert not (tmp_path / "new store").exists()


@needs_data
def test_failing_cell_is_recorded_and_the_grid_goes_on(tmp_path):
    plugin = tmp_path / "boom.py"
    plugin.write_text(
        "from methods.baselines import SFT\nfrom methods.registry import METHODS\n\n"
        "@METHODS.register('boom')\nclass Boom(SFT):\n    '''Always fails.'''\n    name = 'boom'\n\n"
        "    def loss(self, batch, student_logits, teacher, ce):\n        raise RuntimeError('boom at step one')\n"
    )
    out = tmp_path / "runs"
    args = ["--include", str(plugin), "--methods", "boom", "sft", "--limit-train", "4", "--batch-size", "2", *FAST,
            "--output", str(out)]
    result = run_cli(*args)
    assert result.returncode == 1, result.stderr
    failed = json.loads((out / "qed" / TINY / "boom" / "seed1" / "FAILED.json").read_text())
    assert failed["error"] == "RuntimeError: boom at step one"
    assert (out / "qed" / TINY / "sft" / "seed1" / "DONE").exists()
    assert "failed qed/tiny-qwen2-to-gpt2/boom/seed1: RuntimeError: boom at step one" in result.stdout
    # Every cell records the pair's overlap (methods-spec §19): the same for the reference and the trained cells.
    overlaps = [json.loads((out / "qed" / TINY / method / seed / "run.json").read_text())["overlap"]
                for method, seed in (("teacher", "seed0"), ("sft", "seed1"))]
    assert overlaps[0] == overlaps[1]
    assert overlaps[0]["vocabulary"]["student_share"] == pytest.approx(0.841, abs=5e-4)
    assert overlaps[0]["text"]["answers"] == 2000 and 0.8 < overlaps[0]["text"]["one_to_one_share"] < 0.9
    # The failure is rendered; finished cells are found complete on the next run.
    assert main(["leaderboard", "--runs", str(out)]) == 0
    markdown = (out / "leaderboard.md").read_text()
    assert "boom at step one" in markdown
    text_overlap = overlaps[0]["text"]["one_to_one_share"]
    assert f"- {TINY} overlap: O_V 0.84 · O_T {text_overlap:.2f} (O_V: share of the student's vocabulary" in markdown
    again = run_cli(*[a for a in args if a not in ("boom",)])
    assert again.returncode == 0 and "3 cached" in again.stdout


@needs_data
def test_killed_training_cell_resumes_to_identical_metrics(tmp_path):
    common = ["--methods", "sft", "--limit-train", "24", "--batch-size", "2", "--checkpoint-every", "1", *FAST]
    reference = run_cli(*common, "--output", str(tmp_path / "a"))
    assert reference.returncode == 0, reference.stderr
    cell = tmp_path / "b" / "qed" / TINY / "sft" / "seed1"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "run_bench.py", *common, "--output", str(tmp_path / "b")], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    log = cell / "train_log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 4):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps_before = log.read_text().count("\n")
    assert 4 <= steps_before < 12, "the kill must land mid-training"
    assert not (cell / "DONE").exists() and (cell / "checkpoint").exists()
    resumed = run_cli(*common, "--output", str(tmp_path / "b"))
    assert resumed.returncode == 0, resumed.stderr
    a_cell = tmp_path / "a" / "qed" / TINY / "sft" / "seed1"
    assert json.loads((cell / "metrics.json").read_text()) == json.loads((a_cell / "metrics.json").read_text())
    assert (cell / "predictions.jsonl").read_text() == (a_cell / "predictions.jsonl").read_text()
    run = json.loads((cell / "run.json").read_text())
    assert run["train"]["resumed_from_step"] >= 1
    # The resumed log reads like an uninterrupted one.
    losses = lambda path: [round(json.loads(l)["loss"], 6) for l in path.read_text().splitlines()]  # noqa: E731
    assert losses(log) == losses(a_cell / "train_log.jsonl")


def test_settings_resolve_budget_then_flags_then_overrides():
    """The run configuration tree: a field's default < the budget preset < its flag < ``--set``."""
    from benchmark.cli.commands.run import _SETTING_FIELDS

    from benchmark.cli.main import command_parser
    from benchmark.cli.resolve import resolve_run
    from benchmark.config import RunOptions

    parser, _ = command_parser("run")

    def resolve(*argv):
        values = vars(parser.parse_args(list(argv)))
        options = RunOptions(**{k: values[k] for k in RunOptions.__dataclass_fields__})
        return resolve_run(options, {path: values[name] for name, path in _SETTING_FIELDS.items() if name in values})

    smoke = resolve("--budget", "smoke").settings
    assert (smoke.train.learning_rate, smoke.train.epochs, smoke.data.limit_eval) == (1e-4, 1.0, 16)
    assert smoke.train.weight_decay == 0.1  # not in the preset: the published default
    flagged = resolve("--budget", "smoke", "--lr", "3e-4", "--limit-eval", "5").settings
    assert (flagged.train.learning_rate, flagged.data.limit_eval, flagged.data.limit_train) == (3e-4, 5, 16)
    overridden = resolve("--budget", "smoke", "--lr", "3e-4", "--set", "train.lr=5e-4", "--set", "mlot.alpha=1.5")
    assert overridden.settings.train.learning_rate == 5e-4
    assert overridden.method_configs["mlot"].alpha == 1.5
    assert overridden.method_configs["uld"].weight == 1.5  # untouched methods keep their defaults
    paper = resolve("--budget", "paper", "--methods", "none").settings
    assert (paper.train.learning_rate, paper.train.epochs, paper.eval.max_new_tokens) == (1e-6, 5.0, 150)


def test_a_new_setting_is_one_field(monkeypatch):
    """Adding a hyper-parameter is one field of a settings section: its flag, its ``--set`` path and its place in
    the cell's hash follow. Checked with a section subclass holding one extra field."""
    import dataclasses

    from benchmark import config
    from benchmark.cli.main import Parser

    @dataclasses.dataclass(frozen=True)
    class Train(config.TrainSettings):
        label_smoothing: float = config.setting(0.0, "label smoothing of the CE [suite]", check="non_negative")

    parser = Parser([Train])
    assert parser.parse_args(["--label-smoothing", "0.1"]).label_smoothing == 0.1
    assert config.hashed_fields(Train(label_smoothing=0.1))["label_smoothing"] == 0.1
    with pytest.raises(config.ConfigError, match="label_smoothing=-1"):
        Train(label_smoothing=-1)
