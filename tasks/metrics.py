"""Answer metrics: SQuAD-style token F1 / exact match and ROUGE, per example and over a corpus.

Every score is ×100. Each example is scored against all its references and keeps the best one (per metric key).
An example with *no* references scores 100 when the prediction is empty or says "no response", else 0
(the convention of the published evaluation code, methods-spec §10.3).
"""
from __future__ import annotations

import functools
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

ROUGE_KEYS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
SQUAD_KEYS: tuple[str, ...] = ("f1", "exact_match")

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")

ScoreOne = Callable[[str, Sequence[str]], dict[str, float]]


# -- SQuAD F1 / EM ----------------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop ASCII punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    """Token-multiset F1 in [0, 1] of the normalised strings.

    When either side normalises to no tokens, the score is 1 if both do and 0 otherwise (the SQuAD v2 /
    torchmetrics convention; SQuAD v1.1's script would give 0 for two empty strings).
    """
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def no_reference_score(prediction: str) -> float:
    """Score in [0, 1] of a prediction for an example without references (spec §10.3)."""
    return float(not prediction.strip() or "no response" in prediction.lower())


def squad_scores_one(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """``{"f1", "exact_match"}`` ×100 of one prediction, each the max over ``references``."""
    if not references:
        return dict.fromkeys(SQUAD_KEYS, 100.0 * no_reference_score(prediction))
    return {
        "f1": 100.0 * max(token_f1(prediction, ref) for ref in references),
        "exact_match": 100.0 * max(exact_match(prediction, ref) for ref in references),
    }


# -- ROUGE --------------------------------------------------------------------------------------------------
@functools.cache
def _rouge_scorer() -> RougeScorer:
    # Imported lazily: rouge_score pulls in nltk (~0.5 s), which listing or loading tasks does not need.
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(ROUGE_KEYS), use_stemmer=False)


def rouge_scores_one(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum F-measure ×100 of one prediction, each the max over ``references``.

    Uses ``rouge_score.rouge_scorer.RougeScorer`` with its default tokenizer and **no stemming** (the default of
    HF ``evaluate``'s "rouge", which the published numbers used). Texts are passed unchanged: for rougeLsum the
    package treats each ``"\\n"``-separated line as a sentence; no sentence splitter is added, so for the
    single-line predictions of this benchmark rougeLsum is close to rougeL.
    """
    if not references:
        return dict.fromkeys(ROUGE_KEYS, 100.0 * no_reference_score(prediction))
    scorer = _rouge_scorer()
    per_reference = [scorer.score(ref, prediction) for ref in references]
    return {key: 100.0 * max(scores[key].fmeasure for scores in per_reference) for key in ROUGE_KEYS}


# -- corpus scores ------------------------------------------------------------------------------------------
def corpus_scores(
    score_one: ScoreOne, predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    """The mean of ``score_one`` over aligned ``predictions`` and ``references`` (already ×100)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if not predictions:
        raise ValueError("no predictions to score")
    totals: dict[str, float] = {}
    for prediction, refs in zip(predictions, references):
        for key, value in score_one(prediction, refs).items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: value / len(predictions) for key, value in totals.items()}


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus F1 and exact match ×100 (mean of :func:`squad_scores_one`)."""
    return corpus_scores(squad_scores_one, predictions, references)


def rouge_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus ROUGE-1/2/L/Lsum ×100 (plain mean of :func:`rouge_scores_one`, no bootstrap)."""
    return corpus_scores(rouge_scores_one, predictions, references)


@dataclass(frozen=True)
class Metric:
    """A family of metric keys scored together, e.g. SQuAD F1 + EM, and the direction in which they improve."""

    keys: tuple[str, ...]
    score_one: ScoreOne
    higher_is_better: bool = True

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
        return corpus_scores(self.score_one, predictions, references)


SQUAD = Metric(SQUAD_KEYS, squad_scores_one, higher_is_better=True)
ROUGE = Metric(ROUGE_KEYS, rouge_scores_one, higher_is_better=True)
