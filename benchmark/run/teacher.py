"""Every teacher source of a run, in one place: the frozen model (loaded once, kept while consecutive cells use it;
for ``teacher_prep sft`` its task-fine-tuned copy, which :mod:`benchmark.run.teacher_prep` prepares), the top-k output cache, the generated answers (SeqKD), and the live
teacher's logits and hidden states. Every cached entry is keyed by :func:`teacher_key`.

* Top-k cache: per teacher × task split × prompt format, the teacher's top-k logits, their ids and the
  full-vocabulary log-normaliser ``logsumexp(z / tau)`` at every answer row for tau = 1 and every temperature the
  run's methods request (``TeacherRequest.temperatures``), so top-k log-probabilities and the tail mass are exact at
  each of them; one safetensors file plus a manifest. Methods whose request ``needs`` ``topk_logits`` train from
  it without loading the teacher. Where a run's methods request them (``TeacherRequest.token_logprobs``,
  ``TeacherRequest.subsets``), the cache also stores the logit of the teacher's own answer token and
  ``logsumexp(z[S] / tau)`` of named vocabulary subsets S per row (only then are they part of the key, so entries
  built without them stay valid). Rows are stored for every labelled answer token, the final EOS included.
* Text cache: the teacher's greedy answers for SeqKD, appended as they are generated so a crash loses nothing.

A stale or partial entry is detected (its manifest holds the full key and the data size) and rebuilt, never used.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from benchmark.config import Settings, hashed_fields
from benchmark.core.build_lock import build_lock
from benchmark.core.digest import canonical_json, digest
from benchmark.core.files import write_atomic
from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.evaluation import generate
from benchmark.engine.harness import TeacherSource
from benchmark.engine.precision import precision
from benchmark.models.loading import ModelSpec, load_model, load_tokenizer
from benchmark.models.pairs import Pair
from benchmark.run.context import TaskPairContext, teacher_key
from methods.base import Method
from methods.batch import DistillBatch, TeacherOutputs, log_normalisers
from methods.token_text import VocabInfo
from methods.vocab_subsets import teacher_subset
from tasks.base import Example

# What the teacher-output cache can hold, by a method's ``TeacherRequest.needs``: the top-k logits with the
# full-vocabulary normaliser (``topk_logits``) and the teacher's greedy answers (``text``). ``full_logits`` and
# ``hidden_states`` would cost a vocabulary-wide (or hidden-size-wide) row per answer token per example: those methods
# run the teacher live, next to the student.
CACHED_SIGNALS: dict[str, str] = {"topk_logits": "top-k logits", "text": "generated answers"}


class StaleCacheError(RuntimeError):
    """Cached teacher rows do not match the batch they are asked for."""


def tokenizer_hash(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    special = sorted(map(str, tokenizer.all_special_tokens))
    return digest([vocab, special], short=True)


class LiveTeacher:
    """Runs the frozen teacher on the teacher view of each batch.

    Only the answer rows go through the output head: a 152k-vocabulary head over every prompt position would
    cost gigabytes per batch and most of the teacher's time.
    """

    live = True  # scores any batch, e.g. the student's own samples (on-policy methods)

    def __init__(self, model: Any, hidden_states: bool = False, bf16: bool = False) -> None:
        self.model = model.eval().requires_grad_(False)
        self.hidden_states, self.bf16 = hidden_states, bf16

    @torch.no_grad()
    def outputs(self, batch: DistillBatch) -> TeacherOutputs:
        device = next(self.model.parameters()).device
        view = batch.teacher.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hidden = self.model.base_model(input_ids=view.input_ids, attention_mask=view.attention_mask).last_hidden_state
            rows = self.model.get_output_embeddings()(view.gather_answer_rows(hidden)).float()
        softcap = getattr(self.model.config, "final_logit_softcapping", None)
        if softcap:
            rows = torch.tanh(rows / softcap) * softcap
        # A sharded teacher ends on its last GPU; the batch (and the student) live where its first layer is.
        return TeacherOutputs(mask=view.answer_mask, logits=rows.to(device), vocab_size=rows.size(-1),
                              hidden_states=hidden.float().to(device) if self.hidden_states else None)


class Teachers:
    """The teacher side of a run: serves each cell the teacher signal its method declares it needs."""

    def __init__(self, cache_dir: Path, log: Callable[[str], None] = print, outputs_dir: Path | None = None,
                 temperatures: Iterable[float] = (), token_logits: bool = False, subsets: Iterable[str] = (),
                 sharded: bool = False) -> None:
        """``cache_dir`` holds the models; the cached teacher outputs go to ``outputs_dir`` (default
        ``<cache_dir>/teacher``). ``temperatures``: the log-normalisers a top-k cache stores besides tau = 1;
        ``token_logits`` and ``subsets``: the per-row values it stores besides the top-k (each the union over the
        run's methods, :meth:`for_methods`, so one cache serves them all); ``sharded``: the teacher's layers are
        spread over every visible GPU."""
        self.cache_dir, self.log, self.sharded = Path(cache_dir), log, sharded
        self.outputs_dir = Path(outputs_dir) if outputs_dir is not None else self.cache_dir / "teacher"
        self.temperatures = tuple(sorted({float(t) for t in temperatures} - {1.0}))
        self.token_logits, self.subsets = token_logits, tuple(sorted(set(subsets)))
        self._loaded: tuple[str, Any, Any] | None = None  # (spec fingerprint, model, tokenizer)

    @classmethod
    def for_methods(cls, cache_dir: Path, methods: Iterable[Method], log: Callable[[str], None] = print,
                    sharded: bool = False, outputs_dir: Path | None = None) -> "Teachers":
        """The teacher side of a run of ``methods``: its top-k cache stores what any of them reads."""
        requests = [m.teacher_request() for m in methods]
        cached = [r for r in requests if r.needs == "topk_logits"]
        return cls(cache_dir, log, outputs_dir, temperatures={t for r in requests for t in r.temperatures},
                   token_logits=any(r.token_logprobs for r in cached),
                   subsets={name for r in cached for name in r.subsets}, sharded=sharded)

    # -- the model -----------------------------------------------------------------------------------------------
    def model(self, ctx: TaskPairContext) -> tuple[Any, Any]:
        """The teacher model and tokenizer as used for the context's task, loaded once and kept while cells use it."""
        spec = ctx.teacher_spec
        if self._loaded is None or self._loaded[0] != spec.fingerprint():
            self._loaded = None  # free the previous teacher before loading the next
            if spec.source == "local" and not (Path(spec.ref).parent / "DONE").exists():
                raise ValueError(f"the fine-tuned teacher {spec.ref} is not prepared (no DONE beside it); the grid "
                                 "prepares it before the cells that read it")
            machine = precision()
            model, tokenizer = load_model(spec, cache_dir=self.cache_dir, device=machine.device,
                                          dtype=machine.teacher_dtype, sharded=self.sharded)
            self._loaded = (spec.fingerprint(), model.eval().requires_grad_(False), tokenizer)
        return self._loaded[1], self._loaded[2]

    def tokenizer(self, ctx: TaskPairContext) -> Any:
        """The teacher's tokenizer without loading its weights (a cached teacher may never need them)."""
        if self._loaded is not None and self._loaded[0] == ctx.teacher_spec.fingerprint():
            return self._loaded[2]
        return load_tokenizer(ctx.pair.teacher, cache_dir=self.cache_dir)

    # -- signals -------------------------------------------------------------------------------------------------
    def key(self, ctx: TaskPairContext, kind: str, **extra: Any) -> dict[str, Any]:
        """:func:`teacher_key` for the context's teacher, with its tokenizer's hash."""
        return teacher_key(kind, ctx.teacher_spec, ctx.task.name, ctx.data_fingerprint, ctx.teacher_format,
                           ctx.settings.data.max_answer_tokens, tokenizer=tokenizer_hash(self.tokenizer(ctx)), **extra)

    def signal(self, method: Method, ctx: TaskPairContext, collator: PairCollator, examples: list[Example],
               answers: list[str]) -> TeacherSource | None:
        """The teacher outputs ``method`` trains on: none, the top-k cache (built first if needed), or the live
        teacher (full logits, hidden states)."""
        request = method.teacher_request()
        needs = request.needs
        if needs in ("none", "text"):
            return None
        live = lambda: LiveTeacher(self.model(ctx)[0], hidden_states=needs == "hidden_states",
                                   bf16=precision().teacher_autocast)  # noqa: E731
        if needs != "topk_logits":
            return live()
        k = ctx.settings.teacher.topk
        if request.topk > k:
            raise ValueError(f"method {method.name!r} needs teacher top-{request.topk} but the cache keeps "
                             f"top-{k}; raise --topk")
        missing = sorted(set(request.temperatures) - {1.0, *self.temperatures})
        if missing:
            raise ValueError(f"method {method.name!r} reads the teacher at temperature(s) {missing}, which this run's "
                             f"teacher cache does not store (it stores {[1.0, *self.temperatures]})")
        subsets = self._subset_ids(collator, sorted({*self.subsets, *request.subsets}))
        key = self.key(ctx, "topk", k=k, examples=examples_digest(examples, answers),
                       temperatures=list(self.temperatures),
                       **row_values_key(self.token_logits or request.token_logprobs, subsets))
        return ensure_topk_cache(self.outputs_dir, key, live, collator, examples, answers,
                                 ctx.settings.eval.eval_batch_size, subsets)

    @staticmethod
    def _subset_ids(collator: PairCollator, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The teacher ids of each named vocabulary subset, from the collator's two tokenizers."""
        if not names:
            return {}
        assert collator.teacher is not None
        student, teacher = (VocabInfo.from_tokenizer(e.tokenizer) for e in (collator.student, collator.teacher))
        return {name: teacher_subset(name, student, teacher) for name in names}

    def answers(self, ctx: TaskPairContext, examples: list[Example]) -> list[str]:
        """The teacher's greedy answers for ``examples`` (SeqKD targets), generated once and cached."""
        key = self.key(ctx, "text", ids=[e.id for e in examples], max_new_tokens=ctx.max_new_tokens)

        def load() -> tuple[Any, ViewEncoder]:
            model, tokenizer = self.model(ctx)
            return model, ctx.encoder(tokenizer, ctx.teacher_format)

        return teacher_answers(self.outputs_dir, key, load, examples, ctx.max_new_tokens,
                               ctx.settings.eval.eval_batch_size)


def examples_digest(examples: Sequence[Example], answers: Sequence[str]) -> str:
    return digest([[e.id for e in examples], list(answers)], short=True)


def row_values_key(token_logits: bool, subsets: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The part of a top-k cache key naming the per-row values it stores besides the top-k: empty when there are
    none, so the keys of caches built before these values existed do not change."""
    key: dict[str, Any] = {"token_logits": True} if token_logits else {}
    if subsets:
        key["subsets"] = {name: digest(ids.tolist(), short=True) for name, ids in sorted(subsets.items())}
    return key


class TopkCache:
    """Loads or builds the top-k teacher outputs for a fixed list of examples; serves batches as TeacherOutputs."""

    live = False  # serves only the examples and answers it was built from

    def __init__(self, root: Path, key: dict[str, Any]) -> None:
        self.key = key
        self.dir = Path(root) / "topk" / digest(key, short=True)
        self._rows: dict[str, torch.Tensor] | None = None
        self._index: dict[str, int] = {}

    @property
    def k(self) -> int:
        return int(self.key["k"])

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The temperatures besides 1 whose log-normalisers the cache stores."""
        return tuple(self.key.get("temperatures", ()))

    @property
    def subsets(self) -> dict[str, str]:
        """Name -> ids digest of the vocabulary subsets whose log-normalisers the cache stores."""
        return dict(self.key.get("subsets", {}))

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

    def build(self, teacher: LiveTeacher, collator: PairCollator, examples: Sequence[Example],
              answers: Sequence[str], batch_size: int, subsets: Mapping[str, torch.Tensor] | None = None) -> None:
        """Run the teacher over every example and write the cache (data first, manifest last). ``subsets``: the
        teacher ids of each vocabulary subset the key names."""
        subsets = dict(subsets or {})
        if {name: digest(ids.tolist(), short=True) for name, ids in subsets.items()} != self.subsets:
            raise ValueError(f"teacher cache {self.dir}: the subsets given do not match its key {self.subsets}")
        rows: dict[str, list[torch.Tensor]] = {name: [] for name in ("topk_logits", "topk_ids", *self._row_value_names)}
        starts = [0]
        for start in tqdm(range(0, len(examples), batch_size), desc="teacher top-k cache", unit="batch", leave=False):
            batch = collator(examples[start : start + batch_size], answers[start : start + batch_size])
            out = teacher.outputs(batch)
            assert out.logits is not None
            values, ids = torch.topk(out.logits, min(self.k, out.logits.size(-1)), dim=-1)
            per_row = {"topk_logits": values.float(), "topk_ids": ids.to(torch.int32),
                       **self._row_values(out.logits, batch.teacher.answer_ids.to(out.logits.device), subsets)}
            lengths = (batch.teacher.labels != -100).sum(1).tolist()
            for b, n in enumerate(lengths):
                for name, tensor in per_row.items():
                    rows[name].append(tensor[b, :n].cpu())
                starts.append(starts[-1] + n)
        self.dir.mkdir(parents=True, exist_ok=True)
        tensors = {name: torch.cat(parts).contiguous() for name, parts in rows.items()}
        tensors["row_start"] = torch.tensor(starts, dtype=torch.int64)
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

    @property
    def _normaliser_names(self) -> dict[str, float]:
        """Stored tensor name -> temperature of each log-normaliser (``logsumexp`` is tau = 1)."""
        return {"logsumexp": 1.0, **{f"logsumexp@{tau:g}": tau for tau in self.temperatures}}

    @property
    def _subset_names(self) -> dict[str, tuple[str, float]]:
        """Stored tensor name -> (subset, temperature) of each subset log-normaliser."""
        return {name.replace("logsumexp", f"logsumexp[{subset}]"): (subset, tau)
                for subset in self.subsets for name, tau in self._normaliser_names.items()}

    @property
    def _row_value_names(self) -> list[str]:
        """Every stored per-row scalar: the normalisers, the answer token's logit, the subset normalisers."""
        return [*self._normaliser_names, *(["token_logit"] if self.key.get("token_logits") else []),
                *self._subset_names]

    def _row_values(self, logits: torch.Tensor, answer_ids: torch.Tensor,
                    subsets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The per-row scalars of ``[B, A, V]`` teacher logits, by stored name."""
        taus = (1.0, *self.temperatures)
        normalisers = log_normalisers(logits, taus)
        values = {name: normalisers[tau] for name, tau in self._normaliser_names.items()}
        if self.key.get("token_logits"):
            values["token_logit"] = logits.float().gather(-1, answer_ids.unsqueeze(-1)).squeeze(-1)
        by_subset = {subset: log_normalisers(logits[..., ids.to(logits.device)], taus) for subset, ids in subsets.items()}
        values |= {name: by_subset[subset][tau] for name, (subset, tau) in self._subset_names.items()}
        return values

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
        lengths = (view.labels != -100).sum(1).tolist()
        names = ["topk_logits", "topk_ids", *self._row_value_names]
        served = {name: torch.zeros((len(batch.ids), width, *rows[name].shape[1:]), dtype=rows[name].dtype)
                  for name in names}
        for b, example_id in enumerate(batch.ids):
            if example_id not in self._index:
                raise StaleCacheError(f"example {example_id!r} is not in teacher cache {self.dir}")
            i = self._index[example_id]
            start, end = int(rows["row_start"][i]), int(rows["row_start"][i + 1])
            if end - start != lengths[b]:
                raise StaleCacheError(
                    f"teacher cache {self.dir} has {end - start} rows for {example_id!r}, the batch has {lengths[b]} answer tokens"
                )
            for name in names:
                served[name][b, : end - start] = rows[name][start:end]
        # Every labelled row (the EOS row included) holds the teacher's values; padding rows hold zeros, a harmless
        # finite distribution (uniform over the k slots).
        by_tau = {tau: served[name].to(device) for name, tau in self._normaliser_names.items()}
        return TeacherOutputs(
            mask=view.answer_mask,
            topk_logits=served["topk_logits"].to(device),
            topk_ids=served["topk_ids"].long().to(device),
            logsumexp=by_tau.pop(1.0),
            tempered_logsumexp=by_tau,
            vocab_size=self._vocab_size,
            token_logits=served["token_logit"].to(device) if "token_logit" in served else None,
            subset_logsumexp={key: served[name].to(device) for name, key in self._subset_names.items()},
        )


def ensure_topk_cache(
    root: Path,
    key: dict[str, Any],
    load_teacher: Callable[[], LiveTeacher],
    collator: PairCollator,
    examples: Sequence[Example],
    answers: Sequence[str],
    batch_size: int,
    subsets: Mapping[str, torch.Tensor] | None = None,
) -> TopkCache:
    """The cache for ``key``, built first (loading the teacher) when missing, partial or stale."""
    cache = TopkCache(root, key)
    if not cache.is_complete():
        with build_lock(cache.dir):
            if not cache.is_complete():  # another worker may have built it while this one waited
                cache.build(load_teacher(), collator, examples, answers, batch_size, subsets)
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
    path = Path(root) / "text" / f"{digest(key, short=True)}.jsonl"
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
                    texts, _ = generate(model, encoder.tokenizer, [encoder.prompt_text(e) for e in part],
                                        max_new_tokens, batch_size)
                    for example, text in zip(part, texts):
                        done[example.id] = text
                        handle.write(json.dumps({"id": example.id, "answer": text}, ensure_ascii=False) + "\n")
                    handle.flush()
        return [done[e.id] for e in examples]
