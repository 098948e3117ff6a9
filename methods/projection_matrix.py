"""X-Token's projection matrix W ∈ R^{V_s×V_t} (student id → teacher ids), built once per pair (spec §18.1, §18.8).

Stored as per-row top-K lists (teacher ids, weights; −1 = empty). Two recipes (name one in the method config):

* ``wrapper`` (default; ``tools/x_token/build_projection_matrix.sh``): (1) every student id decoded alone and
  re-encoded by the teacher (no specials): its first ≤ 4 teacher ids get ``0.9·0.1^(h−1)`` normalised; the reverse
  pass does the same from every teacher id; special-looking tokens are paired by ``0.6·difflib ratio + 0.4·Jaccard``
  (≥ 0.3, ≤ K per token, weight 0.8·similarity); rows normalised, top-32, and the scale trick (the 32nd slot set to
  0.2, rows ÷ 1.2; an empty slot is −1 as in TRL's port). (2) exact map: a student token whose raw string is a
  teacher token string gets the row [(t, 1.0)]. (3) sort and cut to 4 per row (with the scale trick: the 3 best plus
  the original last slot), rows renormalised.
* ``one-step`` (NeMo's nightly test): forward pass, special-token mapping and exact match, top-4, no reverse pass,
  no scale trick.

The exact ("common") pairs of the gold loss are rows whose best weight is 1.0 (§18.8: never read from padding, which
can leave the set silently empty; an empty set is an error in :mod:`methods.xtoken`).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

RECIPES: tuple[str, ...] = ("wrapper", "one-step")
RUNTIME_K = 4  # [code: sort_and_cut top-k 4]
PREP_K = {"wrapper": 32, "one-step": 4}  # [code: wrapper prep K 32; nightly --top-k 4]
CHAIN = 4  # teacher ids of one re-encoded token that get a weight [code]
SCALE_SLOT = 0.2  # [code: scale trick]
SPECIAL_FLOOR, SPECIAL_WEIGHT = 0.3, 0.8  # [code: special-token similarity threshold and weight]
IGNORED = frozenset({"<|endoftext|>", "<eos>"})  # [code: ignore list]
_SPECIAL = re.compile(r"^(<\|.*\|>|<[^<>\s]+>|</?s>)$")


@dataclass(frozen=True)
class Projection:
    """W as top-K lists per student id: ``ids`` ``[V_s, K]`` int64 (−1 empty) and ``weights`` ``[V_s, K]`` float32."""

    ids: np.ndarray
    weights: np.ndarray

    def exact_pairs(self, threshold: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(student ids, teacher ids) of rows whose best weight is ≥ ``threshold`` (1.0: the exact map; 0.6: H-KL's
        common set); several student ids on one teacher id: the highest weight wins, ties the lowest student id."""
        best = self.weights[:, 0]
        rows = np.nonzero((best >= threshold - 1e-6) & (self.ids[:, 0] >= 0))[0]
        chosen: dict[int, int] = {}
        for s in rows[np.lexsort((rows, -best[rows]))]:  # by weight descending, then id ascending
            chosen.setdefault(int(self.ids[s, 0]), int(s))
        teacher = np.array(sorted(chosen), dtype=np.int64)
        return np.array([chosen[t] for t in teacher], dtype=np.int64), teacher


def _chain_weights(n: int) -> list[float]:
    raw = [0.9 * 0.1 ** h for h in range(min(n, CHAIN))]
    return [w / sum(raw) for w in raw]


def _looks_special(token: str) -> bool:
    return bool(_SPECIAL.match(token))


def _similarity(a: str, b: str) -> float:
    words = [{w for w in re.split(r"[\s<>|_]+", x.lower()) if len(w) > 2} for x in (a, b)]
    jaccard = len(words[0] & words[1]) / len(words[0] | words[1]) if words[0] | words[1] else 0.0
    return 0.6 * difflib.SequenceMatcher(None, a, b).ratio() + 0.4 * jaccard


