import math

import pandas as pd

import leaderboards


def test_load_gives_one_row_per_cell_and_metric(store) -> None:
    store.cell("qed", "p", "mlot", 2, {"f1": 52.0, "exact_match": 40.0}, config_hash="m2", wall_time_s=12.0,
               train={"steps": 4, "wall_time_s": 2.0}, peak_memory_mb=512.0)
    store.cell("qed", "p", "sft", 1, {"f1": 50.0, "exact_match": 41.0}, config_hash="s1")
    store.cell("qed", "p", "teacher", 0, {"f1": 70.0, "exact_match": 60.0})
    store.cell("qed", "p", "uld", 1, {"f1": 99.0}, done=False)  # unfinished: not a result
    frame = leaderboards.load(store.root)
    assert list(frame.columns) == ["task", "pair", "method", "seed", "metric", "value", "headline", "config_hash",
                                   "wall_time_s", "train_s_per_step", "peak_memory_mb"]
    assert frame[["method", "metric"]].values.tolist() == [
        ["teacher", "exact_match"], ["teacher", "f1"], ["sft", "exact_match"], ["sft", "f1"],
        ["mlot", "exact_match"], ["mlot", "f1"],
    ]
    mlot_f1 = frame[(frame.method == "mlot") & frame.headline].iloc[0]
    assert (mlot_f1.seed, mlot_f1.value, mlot_f1.config_hash) == (2, 52.0, "m2")
    assert (mlot_f1.wall_time_s, mlot_f1.train_s_per_step, mlot_f1.peak_memory_mb) == (12.0, 0.5, 512.0)
    assert math.isnan(frame[frame.method == "sft"].wall_time_s.iloc[0])
    assert frame.headline.sum() == 3 and frame.dtypes["seed"] == "int64"
    means = frame[frame.headline].groupby("method")["value"].mean()  # the docstring's example
    assert isinstance(means, pd.Series) and means["sft"] == 50.0
