"""``run_bench.py pair check`` (issue 26): one line per check with its figure, from the tokenizers and the models'
configs only; a padded head's rows are counted; an empty derived set fails naming the methods it rules out."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.models.loading import load_family_tokenizer
from methods.overlap import SpanRoundTrip
from methods.registry import load_methods
from methods.spans import ByteAlignedMethod
from tests.benchmark.cli.test_cli import needs_data

PADDING = 128


def weightless_folder(path: Path, extra_rows: int) -> Path:
    """A model folder holding the GPT-2 tokenizer and a config whose head has ``extra_rows`` more rows (no weights:
    the check reads none)."""
    tokenizer = load_family_tokenizer("gpt2")
    tokenizer.save_pretrained(path)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": len(tokenizer) + extra_rows}))
    return path


@pytest.fixture(scope="module")
def padded_pair(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("pair-check")
    teacher, student = weightless_folder(root / "teacher", PADDING), weightless_folder(root / "student", 0)
    return ["--pair", f"padded-check={teacher},{student}", "--tasks", "qed", "--cache-dir", str(root / "cache")]


@needs_data
def test_the_check_prints_one_line_per_figure_and_counts_padded_rows(padded_pair, capsys):
    assert main(["pair", "check", "padded-check", *padded_pair]) == 0
    lines = capsys.readouterr().out.splitlines()
    checks = {line[6:32].strip(): line[32:].strip() for line in lines[1:-1]}
    assert [line[:4] for line in lines[1:-1]] == ["ok  "] * len(checks)
    assert checks["teacher head"] == ("50,257 tokens, 50,385 output rows, 128 rows without a token string (left out "
                                      "of string-based alignment)")
    assert checks["student head"] == "50,257 tokens, 50,257 output rows"
    assert checks["student roles"] == "eos '<|endoftext|>' (50256) · bos '<|endoftext|>' (50256) · pad '<|endoftext|>' (50256)"
    assert checks["vocabulary overlap"].startswith("O_V 1.000 · Jaccard 1.000")
    assert checks["MinED vocabulary map"] == "50,257 of 50,257 teacher ids mapped, 100.0% to the same text"
    assert checks["qed text overlap"].startswith("O_T 1.000 ")
    assert checks["qed byte spans"].startswith("round-trip on 2,000/2,000 answers (student), 2,000/2,000 (teacher)")
    assert lines[-1] == f"{len(checks)} checks passed"


@needs_data
def test_an_empty_derived_set_fails_naming_the_methods_it_rules_out(padded_pair, capsys, monkeypatch):
    monkeypatch.setattr("benchmark.run.pair_check.cached_span_round_trip",
                        lambda *args: SpanRoundTrip(student=0, teacher=7, answers=7))
    assert main(["pair", "check", "padded-check", *padded_pair]) == 1
    out = capsys.readouterr().out
    methods = load_methods()
    byte_aligned = [name for name in methods.names() if isinstance(methods.get(name)(), ByteAlignedMethod)]
    assert byte_aligned and "mined" not in byte_aligned
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    expected = (f"FAIL  {'qed byte spans':<24}  round-trip on 0/7 answers (student), 7/7 (teacher); rules out: "
                f"{', '.join(byte_aligned)}")
    assert failed == [expected]
    assert out.splitlines()[-1].endswith("checks, 1 failed")


def test_an_unknown_pair_is_one_line(capsys):
    assert main(["pair", "check", "no-such-pair"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("run_bench.py: error: pair check: unknown pair 'no-such-pair'") and err.count("\n") == 1


@needs_data
def test_a_run_stops_before_its_first_cell_when_the_check_rules_out_one_of_its_methods(padded_pair, capsys,
                                                                                      monkeypatch, tmp_path):
    monkeypatch.setattr("benchmark.run.pair_check.cached_span_round_trip",
                        lambda *args: SpanRoundTrip(student=0, teacher=7, answers=7))
    argv = [*padded_pair, "--pairs", "padded-check", "--limit-eval", "2", "--output", str(tmp_path / "runs")]
    assert main([*argv, "--methods", "sft", "gold"]) == 2
    err = capsys.readouterr().err
    assert err == ("run_bench.py: error: pair padded-check: qed byte spans failed (round-trip on 0/7 answers "
                   "(student), 7/7 (teacher)), which rules out gold; see `run_bench.py pair check padded-check`\n")
    assert not (tmp_path / "runs" / "qed").exists()