def _pass(rows: list[dict[int, float]], source: Any, target: Any, forward: bool, progress: Callable[[Iterable], Iterable]) -> None:
    """Decode every ``source`` id alone, encode it with ``target`` (no specials), add the chain weights to W."""
    size = len(source)
    texts = source.batch_decode([[i] for i in range(size)])
    ignored = {i for i in range(len(target)) if target.convert_ids_to_tokens(i) in IGNORED}
    for start in progress(range(0, size, 8192)):
        encoded = target(texts[start : start + 8192], add_special_tokens=False)["input_ids"]
        for offset, ids in enumerate(encoded):
            i, text = start + offset, texts[start + offset]
            if not ids or _looks_special(text) or text in IGNORED or any(t in ignored for t in ids[:CHAIN]):
                continue
            for t, w in zip(ids, _chain_weights(len(ids))):
                s, v = (i, t) if forward else (t, i)
                if s < len(rows):
                    rows[s][v] = rows[s].get(v, 0.0) + w


def build_projection(student: Any, teacher: Any, recipe: str = "wrapper", progress: bool = True) -> Projection:
    """W for two Hugging Face tokenizers by ``recipe`` (module docstring)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown projection recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    bar = (lambda it: tqdm(it, desc=f"x-token projection ({recipe})", unit="chunk", leave=False)) if progress else (lambda it: it)
    k, size = PREP_K[recipe], len(student)
    rows: list[dict[int, float]] = [{} for _ in range(size)]
    _pass(rows, student, teacher, True, bar)
    if recipe == "wrapper":
        _pass(rows, teacher, student, False, bar)
    s_special = [t for t in student.get_vocab() if _looks_special(t)]
    t_special = [t for t in teacher.get_vocab() if _looks_special(t)]
    for s_token in s_special:
        scored = sorted(((_similarity(s_token, t), t) for t in t_special), reverse=True)[:k]
        for score, t_token in scored:
            if score >= SPECIAL_FLOOR:
                row = rows[student.convert_tokens_to_ids(s_token)]
                t_id = teacher.convert_tokens_to_ids(t_token)
                row[t_id] = row.get(t_id, 0.0) + SPECIAL_WEIGHT * score
    ids = np.full((size, k), -1, dtype=np.int64)
    weights = np.zeros((size, k), dtype=np.float64)
    for s, row in enumerate(rows):
        best = sorted(row.items(), key=lambda item: (-item[1], item[0]))[:k]
        total = sum(w for _, w in best)
        for slot, (t, w) in enumerate(best):
            ids[s, slot], weights[s, slot] = t, w / total
    scale = recipe == "wrapper"
    if scale:  # the last slot gets 0.2 (an empty one stays −1 and is dropped below), the row ÷ 1.2
        weights[:, -1] = SCALE_SLOT
        weights /= 1.0 + SCALE_SLOT
    teacher_vocab = teacher.get_vocab()
    for token, s in student.get_vocab().items():  # step 2: the exact map on raw strings
        if token in teacher_vocab and s < size:
            ids[s], weights[s] = -1, 0.0
            ids[s, 0], weights[s, 0] = teacher_vocab[token], 1.0
    return _cut(ids, weights, scale)


def _cut(ids: np.ndarray, weights: np.ndarray, preserve_last: bool) -> Projection:
    """Step 3: per row drop empty slots, keep the best ``RUNTIME_K`` (with ``preserve_last``: the best
    ``RUNTIME_K − 1`` of the others plus the last slot), renormalise."""
    out_ids = np.full((len(ids), RUNTIME_K), -1, dtype=np.int64)
    out_w = np.zeros((len(ids), RUNTIME_K), dtype=np.float32)
    for s in range(len(ids)):
        slots = [(float(w), int(t)) for t, w in zip(ids[s], weights[s]) if t >= 0 and w > 0]
        if preserve_last and ids[s, -1] >= 0 and weights[s, -1] > 0:
            last = slots.pop()
            kept = sorted(slots, key=lambda x: (-x[0], x[1]))[: RUNTIME_K - 1] + [last]
        else:
            kept = sorted(slots, key=lambda x: (-x[0], x[1]))[:RUNTIME_K]
        total = sum(w for w, _ in kept)
        for slot, (w, t) in enumerate(kept):
            out_ids[s, slot], out_w[s, slot] = t, w / total
    return Projection(out_ids, out_w)
