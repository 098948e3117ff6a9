"""Time ``render_leaderboards`` on a synthetic store of 1,000 cells × 200 evaluation examples (target: < 30 s on
2 cores), and the page it writes in headless Chromium.

The store is written in a temporary directory in the runner's exact on-disk format: 5 tasks (their real names
and metrics) × 4 pairs × 50 cells (teacher, untrained, and 16 methods × 3 seeds), FairytaleQA examples in stories
of 8 and SQuAD examples in articles of 20, the others alone; each prediction carries a question and a context,
each trained cell a training log of 100 steps. Prints the time of the full render (all files), of the statistics
alone and the page's size; with Chromium on PATH, how long the page's scripts take at load and how long the
example browser takes to show another method and a filter (the page is responsive when these are well under a
second).

Usage: python -m perf.render_leaderboard [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmark.store import CellKey, Store, scan_store
from leaderboards import render_leaderboards
from leaderboards.analysis import analyze

TASKS = {  # task -> (headline, metrics, examples per cluster)
    "qed": ("f1", ("f1", "exact_match"), 1),
    "squad": ("f1", ("f1", "exact_match"), 20),
    "fairytaleqa": ("rougeLsum", ("rouge1", "rouge2", "rougeL", "rougeLsum"), 8),
    "pubmedqa": ("rougeLsum", ("rouge1", "rouge2", "rougeL", "rougeLsum"), 1),
    "dialogsum": ("rougeLsum", ("rouge1", "rouge2", "rougeL", "rougeLsum"), 1),
}
PAIRS = tuple(f"pair-{i}" for i in range(4))
METHODS = ("sft", *(f"method-{i:02d}" for i in range(15)))
SEEDS = (1, 2, 3)
EXAMPLES = 200
STEPS = 100
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Run after the page's own scripts: the time they took at load, then a method change and a filter in the browser.
PROBE = """<script>
(function () {
  var loaded = performance.now(), box = document.querySelector("div.browser");
  function choose(select, value) { select.value = value; select.dispatchEvent(new Event("change")); }
  var started = performance.now();
  choose(box.querySelector(".b-method"), box.querySelector(".b-method").options[5].value);
  var method = performance.now() - started;
  started = performance.now();
  choose(box.querySelector(".b-filter"), "differs");
  var filter = performance.now() - started;
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({loaded: loaded, method: method, filter: filter});
  document.body.appendChild(pre);
})();
</script>"""


def write_store(root: Path) -> int:
    store, rng = Store(root), np.random.default_rng(0)
    cells = 0
    for task, (headline, metrics, cluster_size) in TASKS.items():
        for pair in PAIRS:
            difficulty = rng.uniform(0, 100, EXAMPLES)
            grid = [("teacher", 0), ("untrained", 0)] + [(m, s) for m in METHODS for s in SEEDS]
            for method, seed in grid:
                shift = rng.normal(0, 3)
                scores = {m: np.clip(difficulty + shift + rng.normal(0, 15, EXAMPLES), 0, 100) for m in metrics}
                write_cell(store, task, pair, method, seed, headline, scores, cluster_size)
                cells += 1
    return cells


def write_cell(store: Store, task: str, pair: str, method: str, seed: int, headline: str,
               scores: dict[str, np.ndarray], cluster_size: int) -> None:
    """One finished cell, written through the store as a run writes it (format, config hash, run.json's hash)."""
    role = "teacher" if method == "teacher" else "student"
    cell = store.cell(CellKey(task, pair, method, seed))
    config = {"cell": {"task": task, "pair": pair, "method": method, "seed": seed}, "headline_metric": headline,
              "role": role}
    digest = cell.start(config)
    predictions = [{"id": f"ex{i}", "cluster": f"ex{i - i % cluster_size}", "prediction": f"p{i % 7}",
                    "references": ["r"], **{m: float(v[i]) for m, v in scores.items()},
                    "question": f"question {i}?", "context": f"context {i} " * 40} for i in range(EXAMPLES)]
    trains = method not in ("teacher", "untrained")
    if trains:
        cell.train_log.write_text("".join(
            json.dumps({"step": s, "loss": 3 / s ** 0.3, "ce": 2.5 / s ** 0.2, "kd": 0.5 / s ** 0.5,
                        "grad_norm": 1 + 1 / s, "lr": 1e-4 * (1 - s / STEPS), "answer_tokens": 40, "elapsed_s": s}) + "\n"
            for s in range(1, STEPS + 1)), encoding="utf-8")
    run = {"config_hash": digest, "wall_time_s": 60.0, "peak_memory_mb": 2048.0,
           "eval": {"n_examples": EXAMPLES, "generation_wall_time_s": 20.0},
           **({"train": {"steps": 100, "wall_time_s": 30.0, "resumed_from_step": 0}} if trains else {})}
    cell.finish({m: float(v.mean()) for m, v in scores.items()}, predictions, run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the store here (must not exist) and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary:
        root = args.keep or Path(temporary) / "runs"
        cells = write_store(root)
        started = time.perf_counter()
        analyze(scan_store(root))
        statistics_s = time.perf_counter() - started
        started = time.perf_counter()
        written = render_leaderboards(root)
        render_s = time.perf_counter() - started
        page = written["leaderboard.html"]
        print(f"{cells} cells × {EXAMPLES} examples: statistics {statistics_s:.1f} s; full render of "
              f"{len(written)} files {render_s:.1f} s (target < 30 s on 2 cores); leaderboard.html "
              f"{page.stat().st_size / 1e6:.1f} MB")
        print(_in_browser(page, Path(temporary)))
    return 0


def _in_browser(page: Path, scratch: Path) -> str:
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    if browser is None:
        return "no Chromium on PATH: page not timed"
    probed = scratch / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    started = time.perf_counter()
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={scratch / 'profile'}", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    wall = time.perf_counter() - started
    timings = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1).replace("&quot;", '"'))
    return (f"headless Chromium: page scripts done {timings['loaded'] / 1000:.1f} s after navigation start "
            f"(whole browser run {wall:.1f} s); another method {timings['method']:.0f} ms; filter "
            f"{timings['filter']:.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
