"""Bad input, class by class, through the real command line: exit code 2, one line on stderr naming the bad value,
no traceback, nothing on stdout, and nothing written: the prepared output directory and every other file of the
workspace are byte-identical afterwards.

Each case is ``run_bench.py`` run as ``__main__`` in a process of its own, forked after the heavy imports were
made once (``fork_cli.py``): the same code path as ``python run_bench.py ...`` at a fraction of the start-up cost.
Run cases are real runs, not dry runs (a case whose checks let it through would train and write, and fail here).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmark.core.paths import default_data_dir
from benchmark.store import STORE_FORMAT, CellKey, Store, config_hash
from methods.registry import load_methods

REPO = Path(__file__).resolve().parents[3]
DATA = default_data_dir()
pytestmark = pytest.mark.skipif(DATA is None,
                                reason="task data not found (set CTKD_DATA_DIR or provide ../shared/data)")
TINY = "tiny-qwen2-to-gpt2"
# What a run case adds before its own arguments (the last occurrence of a flag wins): a small grid on PubMedQA
# (the fastest task to parse) that writes into the prepared store.
RUN_BASE = ["--pairs", TINY, "--tasks", "pubmedqa", "--methods", "sft", "--limit-train", "2", "--limit-eval", "2",
            "--max-new-tokens", "2", "--output", "{out}"]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # ``{name}`` placeholders name files of the workspace
    expected: str  # a part of the one stderr line (placeholders too)
    command: str = "run"  # "run": RUN_BASE goes first; else the subcommand, given as is


def run(id: str, *argv: str, expected: str) -> Case:
    return Case(id, argv, expected)


def sub(id: str, *argv: str, expected: str) -> Case:
    return Case(id, argv, expected, command=argv[0])


INT_MAX = 2**31 - 1
CASES = [
    # -- names ----------------------------------------------------------------------------------------------------
    run("methods-empty", "--methods", "", expected="--methods '': expected method names, 'all', or 'none'"),
    run("methods-only-commas", "--methods", ",,", expected="--methods ',,': expected method names"),
    run("methods-typo", "--methods", "mlto", expected="--methods: unknown method 'mlto'; registered: {methods}; did "
                                                      "you mean 'mlot'?"),
    run("methods-unicode", "--methods", "mlöt", expected="--methods: unknown method 'mlöt'; registered: {methods}"),
    run("methods-not-utf8", "--methods", "\udcff", expected="--methods: unknown method '\\udcff'"),  # byte 0xff
    run("methods-none-and-more", "--methods", "none", "sft",
        expected="--methods 'none sft': 'none' (the reference rows only) cannot be combined with method names"),
    run("methods-same-tokenizer-only", "--methods", "kl",
        expected="--methods kl: needs a pair whose teacher and student share one tokenizer; none of --pairs "
                 "tiny-qwen2-to-gpt2 does"),
    run("pairs-empty", "--pairs", "", expected="--pairs '': expected pair names or 'all'"),
    run("pairs-unknown", "--pairs", "tiny-qwen2-to-gtp2", expected="did you mean 'tiny-qwen2-to-gpt2'?"),
    run("tasks-empty", "--tasks", "", expected="--tasks '': expected task names or 'all'"),
    run("tasks-comma-typo", "--tasks", "qed,squadd", expected="--tasks: unknown task 'squadd'; registered: "),
    run("tasks-unicode", "--tasks", "qéd", expected="--tasks: unknown task 'qéd'"),
    run("tasks-no-value", "--tasks", expected="argument --tasks: expected at least one argument"),
    run("unknown-flag", "--nope", expected="unrecognized arguments: --nope"),
    sub("unknown-command", "lss", expected="unrecognized arguments: lss"),
    run("abbreviated-flag", "--learning-rat", "1", expected="unrecognized arguments: --learning-rat 1"),
    # -- numbers --------------------------------------------------------------------------------------------------
    run("seed-negative", "--seeds", "-1", expected="--seeds -1: expected an integer >= 0 and <= 4294967295"),
    run("seed-huge", "--seeds", "1", "99999999999999999999", expected="--seeds 99999999999999999999: expected an"),
    run("seed-not-int", "--seeds", "1.5", expected="argument --seeds: invalid int value: '1.5'"),
    run("limit-eval-zero", "--limit-eval", "0", expected=f"--limit-eval 0: expected an integer > 0 and <= {INT_MAX}"),
    run("limit-eval-negative", "--limit-eval", "-3", expected="--limit-eval -3: expected an integer > 0"),
    run("limit-train-huge", "--limit-train", str(10**20), expected=f"--limit-train {10**20}: expected an integer > 0"),
    run("lr-negative", "--lr", "-1", expected="--learning-rate -1.0: expected a finite number > 0"),
    run("epochs-not-a-number", "--epochs", "x", expected="argument --epochs: invalid float value: 'x'"),
    run("lr-nan", "--lr", "nan", expected="--learning-rate nan: expected a finite number > 0"),
    run("lr-inf", "--lr", "inf", expected="--learning-rate inf: expected a finite number > 0"),
    run("weight-decay-minus-inf", "--weight-decay=-inf", expected="--weight-decay -inf: expected a finite number >= 0"),
    run("negative-looks-like-a-flag", "--weight-decay", "-inf", expected="argument --weight_decay/--weight-decay: "
                                                                         "expected one argument"),
    run("epochs-huge", "--epochs", "1e9", expected="--epochs 1000000000.0: expected a finite number > 0 and <= 1000"),
    run("warmup-ratio-one", "--warmup-ratio", "1", expected="--warmup-ratio 1.0: expected a finite number in [0, 1)"),
    run("batch-size-zero", "--batch-size", "0", expected="--batch-size 0: expected an integer > 0"),
    run("max-new-tokens-empty", "--max-new-tokens", "", expected="argument --max_new_tokens/--max-new-tokens: "
                                                                  "invalid int value: ''"),
    run("topk-below-method-need", "--methods", "mlot", "--topk", "10",
        expected="--topk 10: method 'mlot' reads the teacher's top-100; expected --topk >= 100"),
    run("student-shots-over-train-split", "--student-shots", "501",
        expected="--student-shots 501: expected at most 500, the examples of the pubmedqa train split"),
    run("teacher-shots-negative", "--teacher-shots", "-1", expected="--teacher-shots -1: expected an integer >= 0"),
    run("workers-zero", "--workers", "0", expected="--workers 0: expected an integer > 0"),
    *([run("log-with-tensorboard-not-installed", "--log-with", "tensorboard",
           expected="--log-with tensorboard: the tensorboard package is not installed; install the extra: pip "
                    "install 'ctkd-bench[tensorboard]'")] if importlib.util.find_spec("tensorboard") is None else []),
    run("log-with-unknown", "--log-with", "wandb", expected="--log-with"),
    run("workers-without-gpus-executor", "--workers", "2", expected="--workers 2: more than one worker needs "
                                                                    "--executor gpus"),
    run("workers-over-cores", "--executor", "gpus", "--workers", "100000",
        expected="--workers 100000: expected at most"),
    run("gpus-executor-without-gpus", "--executor", "gpus",
        expected="--executor gpus: no CUDA device is visible; pass --workers N to run N workers on the CPU"),
    run("budget-empty", "--budget", "", expected="--budget '': accepted: smoke, small, reference, paper"),
    run("budget-unknown", "--budget", "huge", expected="--budget 'huge': accepted: smoke, small, reference, paper"),
    run("teacher-prep-choice", "--teacher-prep", "magic", expected="invalid choice: 'magic'"),
    run("executor-choice", "--executor", "moon", expected="invalid choice: 'moon'"),
    # -- --set ----------------------------------------------------------------------------------------------------
    run("set-method-not-a-float", "--set", "mlot.alpha=abc",
        expected="--set mlot.alpha=abc: argument --alpha: invalid float value: 'abc'"),
    run("set-method-nan", "--set", "mlot.alpha=nan", expected="--set mlot.alpha=nan: expected a finite number"),
    run("set-method-huge-int", "--set", "mlot.sinkhorn_iterations=99999999999",
        expected=f"--set mlot.sinkhorn_iterations=99999999999: expected a finite number of magnitude at most "
                 f"{INT_MAX}"),
    run("set-method-declared-check", "--set", "mlot.k=0",
        expected=f"--set mlot.k=0: expected an integer > 0 and <= {INT_MAX}"),
    run("set-method-own-check", "--set", "mlot.k=200", expected="--set mlot.k=200: expected an integer <= teacher_k (100)"),
    run("set-method-choice", "--set", "mlot.alignment=bogus",
        expected="--set mlot.alignment=bogus: argument --alignment: invalid choice: 'bogus' (choose from "
                 "'positional', 'offsets')"),
    run("set-method-unknown-field", "--set", "mlot.nope=1", expected="--set mlot.nope=1: unknown field 'nope' of "
                                                                     "method mlot; accepted: k, teacher_k, alpha"),
    run("set-method-topk", "--methods", "mlot", "--set", "mlot.teacher_k=1000",
        expected="--topk 100: method 'mlot' reads the teacher's top-1000; expected --topk >= 1000"),
    run("set-method-without-fields", "--set", "sft.lr=1",
        expected="--set sft.lr=1: unknown field 'lr' of method sft; accepted: (none)"),
    run("set-section-zero", "--set", "train.epochs=0", expected="--set train.epochs=0.0: expected a finite number > 0"),
    run("set-section-not-a-float", "--set", "train.lr=abc",
        expected="--set train.lr=abc: argument --learning_rate/--learning-rate/--lr: invalid float value: 'abc'"),
    run("set-section-inf", "--set", "train.lr=inf", expected="--set train.learning_rate=inf: expected a finite number"),
    run("set-section-unknown-field", "--set", "train.nope=1",
        expected="--set train.nope=1: unknown field 'nope' of section train"),
    run("set-section-choice", "--set", "train.schedule=bogus", expected="argument --schedule: invalid choice: 'bogus'"),
    run("set-unknown-owner", "--set", "nope.x=1", expected="--set 'nope.x=1': 'nope' is neither a section (data, "
                                                           "eval, prompt, teacher, train) nor a registered method"),
    run("set-owner-case", "--set", "MLOT.alpha=1", expected="'MLOT' is neither a section"),
    run("set-no-value", "--set", "train.lr", expected="--set 'train.lr': expected PATH=VALUE"),
    run("set-empty", "--set", "", expected="--set '': expected PATH=VALUE"),
    run("set-empty-value", "--set", "data.limit_eval=", expected="invalid int value: ''"),
    # -- --pair and --pairs-file: checked before any model loads ----------------------------------------------------
    run("pair-missing-folder", "--pair", "mine={root}/nowhere,{model}",
        expected="'{root}/nowhere': no such folder or .gguf file, and not a hub id (owner/name)"),
    run("pair-not-a-model-folder", "--pair", "mine={empty},{model}",
        expected="folder '{empty}' is not a Hugging Face model folder (no config.json)"),
    run("pair-unknown-format", "--pair", "mine={afile},{model}", expected="unknown model format '(no suffix)'"),
    run("pair-name-taken", "--pair", f"{TINY}={{model}},{{model}}", expected=f"pair name '{TINY}' is already taken"),
    run("pair-name-unusable", "--pair", "My Pair={model},{model}",
        expected="name 'My Pair' is not usable as a directory name"),
    run("pair-one-side", "--pair", "mine={model}", expected="expected NAME=TEACHER,STUDENT"),
    run("pair-bad-style", "--pair", "mine={model},org/name:chatty", expected="'org/name:chatty': no such folder"),
    run("pair-revision-of-a-folder", "--pair", "mine={model}@v1,{model}",
        expected="@v1: a revision applies to hub ids only"),
    run("pairs-file-format", "--pairs-file", "{afile}", expected="unknown format '(no suffix)'; accepted: .yaml"),
    run("pairs-file-bad-yaml", "--pairs-file", "{bad_yaml}", expected="not valid YAML"),
    run("pairs-file-bad-style", "--pairs-file", "{bad_style}", expected="prompt 'chatty': accepted: plain, chat"),
    # -- --include ------------------------------------------------------------------------------------------------
    run("include-missing", "--include", "{plugins}/missing.py",
        expected="--include '{plugins}/missing.py': expected an existing .py file"),
    run("include-empty", "--include", "", expected="--include '': expected an existing .py file"),
    run("include-not-py", "--include", "{plugins}/notes.txt", expected="expected an existing .py file"),
    run("include-directory", "--include", "{plugins}/folder.py", expected="expected an existing .py file"),
    run("include-syntax-error", "--include", "{plugins}/syntax.py",
        expected="--include '{plugins}/syntax.py', line 1: SyntaxError: "),
    run("include-spaces-unicode-path", "--include", "{plugins}/my plügin.py",
        expected="--include '{plugins}/my plügin.py', line 2: IndentationError: "),
    run("include-registers-nothing", "--include", "{plugins}/nothing.py",
        expected="--include '{plugins}/nothing.py' registers no method"),
    run("include-duplicate-name", "--include", "{plugins}/duplicate.py",
        expected="--include '{plugins}/duplicate.py': method name 'sft' is already registered; choose another name"),
    run("include-raises", "--include", "{plugins}/raises.py",
        expected="--include '{plugins}/raises.py' failed: RuntimeError: no GPU here"),
    run("include-missing-import", "--include", "{plugins}/imports.py",
        expected="failed: ModuleNotFoundError: No module named 'not_installed_anywhere'"),
    run("include-exits", "--include", "{plugins}/exits.py", expected="failed: SystemExit: 3"),
    run("include-unusable-name", "--include", "{plugins}/bad_name.py",
        expected="method 'My Method': expected a name of lowercase letters, digits"),
    run("include-reserved-name", "--include", "{plugins}/reserved.py",
        expected="method 'teacher': expected a name of lowercase letters"),
    run("include-not-a-method", "--include", "{plugins}/not_a_method.py",
        expected="expected a subclass of methods.base.Method"),
    run("include-class-attribute-needs", "--include", "{plugins}/old_needs.py",
        expected="method 'oldneeds': sets teacher_needs; expected a teacher_request() method returning a "
                 "methods.base.TeacherRequest"),
    # -- paths ----------------------------------------------------------------------------------------------------
    run("output-is-a-file", "--output", "{afile}",
        expected="--output '{afile}' is not a directory; expected a directory"),
    run("output-below-a-file", "--output", "{afile}/runs",
        expected="--output '{afile}/runs' cannot be created: '{afile}' is a file"),
    run("output-file-spaces-unicode", "--output", "{spaced}", expected="--output '{spaced}' is not a directory"),
    run("output-empty", "--output", "", expected="--output '': expected a directory path"),
    run("output-name-too-long", "--output", "{root}/" + "a" * 300,
        expected="a name of 300 bytes; expected names of at most 255 bytes (this file system's limit)"),
    run("output-read-only", "--output", "{read_only}/runs",
        expected="--output '{read_only}/runs': cannot write to '{read_only}'; expected a directory you can write to"),
    sub("leaderboard-out-read-only", "leaderboard", "--runs", "{out}", "--out", "{read_only}",
        expected="--out '{read_only}': cannot write to '{read_only}'"),
    run("cache-dir-is-a-file", "--cache-dir", "{afile}", expected="--cache-dir '{afile}' is not a directory"),
    run("cache-dir-empty", "--cache-dir", "", expected="--cache-dir '': expected a directory path"),
    run("data-dir-missing", "--data-dir", "{root}/nowhere", expected="--data-dir '{root}/nowhere' does not exist"),
    run("data-dir-is-a-file", "--data-dir", "{afile}", expected="--data-dir '{afile}' is not a directory"),
    run("data-dir-empty", "--data-dir", "", expected="--data-dir '': expected a directory path"),
    run("data-dir-without-the-task", "--data-dir", "{empty}", "--offline",
        expected="data not found in '{empty}': pubmedqa/ori_pqal.json"),
    run("output-of-a-newer-suite", "--output", "{newer}",
        expected="--output '{newer}' holds cells written by a newer version of the suite (1, e.g. "
                 f"pubmedqa/tiny-qwen2-to-gpt2/sft/seed1; this version writes store format {STORE_FORMAT})"),
    # -- the data of the selected tasks: checked against its release (sha256) before it is parsed ----------------
    run("data-missing-field", "--tasks", "qed", "--data-dir", "{data_field}",
        expected="data differs from its release: qed/qed-dev.jsonlines has "),
    run("data-invalid-json", "--tasks", "qed", "--data-dir", "{data_json}",
        expected="data differs from its release: qed/qed-dev.jsonlines has "),
    run("data-not-utf8", "--tasks", "qed", "--data-dir", "{data_utf8}",
        expected="data differs from its release: qed/qed-dev.jsonlines has "),
    run("data-empty-split", "--tasks", "qed", "--data-dir", "{data_empty}",
        expected="data differs from its release: qed/qed-dev.jsonlines has 0 bytes"),
    run("data-duplicate-id", "--tasks", "qed", "--data-dir", "{data_duplicate}",
        expected="data differs from its release: qed/qed-dev.jsonlines has "),
    run("data-missing-file", "--tasks", "qed", "--data-dir", "{data_no_file}", "--offline",
        expected="data not found in '{data_no_file}': qed/qed-dev.jsonlines"),
    run("data-json-record-field", "--tasks", "pubmedqa", "--data-dir", "{data_pubmed}",
        expected="data differs from its release: pubmedqa/ori_pqal.json has "),
    # -- the other subcommands ------------------------------------------------------------------------------------
    sub("ls-unknown-kind", "ls", "models", expected="argument what: invalid choice: 'models'"),
    sub("ls-extra-argument", "ls", "methods", "extra", expected="unrecognized arguments: extra"),
    sub("ls-include-syntax-error", "ls", "methods", "--include", "{plugins}/syntax.py", expected="SyntaxError"),
    sub("ls-cache-dir-is-a-file", "ls", "pairs", "--cache-dir", "{afile}", expected="--cache-dir '{afile}' is not a "
                                                                                    "directory"),
    sub("leaderboard-runs-missing", "leaderboard", "--runs", "{root}/nowhere",
        expected="--runs '{root}/nowhere' does not exist"),
    sub("leaderboard-runs-is-a-file", "leaderboard", "--runs", "{afile}", expected="--runs '{afile}' is not a "
                                                                                   "directory"),
    sub("leaderboard-runs-empty-string", "leaderboard", "--runs", "", expected="--runs '': expected a directory path"),
    sub("leaderboard-nothing-to-render", "leaderboard", "--runs", "{empty}", expected="no completed cells under"),
    sub("leaderboard-out-is-a-file", "leaderboard", "--runs", "{out}", "--out", "{afile}",
        expected="--out '{afile}' is not a directory"),
]


def _write_prepared_store(root: Path) -> None:
    """A result store with one finished cell, a skipped pair and a file of the user's."""
    key = CellKey("pubmedqa", TINY, "sft", 1)
    cell = Store(root).cell(key)
    config = {"cell": {"task": key.task, "pair": key.pair, "method": key.method, "seed": key.seed},
              "role": "student", "headline_metric": "rougeLsum", "note": "prepared"}
    digest = cell.start(config)
    cell.finish({"rougeLsum": 12.5}, [{"id": "1", "prediction": "p"}], {"config_hash": digest, "wall_time_s": 3.0})
    Store(root).record_skipped(["llama2-7b-chat-to-opt-350m"], {"llama2-7b-chat-to-opt-350m": "not reachable"})
    (root / "notes.txt").write_text("mine\n")


