import pytest

from leaderboards.planning import plan

RUN = {"eval": {"n_examples": 4, "generation_wall_time_s": 8.0}}  # 2 s per evaluated example


def one_seed_store(store) -> None:
    """Paired differences 1, 3, 5, 7 on one seed: n * Var(mean) = 4/3 * 20 / 4 = 20/3 points²."""
    train = {"steps": 10, "wall_time_s": 20.0}  # 2 s/step: 20 s per trained cell
    store.cell("qed", "p", "sft", 1, {"f1": 50.0}, scores={"f1": [50.0] * 4}, train=train, run=RUN)
    store.cell("qed", "p", "mlot", 1, {"f1": 54.0}, scores={"f1": [51.0, 53.0, 55.0, 57.0]}, train=train, run=RUN)
    store.cell("qed", "p", "teacher", 0, {"f1": 70.0}, run={"eval": {"n_examples": 4, "generation_wall_time_s": 16.0}})


def test_plan_from_a_one_seed_store_by_hand(store) -> None:
    one_seed_store(store)
    text = plan(store.root, ["qed"], 2.0, test_sizes={"qed": 10})
    # (2 / 2.8016)^2 = 0.5096 >= (20/3) / n  ->  n = 14. Compute: sft and mlot 20 s + 14 * 2 s each, teacher 14 * 4 s.
    assert text.startswith("qed · p: to detect a difference of 2 points from sft (80 % power, α = 0.05, two-sided, "
                           "before Holm's correction)\n")
    assert "      1               14  2.5 min (the test split has 10)\n" in text
    assert "2, 3, 5, 10 seeds: unknown, the store has one seed per cell" in text
    assert "measured in " in text and ": 4 examples in 4 clusters, 1 seed;" in text
    assert "costs measured: training 20 s per trained cell on average (mlot 20 s, sft 20 s); generation 2.67 s" in text


def test_plan_with_seed_variance_by_hand(store) -> None:
    """Seed 2 adds 2 to every difference of seed 1: seed part 2 points², example part 20/3, no interaction, so
    Var = 2/k + (20/3)/n. For 2 points (Var <= 0.5096): 1-3 seeds can never get there; 5 seeds need 61 examples."""
    for seed, shift in ((1, 0.0), (2, 2.0)):
        store.cell("qed", "p", "sft", seed, {"f1": 50.0}, scores={"f1": [50.0] * 4})
        store.cell("qed", "p", "mlot", seed, {"f1": 54.0 + shift},
                   scores={"f1": [51.0 + shift, 53.0 + shift, 55.0 + shift, 57.0 + shift]})
    lines = plan(store.root, ["qed"], 2.0).splitlines()
    assert lines[3:8] == [
        "      1      unreachable  training-seed variance alone exceeds the target",
        "      2      unreachable  training-seed variance alone exceeds the target",
        "      3      unreachable  training-seed variance alone exceeds the target",
        "      5               61  unknown (mlot, sft: run.json records no training steps or generation time)",
        "     10               22  unknown (mlot, sft: run.json records no training steps or generation time)",
    ]


@pytest.mark.parametrize(("mde", "tasks", "message"), [
    (0.0, ["qed"], "--mde must be a positive number of points"),
    (float("nan"), ["qed"], "--mde must be a positive number"),
    (2.0, ["squad"], "has no complete cells of task 'squad' \\(it has: qed\\); run e.g. `python run_bench.py"),
    (2.0, [], "plan needs at least one task"),
])
def test_bad_input_is_a_one_line_value_error(store, mde, tasks, message) -> None:
    one_seed_store(store)
    with pytest.raises(ValueError, match=message) as error:
        plan(store.root, tasks, mde)
    assert "\n" not in str(error.value)


def test_a_store_without_what_the_plan_needs_says_so(store, tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist: plan measures spread and costs in one"):
        plan(tmp_path / "nowhere", ["qed"], 2.0)
    store.cell("qed", "p", "mlot", 1, {"f1": 50.0})
    with pytest.raises(ValueError, match="has no sft and trained method of task 'qed' on pair 'p'"):
        plan(store.root, ["qed"], 2.0)
    with pytest.raises(ValueError, match="has no cells of pair\\(s\\) q for task\\(s\\) qed"):
        plan(store.root, ["qed"], 2.0, pairs=["q"])
