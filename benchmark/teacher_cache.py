"""Teacher outputs computed once and reused by every method and seed.

* Top-k cache: per teacher × task split × prompt format, the teacher's top-k logits, their ids and the
  full-vocabulary log-normaliser at every answer row (so log-probabilities and the tail mass are exact), in one
  safetensors file plus a manifest. Methods whose ``teacher_needs`` is ``topk_logits`` train from it without
  loading the teacher.
* Text cache: the teacher's greedy answers for SeqKD, appended as they are generated so a crash loses nothing.

Every entry is keyed by the teacher's fingerprint, its tokenizer's hash, the task data hash, the prompt format
and version, the example ids and answers; a stale or partial entry is detected and rebuilt, never used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from benchmark.build_lock import build_lock
from benchmark.collate import PairCollator, ViewEncoder
from benchmark.evaluation import generate
from benchmark.harness import LiveTeacher
from benchmark.results import canonical_json, write_atomic
from methods.batch import DistillBatch, TeacherOutputs
from tasks.base import Example


class StaleCacheError(RuntimeError):
    """Cached teacher rows do not match the batch they are asked for."""


def tokenizer_hash(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted(map(str, tokenizer.all_special_tokens))
    return hashlib.sha256(canonical_json([vocab, special]).encode()).hexdigest()[:16]


def cache_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:20]


def examples_digest(examples: Sequence[Example], answers: Sequence[str]) -> str:
    return hashlib.sha256(canonical_json([[e.id for e in examples], list(answers)]).encode()).hexdigest()[:20]


class TopkCache:
    """Loads or builds the top-k teacher outputs for a fixed list of examples; serves batches as TeacherOutputs."""

    def __init__(self, root: Path, key: dict[str, Any]) -> None:
        self.key = key
        self.dir = Path(root) / "topk" / cache_digest(key)
        self._rows: dict[str, torch.Tensor] | None = None
        self._index: dict[str, int] = {}

    @property
    def k(self) -> int:
        return int(self.key["k"])

    def is_complete(self) -> bool:
        manifest = self.dir / "manifest.json"
        data = self.dir / "topk.safetensors"
        if not manifest.exists() or not data.exists():
            return False
        try:
            meta = json.loads(manifest.read_text())
        except json.JSONDecodeError:
            return False
        return meta.get("key") == json.loads(canonical_json(self.key)) and meta.get("bytes") == data.stat().st_size

    def build(self, teacher: LiveTeacher, collator: PairCollator, examples: Sequence[Example], answers: Sequence[str], batch_size: int) -> None:
        """Run the teacher over every example and write the cache (data first, manifest last)."""
        logits_rows, id_rows, lse_rows, starts = [], [], [], [0]
        for start in tqdm(range(0, len(examples), batch_size), desc="teacher top-k cache", unit="batch", leave=False):
            batch = collator(examples[start : start + batch_size], answers[start : start + batch_size])
            out = teacher.outputs(batch)
            assert out.logits is not None
            values, ids = torch.topk(out.logits, self.k, dim=-1)
            lse = torch.logsumexp(out.logits, dim=-1)
            lengths = (batch.teacher.labels != -100).sum(1).tolist()
            for b, n in enumerate(lengths):
                logits_rows.append(values[b, :n].cpu())
                id_rows.append(ids[b, :n].to(torch.int32).cpu())
                lse_rows.append(lse[b, :n].cpu())
                starts.append(starts[-1] + n)
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {
            "topk_logits": torch.cat(logits_rows).float().contiguous(),
            "topk_ids": torch.cat(id_rows).contiguous(),
            "logsumexp": torch.cat(lse_rows).float().contiguous(),
            "row_start": torch.tensor(starts, dtype=torch.int64),
        }
        tmp = self.dir / "topk.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(self.dir / "topk.safetensors")
        manifest = {
            "key": json.loads(canonical_json(self.key)),
            "ids": [e.id for e in examples],
            "rows": int(starts[-1]),
            "vocab_size": out.vocab_size,
            "bytes": (self.dir / "topk.safetensors").stat().st_size,
        }
        write_atomic(self.dir / "manifest.json", json.dumps(manifest))

    def size_bytes(self) -> int:
        return (self.dir / "topk.safetensors").stat().st_size

    def _load(self) -> dict[str, torch.Tensor]:
        if self._rows is None:
            if not self.is_complete():
                raise StaleCacheError(f"teacher cache {self.dir} is missing, partial or stale")
            self._rows = load_file(str(self.dir / "topk.safetensors"))
            meta = json.loads((self.dir / "manifest.json").read_text())
            self._index = {example_id: i for i, example_id in enumerate(meta["ids"])}
            self._vocab_size = int(meta["vocab_size"])
        return self._rows

    def outputs(self, batch: DistillBatch) -> TeacherOutputs:
        rows = self._load()
        view = batch.teacher
        width = view.answer_ids.size(1)
        device = view.answer_ids.device
        topk_logits = torch.full((len(batch.ids), width, self.k), float("-inf"))
        topk_ids = torch.zeros((len(batch.ids), width, self.k), dtype=torch.long)
        logsumexp = torch.zeros((len(batch.ids), width))
        lengths = (view.labels != -100).sum(1).tolist()
        for b, example_id in enumerate(batch.ids):
            if example_id not in self._index:
                raise StaleCacheError(f"example {example_id!r} is not in teacher cache {self.dir}")
            i = self._index[example_id]
            start, end = int(rows["row_start"][i]), int(rows["row_start"][i + 1])
            if end - start != lengths[b]:
                raise StaleCacheError(
                    f"teacher cache {self.dir} has {end - start} rows for {example_id!r}, the batch has {lengths[b]} answer tokens"
                )
            topk_logits[b, : end - start] = rows["topk_logits"][start:end]
            topk_ids[b, : end - start] = rows["topk_ids"][start:end].long()
            logsumexp[b, : end - start] = rows["logsumexp"][start:end]
        # Masked rows get a harmless finite distribution (uniform over the k slots).
        topk_logits = torch.where(view.answer_mask.cpu().unsqueeze(-1), topk_logits, torch.zeros_like(topk_logits))
        return TeacherOutputs(
            mask=view.answer_mask,
            topk_logits=topk_logits.to(device),
            topk_ids=topk_ids.to(device),
            logsumexp=logsumexp.to(device),
            vocab_size=self._vocab_size,
        )


def ensure_topk_cache(
    root: Path,
    key: dict[str, Any],
    load_teacher: Callable[[], LiveTeacher],
    collator: PairCollator,
    examples: Sequence[Example],
    answers: Sequence[str],
    batch_size: int,
) -> TopkCache:
    """The cache for ``key``, built first (loading the teacher) when missing, partial or stale."""
    cache = TopkCache(root, {**key, "examples": examples_digest(examples, answers)})
    if not cache.is_complete():
        with build_lock(cache.dir):
            if not cache.is_complete():  # another worker may have built it while this one waited
                cache.build(load_teacher(), collator, examples, answers, batch_size)
    return cache


def teacher_answers(
    root: Path,
    key: dict[str, Any],
    load_teacher: Callable[[], tuple[Any, ViewEncoder]],
    examples: Sequence[Example],
    max_new_tokens: int,
    batch_size: int,
    chunk: int = 32,
) -> list[str]:
    """The teacher's greedy answers for ``examples`` (SeqKD targets), generated once and appended chunk by chunk."""
    path = Path(root) / "text" / f"{cache_digest(key)}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(path):  # one worker generates; the others wait, then read its answers
        done: dict[str, str] = {}
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                # A torn last line from a crash: cut it off so appends start on a clean line.
                text = text[: text.rfind("\n") + 1]
                path.write_text(text, encoding="utf-8")
            for line in text.splitlines():
                row = json.loads(line)
                done[row["id"]] = row["answer"]
        todo = [e for e in examples if e.id not in done]
        if todo:
            model, encoder = load_teacher()
            with open(path, "a", encoding="utf-8") as handle:
                for start in tqdm(range(0, len(todo), chunk), desc="teacher answers", unit="chunk", leave=False):
                    part = todo[start : start + chunk]
                    texts, _ = generate(model, encoder.tokenizer, [encoder.prompt_text(e) for e in part], max_new_tokens, batch_size)
                    for example, text in zip(part, texts):
                        done[example.id] = text
                        handle.write(json.dumps({"id": example.id, "answer": text}, ensure_ascii=False) + "\n")
                    handle.flush()
        return [done[e.id] for e in examples]
