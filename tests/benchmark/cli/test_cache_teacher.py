"""``run_bench.py cache-teacher``: the teacher-output cache built ahead of the cells (optionally with the teacher
sharded), which the cells then train from; and the README's table of which teacher signal each method needs."""
import json
import re

import pytest
from safetensors.torch import load_file

from benchmark.cli.main import main
from benchmark.core.paths import REPO_ROOT
from benchmark.run.teacher import CACHED_SIGNALS
from tests.benchmark.cli.test_cli import TINY, needs_data

SELECT = ["--pairs", TINY, "--tasks", "qed", "--limit-train", "4", "--batch-size", "2", "--limit-eval", "2",
          "--max-new-tokens", "4", "--eval-batch-size", "2"]


def topk_entries(cache):
    return sorted(p for p in (cache / "teacher" / "topk").iterdir() if not p.name.startswith("."))  # not the locks


@needs_data
def test_cells_train_from_the_cache_built_ahead_of_them(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["cache-teacher", "--methods", "sft", "uld", "mined", *SELECT, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    [entry] = topk_entries(cache)
    assert f"qed/{TINY} sft: needs no teacher signal" in out
    assert f"qed/{TINY} uld: top-k logits cached for 4 examples: {entry} (" in out
    assert (f"qed/{TINY} mined: needs full_logits, which the cache does not hold (top-k logits and generated "
            "answers only): it runs the teacher live in training") in out
    manifest = entry / "manifest.json"
    built = manifest.stat().st_mtime_ns
    assert json.loads(manifest.read_text())["rows"] > 0

    assert main(["--methods", "uld", *SELECT, "--cells", f"qed/{TINY}/uld/seed1", "--cache-dir", str(cache),
                 "--output", str(tmp_path / "runs"), "--no-leaderboard"]) == 0
    assert (tmp_path / "runs" / "qed" / TINY / "uld" / "seed1" / "DONE").exists()
    assert topk_entries(cache) == [entry] and manifest.stat().st_mtime_ns == built  # found, not rebuilt


@needs_data
def test_a_sharded_teacher_writes_the_same_cache(tmp_path, capsys):
    """``--shard-teacher`` dispatches the teacher over the visible devices (here: the CPU only, so this checks the
    loading path, not a split over GPUs); its top-k rows are those of the teacher loaded whole."""
    for name, extra in (("whole", []), ("sharded", ["--shard-teacher"])):
        assert main(["cache-teacher", "--methods", "uld", *SELECT, "--cache-dir", str(tmp_path / name), *extra]) == 0
    [whole], [sharded] = topk_entries(tmp_path / "whole"), topk_entries(tmp_path / "sharded")
    assert whole.name == sharded.name  # one key: sharding is how the teacher is placed, not what it computes
    a, b = load_file(str(whole / "topk.safetensors")), load_file(str(sharded / "topk.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_cache_teacher_runs_here_only(capsys):
    assert main(["cache-teacher", "--executor", "slurm", "--methods", "uld", "--pairs", TINY]) == 2
    assert "--executor slurm: cache-teacher runs here, in one process" in capsys.readouterr().err


def test_readme_says_which_teacher_signal_each_method_needs_and_whether_the_cache_serves_it():
    """The README's table names every registered method once, and its "served by" column agrees with what the
    method (with its default config) declares: the top-k cache exactly for ``topk_logits``, the text cache for
    ``text``, a live teacher for the rest."""
    from methods.registry import load_methods

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Teacher signals"):readme.index("## Vocabulary overlap")]
    served: dict[str, str] = {}
    for names, _, source in re.findall(r"^\| ((?:`[\w-]+`(?:, )?)+) \| ([^|]*) \| ([^|]*) \|$", section, re.MULTILINE):
        for name in re.findall(r"`([\w-]+)`", names):
            assert name not in served, f"{name} appears twice"
            served[name] = source.strip()
    expected = {"topk_logits": "top-k cache", "text": "text cache", "none": "–"}
    methods = load_methods()
    assert sorted(served) == sorted(methods.names())
    for name in methods.names():
        needs = methods.get(name)().teacher_request().needs
        assert needs in CACHED_SIGNALS or needs in ("none", "full_logits", "hidden_states"), name
        assert served[name].startswith(expected.get(needs, "live")), (name, needs, served[name])
