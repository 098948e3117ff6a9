import json

import pytest

from benchmark.store import DamagedCell, StoreError, scan_store


def test_only_cells_with_done_are_scored(store) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    store.cell("qed", "p", "mlot", 2, {"f1": 99.0}, done=False)  # in progress: no DONE, no FAILED.json
    scan = scan_store(store.root)
    assert [(c.method, c.seed, c.metrics) for c in scan.cells] == [("mlot", 1, {"f1": 50.0})]
    assert scan.failed == ()


def test_record_fields(store) -> None:
    store.cell("qed", "p", "teacher", 1, {"f1": 61.2, "exact_match": 50.0}, wall_time_s=12.5, config_hash="abc")
    (cell,) = scan_store(store.root).cells
    assert (cell.task, cell.pair, cell.method, cell.seed) == ("qed", "p", "teacher", 1)
    assert (cell.config_hash, cell.headline_metric, cell.wall_time_s) == ("abc", "f1", 12.5)
    assert cell.metrics == {"exact_match": 50.0, "f1": 61.2}
    assert (cell.train_s_per_step, cell.peak_memory_mb) == (None, None)  # a reference cell does not train


def test_costs_of_a_resumed_cell_count_only_the_steps_it_ran(store) -> None:
    # 10 steps in all, 6 from a checkpoint: the 3.0 s of this run's training were spent on 4 steps.
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0}, wall_time_s=40.0, peak_memory_mb=2048.0,
               train={"steps": 10, "resumed_from_step": 6, "wall_time_s": 3.0})
    (cell,) = scan_store(store.root).cells
    assert (cell.wall_time_s, cell.train_s_per_step, cell.peak_memory_mb) == (40.0, 0.75, 2048.0)


def test_failed_cells_carry_their_one_line_reason(store) -> None:
    store.failed("qed", "p", "uld", 2, "CUDA out of memory\nsecond line")
    failed_dir = store.failed("qed", "p", "uld", 3, "ignored")
    (failed_dir / "FAILED.json").write_text("{not json")
    scan = scan_store(store.root)
    assert [(f.method, f.seed, f.reason) for f in scan.failed] == [
        ("uld", 2, "CUDA out of memory"),
        ("uld", 3, "(unreadable FAILED.json)"),
    ]


def test_done_wins_over_a_stale_failure(store) -> None:
    cell_dir = store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    (cell_dir / "FAILED.json").write_text(json.dumps({"error": "earlier attempt"}))
    scan = scan_store(store.root)
    assert len(scan.cells) == 1 and scan.failed == ()


def test_seeds_sort_numerically_and_non_cells_are_ignored(store) -> None:
    for seed in (10, 2):
        store.cell("qed", "p", "mlot", seed, {"f1": float(seed)})
    (store.root / "qed" / "p" / "mlot" / "checkpoints").mkdir()
    (store.root / ".cache" / "x" / "y" / "seed1").mkdir(parents=True)
    (store.root / "leaderboard.md").write_text("old")
    assert [c.seed for c in scan_store(store.root).cells] == [2, 10]


def test_skipped_pairs_are_read(store) -> None:
    store.skipped([{"pair": "llama2-7b-chat-opt-350m", "reason": "weights not reachable offline"}])
    (skipped,) = scan_store(store.root).skipped
    assert (skipped.pair, skipped.reason) == ("llama2-7b-chat-opt-350m", "weights not reachable offline")


def test_config_that_contradicts_its_directory_is_a_damaged_cell(store) -> None:
    cell_dir = store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    store.cell("qed", "p", "sft", 1, {"f1": 40.0})
    config = json.loads((cell_dir / "config.json").read_text())
    config["config"]["seed"] = 2
    (cell_dir / "config.json").write_text(json.dumps(config))
    scan = scan_store(store.root)
    assert [c.method for c in scan.cells] == ["sft"]
    assert scan.damaged == (DamagedCell("qed/p/mlot/seed1", "config.json: config seed 2 does not match its directory "
                                                            "(1)"),)


def test_unmeasured_headline_metric_is_a_damaged_cell(store) -> None:
    store.cell("dialogsum", "p", "mlot", 1, {"rouge1": 30.0}, headline="rougeL")
    scan = scan_store(store.root)
    assert scan.cells == () and "headline metric 'rougeL' is not among metrics ['rouge1']" in scan.damaged[0].reason


def test_cells_naming_another_headline_metric_than_their_task_are_damaged(store) -> None:
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0, "exact_match": 40.0})
    store.cell("qed", "p", "uld", 1, {"f1": 50.0, "exact_match": 40.0})
    store.cell("qed", "p", "sft", 1, {"f1": 50.0, "exact_match": 40.0}, headline="exact_match")
    scan = scan_store(store.root)
    assert [c.method for c in scan.cells] == ["mlot", "uld"] and scan.headline_metrics == {"qed": "f1"}
    assert [(d.where, d.reason) for d in scan.damaged] == [
        ("qed/p/sft/seed1", "headline metric 'exact_match' differs from 'f1', the one the task's other cells name")]


def test_missing_or_torn_files_are_damaged_cells(store) -> None:
    (store.cell("qed", "p", "mlot", 1, {"f1": 50.0}) / "metrics.json").unlink()
    (store.cell("qed", "p", "mlot", 2, {"f1": 50.0}) / "metrics.json").write_text('{"f1": 5')
    store.skipped([{"pair": "x", "reason": "y"}])
    (store.root / "skipped_pairs.json").write_text("[{")
    scan = scan_store(store.root)
    assert scan.cells == () and scan.skipped == ()
    assert [(d.where, d.reason) for d in scan.damaged] == [
        ("qed/p/mlot/seed1", "metrics.json is missing"),
        ("qed/p/mlot/seed2", "metrics.json, line 1: invalid JSON (Expecting ',' delimiter)"),
        ("skipped_pairs.json", "skipped_pairs.json, line 1: invalid JSON (Expecting property name enclosed in "
                               "double quotes)"),
    ]


def test_missing_store_directory(tmp_path) -> None:
    with pytest.raises(StoreError, match="nowhere.*does not exist"):
        scan_store(tmp_path / "nowhere")


def test_each_pair_overlap_is_read_from_run_json(store) -> None:
    overlap = {"vocabulary": {"student_share": 0.84, "jaccard": 0.26}, "text": {"one_to_one_share": 0.8125}}
    store.cell("qed", "p", "teacher", 0, {"f1": 50.0}, run={"overlap": overlap})
    store.cell("qed", "p", "sft", 1, {"f1": 40.0}, run={"overlap": overlap})
    store.cell("qed", "q", "sft", 1, {"f1": 40.0}, wall_time_s=1.0)  # written before overlap was recorded
    store.cell("squad", "p", "sft", 1, {"f1": 30.0}, run={"overlap": {"vocabulary": {"student_share": 0.84}}})
    scan = scan_store(store.root)
    assert [(c.pair, c.vocabulary_overlap, c.text_overlap) for c in scan.cells if c.task == "qed"] == \
           [("p", 0.84, 0.8125), ("p", 0.84, 0.8125), ("q", None, None)]
    assert scan.overlaps("qed") == {"p": (0.84, 0.8125)}
    assert scan.overlaps("squad") == {"p": (0.84, None)}
