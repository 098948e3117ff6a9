"""tasks.metrics: hand-computed F1/EM and ROUGE cases, edge cases, and agreement with torchmetrics' SQuAD."""
from __future__ import annotations

import random

import pytest
import torch
from torchmetrics.functional.text import squad as torchmetrics_squad

from tasks.metrics import (
    ROUGE_KEYS,
    exact_match,
    normalize_answer,
    rouge_scores,
    rouge_scores_one,
    squad_scores,
    squad_scores_one,
    token_f1,
)

approx = pytest.approx


# -- SQuAD normalisation, F1, EM ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("An apple, the BEST!", "apple best"),
        ("  The   Eiffel Tower. ", "eiffel tower"),
        ("another theme", "another theme"),  # articles only as whole words
        ("Eiffel-Tower", "eiffeltower"),  # punctuation is deleted, not replaced by a space
        ("the", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_token_f1_partial_overlap() -> None:
    # "cat sat on mat" vs "cat on mat today": 3 common tokens, P = R = 3/4.
    assert token_f1("the cat sat on the mat", "a cat on a mat today") == approx(0.75)
    # P = 2/2, R = 2/4 -> F1 = 2 * 1 * 0.5 / 1.5 = 2/3.
    assert token_f1("Barack Obama", "President Barack Hussein Obama") == approx(2 / 3)
    # Multiset overlap: "new" counts once. P = 2/3, R = 2/2 -> F1 = 0.8.
    assert token_f1("new new york", "New York") == approx(0.8)
    assert token_f1("Paris", "London") == 0.0


def test_exact_match_after_normalisation() -> None:
    assert exact_match("The Eiffel Tower.", "eiffel  tower") == 1.0
    assert exact_match("Eiffel-Tower", "eiffel tower") == 0.0
    assert token_f1("Eiffel-Tower", "eiffel tower") == 0.0


def test_squad_scores_one_takes_max_over_references() -> None:
    # vs "Broncos": P = 1/2, R = 1 -> 2/3; vs "Denver Broncos team": P = 1, R = 2/3 -> 0.8.
    scores = squad_scores_one("Denver Broncos", ["Broncos", "Denver Broncos team"])
    assert scores == {"f1": approx(80.0), "exact_match": 0.0}
    # EM takes its own max: the second reference matches exactly.
    assert squad_scores_one("Denver Broncos", ["Broncos", "the Denver Broncos"]) == {
        "f1": approx(100.0),
        "exact_match": 100.0,
    }


def test_squad_scores_is_corpus_mean_times_100() -> None:
    scores = squad_scores(["Paris", "Barack Obama", "x"], [["paris"], ["President Barack Hussein Obama"], ["y"]])
    assert scores["exact_match"] == approx(100 / 3)
    assert scores["f1"] == approx((100 + 200 / 3 + 0) / 3)


def test_squad_empty_prediction_and_empty_references() -> None:
    assert squad_scores_one("", ["Paris"]) == {"f1": 0.0, "exact_match": 0.0}
    # Both sides normalise to no tokens: 1 (SQuAD v2 / torchmetrics convention).
    assert squad_scores_one("", ["The"])["f1"] == 100.0
    # No references (spec §10.3): full marks only for an empty prediction or "no response".
    assert squad_scores_one("", []) == {"f1": 100.0, "exact_match": 100.0}
    assert squad_scores_one("No response.", []) == {"f1": 100.0, "exact_match": 100.0}
    assert squad_scores_one("Paris", []) == {"f1": 0.0, "exact_match": 0.0}


def test_corpus_scores_reject_misaligned_or_empty_input() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 reference"):
        squad_scores(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="no predictions"):
        rouge_scores([], [])


def _random_answer(rng: random.Random, words: list[str]) -> str:
    tokens = [rng.choice(words) for _ in range(rng.randint(0, 5))]
    return rng.choice(["", " ", "  "]).join(tokens) if rng.random() < 0.1 else " ".join(tokens)


def test_squad_agrees_with_torchmetrics() -> None:
    rng = random.Random(20240611)
    words = ["The", "the", "a", "An", "cat", "Cat,", "dog", "dog.", "New", "york", "1901", "U.S.", "(Paris)",
             "Röntgen", "--", "'s", "and", "of", "théâtre", "mat!"]
    predictions = [_random_answer(rng, words) for _ in range(300)]
    references = [[_random_answer(rng, words) for _ in range(rng.randint(1, 3))] for _ in range(300)]
    ours = squad_scores(predictions, references)
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torchmetrics accumulates in the default dtype; float32 drifts ~1e-5
    try:
        theirs = torchmetrics_squad(
            [{"prediction_text": p, "id": str(i)} for i, p in enumerate(predictions)],
            [{"answers": {"answer_start": [0] * len(r), "text": r}, "id": str(i)} for i, r in enumerate(references)],
        )
    finally:
        torch.set_default_dtype(previous_dtype)
    assert 0 < ours["f1"] < 100 and 0 < ours["exact_match"] < ours["f1"]  # the sample exercises both metrics
    assert ours["f1"] == approx(theirs["f1"].item(), abs=1e-6)
    assert ours["exact_match"] == approx(theirs["exact_match"].item(), abs=1e-6)


# -- ROUGE --------------------------------------------------------------------------------------------------
def test_rouge_prefix_of_reference() -> None:
    # pred 3 tokens, ref 6 ("the cat sat on the mat"). rouge1: 3 hits, P = 1, R = 1/2 -> 2/3.
    # rouge2: 2 of the pred's 2 bigrams in ref's 5 -> P = 1, R = 2/5 -> 4/7. rougeL: LCS 3 -> 2/3.
    scores = rouge_scores_one("the cat sat", ["The cat sat on the mat."])
    assert scores == {
        "rouge1": approx(200 / 3),
        "rouge2": approx(400 / 7),
        "rougeL": approx(200 / 3),
        "rougeLsum": approx(200 / 3),
    }


def test_rouge_word_order_and_no_stemming() -> None:
    # Same unigrams, no shared bigram, LCS of 1 token.
    scores = rouge_scores_one("dog bites man", ["man bites dog"])
    assert scores == {"rouge1": approx(100.0), "rouge2": 0.0, "rougeL": approx(100 / 3), "rougeLsum": approx(100 / 3)}
    # No stemming: "cats"/"cat" and "running"/"run" do not match.
    assert rouge_scores_one("cats running", ["cat run"])["rouge1"] == 0.0


def test_rouge_lsum_splits_on_newlines() -> None:
    # rougeL over "the mat the cat" vs "the cat the mat": LCS 2 of 4 -> 50. rougeLsum scores each reference line
    # ("the mat", "the cat") against the prediction: 2 + 2 union-LCS hits of 4 -> 100.
    scores = rouge_scores_one("the cat the mat", ["the mat\nthe cat"])
    assert scores["rougeL"] == approx(50.0)
    assert scores["rougeLsum"] == approx(100.0)


def test_rouge_max_over_references_is_per_key() -> None:
    # vs "man bites dog": rouge1 1, rouge2 0, rougeL 1/3. vs "dog bites": rouge1 0.8, rouge2 2/3, rougeL 0.8.
    scores = rouge_scores_one("dog bites man", ["man bites dog", "dog bites"])
    assert scores == {
        "rouge1": approx(100.0),
        "rouge2": approx(200 / 3),
        "rougeL": approx(80.0),
        "rougeLsum": approx(80.0),
    }


def test_rouge_edge_cases_and_corpus_mean() -> None:
    assert rouge_scores_one("", ["the cat"]) == dict.fromkeys(ROUGE_KEYS, 0.0)
    assert rouge_scores_one("no response", []) == dict.fromkeys(ROUGE_KEYS, 100.0)
    assert rouge_scores_one("a cat", []) == dict.fromkeys(ROUGE_KEYS, 0.0)
    corpus = rouge_scores(["the cat sat", "dog bites man"], [["the cat sat on the mat"], ["man bites dog"]])
    assert corpus["rouge1"] == approx((200 / 3 + 100) / 2)
    assert corpus["rouge2"] == approx((400 / 7 + 0) / 2)
