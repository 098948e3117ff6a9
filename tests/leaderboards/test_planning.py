import math

import pytest
from scipy.stats import norm

from leaderboards.planning import plan
from leaderboards.stats import PairedSpread, detectable_difference

RUN = {"eval": {"n_examples": 4, "generation_wall_time_s": 8.0}}  # 2 s per evaluated example


def one_seed_store(store) -> None:
    """Paired differences 1, 3, 5, 7 on one seed: n * Var(mean) = 4/3 * 20 / 4 = 20/3 points²."""
    train = {"steps": 10, "wall_time_s": 20.0}  # 2 s/step: 20 s per trained cell
    store.cell("qed", "p", "sft", 1, {"f1": 50.0}, scores={"f1": [50.0] * 4}, train=train, run=RUN)
    store.cell("qed", "p", "mlot", 1, {"f1": 54.0}, scores={"f1": [51.0, 53.0, 55.0, 57.0]}, train=train, run=RUN)
    store.cell("qed", "p", "teacher", 0, {"f1": 70.0}, run={"eval": {"n_examples": 4, "generation_wall_time_s": 16.0}})


def test_plan_from_a_one_seed_store_by_hand(store) -> None:
    """Two comparisons (mlot, teacher): Holm's first step tests at 0.05/2. One seed measures E = 20/3 points² and
    no seed variance, so with k seeds the plan is the lower bound n >= E / (k (2 / z)²), z = z_0.9875 + z_0.8."""
    one_seed_store(store)
    text = plan(store.root, ["qed"], 2.0, test_sizes={"qed": 10})
    z = norm.ppf(1 - 0.025 / 2) + norm.ppf(0.8)
    needed = {k: math.ceil((20 / 3) / (k * (2 / z) ** 2)) for k in (2, 3, 5, 10)}
    assert needed == {2: 8, 3: 6, 5: 4, 10: 2}
    assert text.startswith("qed · p: to detect a difference of 2 points from sft (80 % power, paired test at "
                           "α = 0.05/2 = 0.025, Holm's first step over 2 comparisons, two-sided, t quantiles)\n")
    assert "  at one seed: a lower bound. One seed per cell cannot measure training-seed variance" in text
    assert "      1         no marks  one seed cannot tell a method from its seed's luck\n" in text
    # Compute for 2 seeds and 8 examples: sft and mlot 2 x (20 s + 8 * 2 s) each, teacher 8 * 4 s = 176 s.
    assert "      2              ≥ 8  2.9 min\n" in text
    assert "     10              ≥ 2  " in text
    assert "measured in " in text and ": 4 examples in 4 clusters, 1 seed;" in text
    assert "costs measured: training 20 s per trained cell on average (mlot 20 s, sft 20 s); generation 2.67 s" in text
    with pytest.raises(ValueError, match="--family must be a positive number of comparisons, got 0"):
        plan(store.root, ["qed"], 2.0, family=0)
    assert plan(store.root, ["qed"], 2.0, family=12).startswith(
        "qed · p: to detect a difference of 2 points from sft (80 % power, paired test at α = 0.05/12 = 0.0042, "
        "Holm's first step over 12 comparisons,")


def test_plan_with_seed_variance_by_hand(store) -> None:
    """Seed 2 adds 2 to every difference of seed 1: seed part 2 points², example part 20/3, no interaction. One
    comparison, α = 0.05. However many examples, the seed part alone needs 2/k points² tested on k - 1 degrees of
    freedom: at 2, 3 and 5 seeds 2 points is out of reach (16.3, 4.6 and 2.4 points with infinitely many
    examples); 10 seeds need the n at which the detectable difference falls to 2."""
    for seed, shift in ((1, 0.0), (2, 2.0)):
        store.cell("qed", "p", "sft", seed, {"f1": 50.0}, scores={"f1": [50.0] * 4})
        store.cell("qed", "p", "mlot", seed, {"f1": 54.0 + shift},
                   scores={"f1": [51.0 + shift, 53.0 + shift, 55.0 + shift, 57.0 + shift]})
    spread = PairedSpread(2.0, 20 / 3, 0.0)
    n = next(n for n in range(1, 1000) if detectable_difference(spread, n, 10, n, 0.05, 0.8) <= 2.0)
    assert n == 28 and detectable_difference(spread, 27, 10, 27, 0.05, 0.8) > 2.0
    lines = plan(store.root, ["qed"], 2.0).splitlines()
    assert lines[3:8] == [
        "      1         no marks  one seed cannot tell a method from its seed's luck",
        "      2      unreachable  training-seed variance alone exceeds the target",
        "      3      unreachable  training-seed variance alone exceeds the target",
        "      5      unreachable  training-seed variance alone exceeds the target",
        "     10               28  unknown (mlot, sft: run.json records no training steps or generation time)",
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