def _write_plugins(folder: Path) -> None:
    method = "from methods.baselines import SFT\nfrom methods.registry import METHODS\n\n\n"
    files = {
        "syntax.py": "def broken(:\n",
        "my plügin.py": "x = 1\n  y = 2\n",
        "nothing.py": "VALUE = 1\n",
        "duplicate.py": method + "@METHODS.register('sft')\nclass Again(SFT):\n    pass\n",
        "raises.py": "raise RuntimeError('no GPU here')\n",
        "imports.py": "import not_installed_anywhere\n",
        "exits.py": "import sys\nsys.exit(3)\n",
        "bad_name.py": method + "@METHODS.register('My Method')\nclass Mine(SFT):\n    pass\n",
        "reserved.py": method + "@METHODS.register('teacher')\nclass Mine(SFT):\n    pass\n",
        "not_a_method.py": "from methods.registry import METHODS\n\n\n@METHODS.register('plain')\n"
                           "class Plain:\n    pass\n",
        "old_needs.py": method + "@METHODS.register('oldneeds')\nclass Old(SFT):\n    teacher_needs = 'text'\n",
        "notes.txt": "not Python\n",
    }
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "folder.py").mkdir()


def _qed_copy(root: Path, test_lines: list[bytes] | None) -> Path:
    """A data folder whose QED test file holds ``test_lines`` (None: no test file); the train shards are the real
    ones."""
    from tasks.qed import TEST_FILE, TRAIN_DIR

    (root / "qed").mkdir(parents=True)
    (root / "qed" / TRAIN_DIR).symlink_to(DATA / "qed" / TRAIN_DIR)
    if test_lines is not None:
        (root / "qed" / TEST_FILE).write_bytes(b"".join(test_lines))
    return root


