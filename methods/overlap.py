"""How much two tokenizers share: their vocabularies and their tokenisations of real text (methods-spec §19).

* :func:`shared_vocabulary`: the id pairs of tokens both vocabularies hold, matched on canonical bytes (special
  tokens by role) or, as TRL's GOLD hybrid does, on raw strings (§8.6). The hybrid GOLD loss and ``eta-kl`` read
  distributions on these pairs.
* :func:`vocabulary_overlap`: the student-side share O_V, NeMo's normalisation and the Jaccard index, all on
  canonical bytes of the ordinary (non-special) tokens. The three differ; always name the one shown.
* :func:`text_overlap`: on tokenised answers, O_T (share of student answer tokens forming a 1:1 group of
  :mod:`methods.spans`), the byte-weighted share and the mean group size per side.

Pure functions of tokenizers and strings; caching and reporting per pair belong to the harness.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from methods.spans import AnswerSpans, TokenReader, group_tokens
from methods.token_text import ROLES, VocabInfo, is_byte_piece

Matching = Literal["canonical", "raw"]
MATCHINGS: tuple[str, ...] = ("canonical", "raw")


@dataclass(frozen=True)
class TokenPairs:
    """Ids of the shared tokens, position ``i`` of both tuples naming the same token."""

    student: tuple[int, ...]
    teacher: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.student)


def shared_vocabulary(student: VocabInfo, teacher: VocabInfo, match: Matching | str = "canonical") -> TokenPairs:
    """Tokens of both vocabularies that are the same token, in a fixed order.

    ``canonical``: ordinary tokens writing the same bytes, one pair per byte string (the id a tokenizer would
    produce: an ordinary piece before a SentencePiece byte-fallback piece for the same byte, then the lowest id),
    plus special tokens paired by role (eos, bos, pad, unk; each id used once). ``raw``: identical vocabulary
    strings, special tokens included, as TRL's hybrid GOLD matches them (§8.6): ``Ġthe`` and ``▁the`` differ.
    """
    if match == "raw":
        common = sorted(student.vocab.keys() & teacher.vocab.keys())
        return TokenPairs(tuple(student.vocab[t] for t in common), tuple(teacher.vocab[t] for t in common))
    if match != "canonical":
        raise ValueError(f"unknown token matching {match!r}; expected one of {', '.join(MATCHINGS)}")
    student_ids, teacher_ids = _id_per_text(student), _id_per_text(teacher)
    common = sorted(student_ids.keys() & teacher_ids.keys())
    pairs = [(student_ids[text], teacher_ids[text]) for text in common]
    used_student, used_teacher = set(), set()
    for role in ROLES:
        s, t = student.roles.get(role), teacher.roles.get(role)
        if s is not None and t is not None and s not in used_student and t not in used_teacher:
            pairs.append((s, t))
            used_student.add(s)
            used_teacher.add(t)
    return TokenPairs(tuple(s for s, _ in pairs), tuple(t for _, t in pairs))


def _id_per_text(info: VocabInfo) -> dict[str, int]:
    """Canonical text -> the id that writes it (ordinary tokens only; see :func:`shared_vocabulary`)."""
    canon = info.canonicalizer()
    specials = info.special_ids | set(info.roles.values())
    ordered = sorted((is_byte_piece(token), i, token) for token, i in info.vocab.items() if i not in specials)
    ids: dict[str, int] = {}
    for _, i, token in ordered:
        ids.setdefault(canon(token), i)
    return ids


@dataclass(frozen=True)
class VocabularyOverlap:
    """Vocabulary overlap of a pair on canonical bytes, ordinary tokens only (§19)."""

    student_share: float  # O_V: student tokens whose bytes some teacher token writes / student tokens
    nemo: float  # |c(V_s) ∩ c(V_t)| / min(|V_s|, |V_t|): NeMo's X-Token guide
    jaccard: float  # |c(V_s) ∩ c(V_t)| / |c(V_s) ∪ c(V_t)|: shared/tokenizers/README.md's measure (on raw strings)
    shared: int  # |c(V_s) ∩ c(V_t)|: distinct byte strings both write
    student_size: int  # |V_s|: ordinary student tokens
    teacher_size: int


def vocabulary_overlap(student: VocabInfo, teacher: VocabInfo) -> VocabularyOverlap:
    student_text, teacher_text = _ordinary_texts(student), _ordinary_texts(teacher)
    student_set, teacher_set = set(student_text), set(teacher_text)
    shared = student_set & teacher_set
    return VocabularyOverlap(
        student_share=sum(text in teacher_set for text in student_text) / max(len(student_text), 1),
        nemo=len(shared) / max(min(len(student_text), len(teacher_text)), 1),
        jaccard=len(shared) / max(len(student_set | teacher_set), 1),
        shared=len(shared),
        student_size=len(student_text),
        teacher_size=len(teacher_text),
    )


def _ordinary_texts(info: VocabInfo) -> list[str]:
    canon = info.canonicalizer()
    specials = info.special_ids | set(info.roles.values())
    return [canon(token) for token, i in info.vocab.items() if i not in specials]


@dataclass(frozen=True)
class TextOverlap:
    """How two tokenisations of the same answers line up (§19), over the groups that cover answer bytes."""

    one_to_one_share: float  # O_T: student answer tokens in 1:1 groups / student answer tokens
    byte_share: float  # answer bytes in 1:1 groups / answer bytes
    student_group_size: float  # mean student tokens per group
    teacher_group_size: float
    answers: int


def text_overlap(tokenised: Sequence[tuple[AnswerSpans, AnswerSpans]]) -> TextOverlap:
    """From ``(student, teacher)`` spans of each answer (:meth:`AnswerSpans.lay`)."""
    pairs = one_to_one_bytes = answer_bytes = student_tokens = 0
    student_sizes: list[int] = []
    teacher_sizes: list[int] = []
    for student, teacher in tokenised:
        groups = [g for g in group_tokens(student, teacher) if g.end > g.start]  # not the seam, not the EOS pair
        pairs += sum(g.text_pair for g in groups)
        one_to_one_bytes += sum(g.end - g.start for g in groups if g.text_pair)
        student_sizes += [len(g.student) for g in groups]
        teacher_sizes += [len(g.teacher) for g in groups]
        student_tokens += student.text_tokens
        answer_bytes += student.answer_length
    return TextOverlap(
        one_to_one_share=pairs / max(student_tokens, 1),
        byte_share=one_to_one_bytes / max(answer_bytes, 1),
        student_group_size=sum(student_sizes) / max(len(student_sizes), 1),
        teacher_group_size=sum(teacher_sizes) / max(len(teacher_sizes), 1),
        answers=len(tokenised),
    )


def measure_text_overlap(
    student_tokenizer: Any,
    teacher_tokenizer: Any,
    answers: Sequence[str],
    student_prefix: str = " ",
    teacher_prefix: str = " ",
) -> TextOverlap:
    """:func:`text_overlap` of ``answers`` encoded as the collator encodes them (``prefix + answer``, no special
    tokens; the prefix is the prompt format's answer prefix: " " after a plain prompt, "" after a chat template)."""
    return text_overlap(lay_answers(student_tokenizer, teacher_tokenizer, answers, student_prefix, teacher_prefix))


def lay_answers(student_tokenizer: Any, teacher_tokenizer: Any, answers: Sequence[str], student_prefix: str = " ",
                teacher_prefix: str = " ") -> list[tuple[AnswerSpans, AnswerSpans]]:
    """Each answer's ``(student, teacher)`` tokenisation laid on its bytes, encoded as the collator encodes it."""
    sides = [(student_tokenizer, TokenReader.from_tokenizer(student_tokenizer), student_prefix),
             (teacher_tokenizer, TokenReader.from_tokenizer(teacher_tokenizer), teacher_prefix)]
    tokenised = []
    for answer in answers:
        data = answer.encode("utf-8")
        student, teacher = (
            AnswerSpans.lay(reader.read(tokenizer.tokenize(prefix + answer)), data) for tokenizer, reader, prefix in sides
        )
        tokenised.append((student, teacher))
    return tokenised


@dataclass(frozen=True)
class SpanRoundTrip:
    """On how many answers each side's token spans spell the answer's bytes exactly (what byte alignment needs)."""

    student: int
    teacher: int
    answers: int


def span_round_trip(tokenised: Sequence[tuple[AnswerSpans, AnswerSpans]]) -> SpanRoundTrip:
    """From :func:`lay_answers`: the answers whose every byte each side's pieces spell, in order."""
    return SpanRoundTrip(student=sum(s.verified == s.answer_length for s, _ in tokenised),
                         teacher=sum(t.verified == t.answer_length for _, t in tokenised), answers=len(tokenised))
