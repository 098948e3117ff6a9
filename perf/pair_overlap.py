"""Vocabulary and text overlap of tokenizer pairs (methods-spec §19), on the real tokenizers and a task's answers.

Run from the repository root::

    python -m perf.pair_overlap [--task qed] [--limit 2000] [--pairs qwen2:gpt2 llama2:pythia-gptneox ...]

Per pair (teacher:student, as in the pair names): the vocabulary overlap on canonical bytes (O_V = student tokens
whose bytes some teacher token writes; NeMo's |∩| / min; Jaccard), the Jaccard index on raw vocabulary strings with
Ġ and ▁ read as one leading-space marker (how ``shared/tokenizers/README.md`` describes its table; the table's
numbers match the canonical-bytes Jaccard, so it must have decoded byte pieces too), and the text overlap of the task's first ``--limit`` training answers encoded as the collator
encodes them after a plain prompt (O_T, byte-weighted share, mean tokens per group). ``llama3`` is read from its
tiktoken ranks through transformers' converter (a few seconds).
"""
from __future__ import annotations

import argparse
import time

from benchmark.core.paths import default_data_dir, tokenizer_root
from benchmark.models.loading import TINY_FAMILIES, load_family_tokenizer
from methods.overlap import measure_text_overlap, vocabulary_overlap
from methods.token_text import VocabInfo
from tasks.registry import TASKS, load_tasks

DEFAULT_PAIRS = ["qwen2:gpt2", "llama2:pythia-gptneox", "qwen2:llama2", "llama2:gpt2", "mistral:pythia-gptneox",
                 "gpt2:pythia-gptneox", "llama3:qwen2", "llama3:gpt2"]
# The Llama-3 pre-tokenizer pattern and its two named special tokens (shared/tokenizers/llama3/SOURCE.md).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def load_tokenizer(family: str):
    if family in TINY_FAMILIES:
        return load_family_tokenizer(family)
    if family != "llama3":
        raise SystemExit(f"unknown tokenizer family {family!r}; known: {', '.join([*TINY_FAMILIES, 'llama3'])}")
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    backend = TikTokenConverter(vocab_file=str(tokenizer_root() / "llama3" / "tokenizer.model"), pattern=LLAMA3_PATTERN,
                                additional_special_tokens=["<|begin_of_text|>", "<|end_of_text|>"]).converted()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")


def marker_jaccard(student: VocabInfo, teacher: VocabInfo) -> float:
    """Jaccard of raw vocabulary strings with both leading-space markers read as one (KDFlow's Ġ→▁ swap, §16.1)."""
    student_set, teacher_set = ({token.replace("Ġ", "▁") for token in info.vocab} for info in (student, teacher))
    return len(student_set & teacher_set) / len(student_set | teacher_set)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="qed")
    parser.add_argument("--limit", type=int, default=2000, help="training answers (default 2000)")
    parser.add_argument("--pairs", nargs="+", default=DEFAULT_PAIRS, help="teacher:student families")
    args = parser.parse_args()

    task = load_tasks().get(args.task)(default_data_dir())
    answers = [example.answer for example in task.load("train")[: args.limit]]
    families = {family for pair in args.pairs for family in pair.split(":")}
    tokenizers = {family: load_tokenizer(family) for family in sorted(families)}
    infos = {family: VocabInfo.from_tokenizer(tokenizer) for family, tokenizer in tokenizers.items()}
    print(f"{args.task}: {len(answers)} training answers, {sum(len(a.encode()) for a in answers):,} bytes")
    print("| teacher → student | O_V | NeMo | Jaccard | Jaccard, raw Ġ=▁ | O_T | bytes in 1:1 | tokens/group s, t |")
    print("|---|---|---|---|---|---|---|---|")
    for pair in args.pairs:
        teacher, student = pair.split(":")
        start = time.perf_counter()
        vocab = vocabulary_overlap(infos[student], infos[teacher])
        text = measure_text_overlap(tokenizers[student], tokenizers[teacher], answers)
        print(f"| {teacher} → {student} | {vocab.student_share:.3f} | {vocab.nemo:.3f} | {vocab.jaccard:.3f} | "
              f"{marker_jaccard(infos[student], infos[teacher]):.3f} | {text.one_to_one_share:.3f} | "
              f"{text.byte_share:.3f} | {text.student_group_size:.2f}, {text.teacher_group_size:.2f} |"
              f"  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
