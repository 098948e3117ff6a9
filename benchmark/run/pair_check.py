"""What the methods will need from a pair, measured before the first training step from its two tokenizers and
its models' configs (never the weights): ``run_bench.py pair check NAME``, and the check a run makes before its
grid's first cell.

One :class:`Check` per figure: each side's vocabulary and output rows (rows without a token string are left out of
string-based alignment, and counted here), each side's EOS/BOS/pad roles, the vocabulary overlap O_V, MinED's
vocabulary map, and per task the text overlap O_T and whether byte spans round-trip on the task's answers. Every
derived set is built once and cached by the tokenizers' hashes (:mod:`benchmark.models.pair_cache`). A derived set
that comes out empty is a failure naming the methods it rules out, never a silent fallback.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from tqdm import tqdm

from benchmark.config import Settings
from benchmark.models.loading import (
    ModelSpec,
    ModelUnavailableError,
    load_tokenizer,
    output_rows,
)
from benchmark.models.pair_cache import (
    cached_span_round_trip,
    cached_text_overlap,
    cached_vocab_map,
    cached_vocabulary_overlap,
)
from benchmark.models.pairs import Pair
from benchmark.run.context import TaskPairContext
from methods.base import Method
from methods.eta_kl import EtaKL
from methods.gold import GOLD
from methods.mined import MinED
from methods.spans import ByteAlignedMethod
from methods.token_text import VocabInfo
from tasks.base import Task

Status = Literal["ok", "warn", "FAIL"]

# Which methods read each derived set: the check names those an empty set rules out.
READERS: dict[str, Callable[[Method], bool]] = {
    "byte spans": lambda method: isinstance(method, ByteAlignedMethod),
    "shared vocabulary": lambda method: isinstance(method, EtaKL) or (
        isinstance(method, GOLD) and bool(method.config.hybrid)),
    "vocabulary map": lambda method: isinstance(method, MinED),
}


@dataclass(frozen=True)
class Check:
    name: str
    figure: str
    status: Status = "ok"
    rules_out: tuple[str, ...] = ()  # methods this failure rules out

    def line(self) -> str:
        ruled = f"; rules out: {', '.join(self.rules_out)}" if self.rules_out else ""
        return f"{self.status:<4}  {self.name:<24}  {self.figure}{ruled}"


def check_pair(pair: Pair, tasks: Sequence[Task], settings: Settings, cache_dir: Path,
               methods: Mapping[str, Method], *, vocab_map: bool = True) -> list[Check]:
    """Every check of ``pair`` for ``tasks``; ``methods``: those whose needs decide what a failure rules out (and
    ``vocab_map``: whether MinED's map is built and checked)."""
    directory = Path(cache_dir) / "pairs"
    steps = 2 + vocab_map + len(tasks)
    with tqdm(total=steps, desc=f"pair check {pair.name}", file=sys.stderr, disable=None, leave=False) as bar:
        tokenizers = {}
        for role, spec in (("teacher", pair.teacher), ("student", pair.student)):
            try:
                tokenizers[role] = load_tokenizer(spec, cache_dir=cache_dir)
            except ModelUnavailableError as error:  # e.g. a slow tokenizer: no offsets, so no method can read it
                return [Check(f"{role} tokenizer", str(error).splitlines()[0], "FAIL", tuple(methods))]
        infos = {role: VocabInfo.from_tokenizer(tokenizer) for role, tokenizer in tokenizers.items()}
        checks = [_rows_check(role, spec, infos[role], cache_dir, methods) for role, spec in
                  (("teacher", pair.teacher), ("student", pair.student))]
        checks += [_roles_check(role, infos[role], tokenizers[role]) for role in ("teacher", "student")]
        bar.update()
        overlap = cached_vocabulary_overlap(infos["student"], infos["teacher"], directory)
        checks.append(Check("vocabulary overlap", f"O_V {overlap.student_share:.3f} · Jaccard {overlap.jaccard:.3f} · "
                                                  f"{overlap.shared:,} shared byte strings",
                            *_failure(overlap.shared == 0, "shared vocabulary", methods)))
        bar.update()
        if vocab_map:
            checks.append(_map_check(infos["teacher"], infos["student"], directory, methods))
            bar.update()
        for task in tasks:
            checks += _task_checks(pair, task, settings, cache_dir, tokenizers["student"], tokenizers["teacher"],
                                   methods)
            bar.update()
    return checks


def ruled_out(checks: Sequence[Check], methods: Sequence[str]) -> list[tuple[Check, list[str]]]:
    """The failed checks that rule out one of ``methods``, with those methods."""
    found = [(check, [name for name in methods if name in check.rules_out]) for check in checks if check.status == "FAIL"]
    return [(check, names) for check, names in found if names]


def _failure(failed: bool, derived: str, methods: Mapping[str, Method]) -> tuple[Status, tuple[str, ...]]:
    if not failed:
        return "ok", ()
    return "FAIL", tuple(name for name, method in methods.items() if READERS[derived](method))


def _rows_check(role: str, spec: ModelSpec, info: VocabInfo, cache_dir: Path, methods: Mapping[str, Method]) -> Check:
    """The tokenizer's ids against the output layer's rows (a padded head has more rows than tokens)."""
    tokens = len(info.vocab)
    rows = output_rows(spec, cache_dir)
    if rows is None:
        return Check(f"{role} head", f"{tokens:,} tokens; output rows unknown until the model is first loaded", "warn")
    if rows < info.size:
        return Check(f"{role} head", f"{tokens:,} tokens but only {rows:,} output rows: ids from {rows:,} up cannot "
                                     "be scored", "FAIL", tuple(methods))
    without = rows - sum(i < rows for i in info.vocab.values())
    padded = f", {without:,} rows without a token string (left out of string-based alignment)" if without else ""
    return Check(f"{role} head", f"{tokens:,} tokens, {rows:,} output rows{padded}")


def _roles_check(role: str, info: VocabInfo, tokenizer: Any) -> Check:
    def named(name: str) -> str:
        token_id = info.roles.get(f"{name}_token")
        return f"{name} none" if token_id is None else f"{name} {getattr(tokenizer, f'{name}_token')!r} ({token_id})"

    figure = " · ".join(named(name) for name in ("eos", "bos", "pad"))
    if "eos_token" not in info.roles:
        return Check(f"{role} roles", f"{figure}: without EOS, generation stops only at the token limit", "warn")
    return Check(f"{role} roles", figure)


def _map_check(teacher: VocabInfo, student: VocabInfo, directory: Path, methods: Mapping[str, Method]) -> Check:
    try:
        mapping = cached_vocab_map(teacher, student, directory)
    except ValueError as error:
        return Check("MinED vocabulary map", str(error), *_failure(True, "vocabulary map", methods))
    figure = (f"{mapping.mapped:,} of {len(mapping.teacher_to_student):,} teacher ids mapped, "
              f"{mapping.exact_share:.1%} to the same text")
    return Check("MinED vocabulary map", figure, *_failure(mapping.mapped == 0, "vocabulary map", methods))


def _task_checks(pair: Pair, task: Task, settings: Settings, cache_dir: Path, student_tokenizer: Any,
                 teacher_tokenizer: Any, methods: Mapping[str, Method]) -> list[Check]:
    """O_T and the byte spans' round trip on the task's training answers, encoded as the run encodes them."""
    context = TaskPairContext.build(task, pair, settings, cache_dir)
    answers, prefixes = context.overlap_answers(student_tokenizer, teacher_tokenizer)
    args = (student_tokenizer, teacher_tokenizer, answers, prefixes, task.name, context.data_fingerprint,
            Path(cache_dir) / "pairs")
    text = cached_text_overlap(*args)
    spans = cached_span_round_trip(*args)
    overlap = Check(f"{task.name} text overlap", f"O_T {text.one_to_one_share:.3f} · bytes in 1:1 groups "
                                                 f"{text.byte_share:.3f} over {text.answers:,} answers",
                    "ok" if text.one_to_one_share > 0 else "warn")
    status, rules = _failure(min(spans.student, spans.teacher) == 0, "byte spans", methods)
    if status == "ok" and min(spans.student, spans.teacher) < spans.answers:
        status = "warn"
    round_trip = Check(f"{task.name} byte spans", f"round-trip on {spans.student:,}/{spans.answers:,} answers "
                                                  f"(student), {spans.teacher:,}/{spans.answers:,} (teacher)",
                       status, rules)
    return [overlap, round_trip]