def _write_data(root: Path) -> dict[str, Path]:
    with open(DATA / "qed" / "qed-dev.jsonlines", "rb") as handle:
        lines = [handle.readline() for _ in range(3)]
    without_question = json.loads(lines[1])
    del without_question["question_text"]
    pubmed = {"1": {"CONTEXTS": ["a"], "QUESTION": "q?", "LONG_ANSWER": "yes."},
              "2": {"CONTEXTS": ["b"], "QUESTION": "q?"}}
    (root / "pubmed" / "pubmedqa").mkdir(parents=True)
    (root / "pubmed" / "pubmedqa" / "ori_pqal.json").write_text(json.dumps(pubmed))
    (root / "pubmed" / "pubmedqa" / "test_ground_truth.json").write_text(json.dumps({"1": "yes"}))
    return {
        "data_field": _qed_copy(root / "field", [lines[0], json.dumps(without_question).encode() + b"\n", lines[2]]),
        "data_json": _qed_copy(root / "json", [lines[0], lines[1], lines[2][: len(lines[2]) // 2] + b"\n"]),
        "data_utf8": _qed_copy(root / "utf8", [b"\xff" + lines[0], lines[1]]),
        "data_empty": _qed_copy(root / "empty", []),
        "data_duplicate": _qed_copy(root / "duplicate", [lines[0], lines[1], lines[0]]),
        "data_no_file": _qed_copy(root / "no_file", None),
        "data_pubmed": root / "pubmed",
    }


def _write_newer_store(root: Path) -> None:
    cell = Store(root).cell(CellKey("pubmedqa", TINY, "sft", 1))
    cell.dir.mkdir(parents=True)
    config = {"cell": {"task": "pubmedqa", "pair": TINY, "method": "sft", "seed": 1}}
    (cell.dir / "config.json").write_text(json.dumps({"format": STORE_FORMAT + 1, "hash": config_hash(config), "config": config}))
    (cell.dir / "DONE").write_text("")


def _write_pair_files(root: Path) -> dict[str, Path]:
    """A folder that looks like a model (config.json only: the checks never load it) and two bad pair files."""
    paths = {"model": root / "model", "bad_yaml": root / "bad.yaml", "bad_style": root / "style.toml"}
    paths["model"].mkdir()
    (paths["model"] / "config.json").write_text("{}")
    paths["bad_yaml"].write_text("pairs: [unclosed\n")
    paths["bad_style"].write_text('[pairs.mine]\nteacher = { model = "model", prompt = "chatty" }\nstudent = "model"\n')
    return paths


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Every file the cases name, under one watched folder. ``read_only`` is a folder no one may write to (a
    read-only tmpfs when running as root, whom permission bits do not stop); ``read_only_ok`` says if it could be
    made."""
    root = tmp_path_factory.mktemp("bad input") / "watched"
    root.mkdir()
    paths = {"root": root, "out": root / "out", "cwd": root / "cwd", "afile": root / "afile",
             "spaced": root / "my runs ü", "empty": root / "empty", "plugins": root / "plugins",
             "newer": root / "newer", "read_only": root / "read-only"}
    _write_prepared_store(paths["out"])
    for folder in ("cwd", "empty", "read_only"):
        paths[folder].mkdir()
    paths["afile"].write_text("a file\n")
    paths["spaced"].write_text("a file\n")
    _write_plugins(paths["plugins"])
    _write_newer_store(paths["newer"])
    paths |= _write_pair_files(root)
    paths |= _write_data(root / "data")
    mounted = _make_read_only(paths["read_only"])
    methods = ", ".join(sorted(load_methods().names()))  # the registered names an unknown method is answered with
    yield {name: str(path) for name, path in paths.items()} | {"read_only_ok": str(mounted), "methods": methods}
    if mounted and os.geteuid() == 0:
        subprocess.run(["umount", str(paths["read_only"])], check=False)
    paths["read_only"].chmod(0o755)


def _make_read_only(folder: Path) -> bool:
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(folder)], capture_output=True)
    return mount.returncode == 0


@pytest.fixture(scope="module")
def outcomes(workspace):
    """Each case's exit code, output and the workspace paths it changed, all cases in one batch."""
    cases = [case for case in CASES if case.id not in skipped(workspace)]
    batch = []
    for case in cases:
        argv = [*RUN_BASE, *case.argv] if case.command == "run" else list(case.argv)
        batch.append({"argv": [arg.format(**workspace) for arg in argv], "cwd": workspace["cwd"]})
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(REPO / "tests" / "support" / "fork_cli.py"), workspace["root"]],
                          input=json.dumps(batch), capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    return dict(zip((case.id for case in cases), json.loads(done.stdout)))


def skipped(workspace: dict[str, str]) -> dict[str, str]:
    """Cases this machine cannot pose, with the reason."""
    import torch

    reasons = {}
    if workspace["read_only_ok"] != "True":
        reasons |= dict.fromkeys(("output-read-only", "leaderboard-out-read-only"),
                                 "no read-only folder can be made here (root without mount)")
    if torch.cuda.is_available():
        reasons["gpus-executor-without-gpus"] = "a CUDA device is visible"
    return reasons


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_exit_code_2_and_writes_nothing(case, workspace, outcomes):
    if case.id in skipped(workspace):
        pytest.skip(skipped(workspace)[case.id])
    outcome = outcomes[case.id]
    lines = outcome["stderr"].splitlines()
    assert outcome["code"] == 2, outcome
    assert len(lines) == 1 and lines[0].startswith("run_bench.py: error: "), outcome["stderr"]
    assert case.expected.format(**workspace) in lines[0]
    assert "Traceback" not in outcome["stderr"] and outcome["stdout"] == ""
    assert outcome["changed"] == []


@pytest.mark.parametrize("copy, task, expected", [
    ("data_field", "qed", "task qed: {data_field}/qed/qed-dev.jsonlines, line 2: missing field 'question_text'"),
    ("data_json", "qed", "task qed: {data_json}/qed/qed-dev.jsonlines, line 3, column 734: invalid JSON"),
    ("data_utf8", "qed", "task qed: {data_utf8}/qed/qed-dev.jsonlines, line 1, column 1: not UTF-8 text"),
    ("data_empty", "qed", "task qed: its test split has no examples"),
    ("data_duplicate", "qed", "task qed: qed test: duplicate example id"),
    ("data_no_file", "qed", "task qed: data file not found: '{data_no_file}/qed/qed-dev.jsonlines'"),
    ("data_pubmed", "pubmedqa", "task pubmedqa: {data_pubmed}/pubmedqa/ori_pqal.json, record '2': missing field"),
])
def test_every_record_is_parsed_before_work(workspace, copy, task, expected):
    """Data that passes its checksum (or a third-party task's, which has none) is still parsed once before any
    model loads: a malformed record is one line naming the file, the line (or record) and the field."""
    from benchmark.cli.preflight import load_task_data
    from benchmark.config import UsageError, budget_settings

    with pytest.raises(UsageError) as caught:
        load_task_data([task], Path(workspace[copy]), budget_settings("smoke"))
    assert expected.format(**workspace) in str(caught.value) and "\n" not in str(caught.value)
