"""What MinED's alignment options change, on random answers tokenized by a real tokenizer pair.

Run from the repository root::

    HF_HUB_OFFLINE=1 python -m perf.mined_alignment [--texts 3000] [--teacher qwen2] [--student gpt2]

Each answer is 10 to 60 words drawn at random (fixed seed) from the teacher's whole-word tokens, with a comma or a
full stop now and then, after one fixed prompt; both tokenizers encode it as the collator does (answer tokens, then
EOS). For the four combinations of ``aligned_tokens`` (``inputs``: DSKD, the default; ``targets``: the earlier
reading) and ``dtw_tie_order`` (``teacher-first``: DSKD, the default; ``student-first``: the earlier order) it
reports the distilled rows and the share that falls back to one-hot targets, then how many answers the tie order
changes: their DTW alignment, and which rows fall back. The vocabulary map is read from (or built into)
``$CTKD_CACHE_DIR`` (default ``.cache``).
"""
from __future__ import annotations

import argparse
import random

from benchmark.core.paths import default_cache_dir
from benchmark.engine.collate import EncodedView, stack_views
from benchmark.models.loading import load_family_tokenizer
from benchmark.models.pair_cache import CachedPairResources
from methods.batch import DistillBatch, TokenView
from methods.edit_alignment import TIE_ORDERS, dtw_align
from methods.mined import ALIGNED_TOKENS, MinED, MinEDConfig
from methods.token_text import TokenCanonicalizer, VocabInfo

PROMPT = "Answer the question in one sentence.\nQuestion: what happened next?\nAnswer:"


def random_answers(words: list[str], count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    answers = []
    for _ in range(count):
        picked = [rng.choice(words) + rng.choice(["", "", "", "", ",", "."]) for _ in range(rng.randint(10, 60))]
        answers.append(" ".join(picked))
    return answers


def whole_words(tokenizer) -> list[str]:
    """Alphabetic tokens of three letters or more that start a word (the boundary marker stripped)."""
    canon = VocabInfo.from_tokenizer(tokenizer).canonicalizer()
    words = {canon(token).strip() for token in tokenizer.get_vocab() if canon(token).startswith(" ")}
    return sorted(word for word in words if len(word) >= 3 and word.isascii() and word.isalpha())


def view(tokenizer, answer: str) -> TokenView:
    """One example as the collator encodes it: the prompt, the answer after a space, then EOS."""
    encoded = tokenizer(" " + answer, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"]) + [tokenizer.eos_token_id]
    offsets = [(max(start - 1, 0), end - 1) for start, end in encoded["offset_mapping"]] + [(-1, -1)]
    example = EncodedView(tuple(tokenizer(PROMPT)["input_ids"]), tuple(ids), tuple(offsets),
                          tuple(tokenizer.convert_ids_to_tokens(ids)))
    return stack_views([example], tokenizer.pad_token_id)


def aligned_strings(side: TokenView, canon: TokenCanonicalizer, aligned_tokens: str) -> list[str]:
    """The token strings DTW aligns for one example: each labelled row's input token, or each text token."""
    if aligned_tokens == "inputs":
        ids = side.input_ids[0, side.answer_rows[0, side.answer_token_mask()[0]]]
    else:
        ids = side.answer_ids[0, side.answer_mask[0]]
    return [canon.text_of_id(i) for i in ids.tolist()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--teacher", default="qwen2", help="tokenizer family of the teacher")
    parser.add_argument("--student", default="gpt2", help="tokenizer family of the student")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    teacher_tokenizer, student_tokenizer = load_family_tokenizer(args.teacher), load_family_tokenizer(args.student)
    resources = CachedPairResources(student_tokenizer, teacher_tokenizer, default_cache_dir())
    readings = [(aligned, ties) for aligned in ALIGNED_TOKENS for ties in TIE_ORDERS]
    methods = {}
    for aligned, ties in readings:
        methods[aligned, ties] = MinED(MinEDConfig(aligned_tokens=aligned, dtw_tie_order=ties))
        methods[aligned, ties].prepare(resources)
    canon = {"student": VocabInfo.from_tokenizer(student_tokenizer).canonicalizer(),
             "teacher": VocabInfo.from_tokenizer(teacher_tokenizer).canonicalizer()}

    rows = {reading: 0 for reading in readings}
    fallbacks = {reading: 0 for reading in readings}
    alignment_changed = {aligned: 0 for aligned in ALIGNED_TOKENS}
    fallback_changed = {aligned: 0 for aligned in ALIGNED_TOKENS}
    answers = random_answers(whole_words(teacher_tokenizer), args.texts, args.seed)
    for answer in answers:
        student, teacher = view(student_tokenizer, answer), view(teacher_tokenizer, answer)
        batch = DistillBatch(["0"], [answer], student, teacher)
        targets = {reading: methods[reading].teacher_rows(batch) for reading in readings}
        for reading, teacher_rows in targets.items():
            rows[reading] += len(teacher_rows)
            fallbacks[reading] += sum(j < 0 for j in teacher_rows)
        for aligned in ALIGNED_TOKENS:
            strings = (aligned_strings(student, canon["student"], aligned),
                       aligned_strings(teacher, canon["teacher"], aligned))
            alignment_changed[aligned] += dtw_align(*strings, "teacher-first") != dtw_align(*strings, "student-first")
            falls = [[j < 0 for j in targets[aligned, ties]] for ties in TIE_ORDERS]
            fallback_changed[aligned] += falls[0] != falls[1]

    print(f"teacher {args.teacher} -> student {args.student}: {args.texts} random answers of 10-60 words, seed "
          f"{args.seed}; {sum(len(a.split()) for a in answers) / len(answers):.1f} words on average")
    print(f"{'aligned_tokens':<16}{'dtw_tie_order':<16}{'rows distilled':>16}{'fallback share':>16}")
    for aligned, ties in readings:
        share = fallbacks[aligned, ties] / max(rows[aligned, ties], 1)
        print(f"{aligned:<16}{ties:<16}{rows[aligned, ties]:>16,}{share:>16.4f}")
    for aligned in ALIGNED_TOKENS:
        print(f"tie order, reading {aligned}: the DTW alignment differs in {alignment_changed[aligned]} of "
              f"{args.texts} answers, the rows that fall back in {fallback_changed[aligned]}")


if __name__ == "__main__":
    main()
