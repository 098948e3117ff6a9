"""Every registered method (and every named option that changes what it reads), two optimizer steps on a tiny pair:
finite loss, student gradients, and no gradient into the teacher's outputs, whatever form they come in. A method
served from the top-k cache reads the live teacher at step 0 and a real cache entry at step 1; an on-policy method
trains at step 1 on the student's own samples, made by the harness's on-policy hook (``benchmark.engine.on_policy``)."""
import dataclasses
from typing import get_args

import pytest
import torch

from benchmark.engine.collate import PairCollator, ViewEncoder
from benchmark.engine.harness import answer_ce_sum, answer_row_forward, model_weights
from benchmark.engine.on_policy import sample_answers
from benchmark.engine.prompting import PromptFormat
from benchmark.models.loading import build_tiny
from benchmark.models.pair_cache import CachedPairResources
from benchmark.run.teacher import LiveTeacher, ensure_topk_cache, row_values_key
from methods.base import TeacherNeeds, TeacherRequest
from methods.batch import TeacherOutputs
from methods.registry import load_methods
from tests.support.toy_task import ToyTask, toy_examples

METHODS = load_methods()
# Options that change which teacher tensors a method reads or how it reads them.
VARIANTS = {
    "uld": [{"mode": "exact"}, {"temperature": 2.0}],
    "mlot": [{"sequence_rows": "paired"}],
    "mlot-official": [{"ranking": "tokenwise"}],
    "mined": [{"aligned_tokens": "targets", "dtw_tie_order": "student-first"}],
    "gold": [{"merge": "observed"}, {"hybrid": True}],
    "alm": [{"append_space": False}],
    "eta-kl": [{"signal": "topk"}],
    "xtoken": [{"loss": "gold"}, {"loss": "hkl", "recipe": "one-step"}],
}
CASES = [(name, {}) for name in METHODS.names()] + [(name, v) for name, variants in VARIANTS.items() for v in variants]


@pytest.fixture(scope="module")
def map_cache(tmp_path_factory):
    """One MinED vocabulary-map cache for the module: the Qwen2 x GPT-2 map takes minutes to build."""
    return str(tmp_path_factory.mktemp("vocab-maps"))


@pytest.fixture(scope="module")
def models():
    return {family: build_tiny(family, seed) for family, seed in (("qwen2", 1), ("gpt2", 2))} | {
        "gpt2-teacher": build_tiny("gpt2", 3)
    }


def requiring_grad(outputs: TeacherOutputs) -> tuple[TeacherOutputs, list[torch.Tensor]]:
    """The same outputs with every float tensor replaced by a leaf that requires grad (a teacher that was not
    frozen), and those leaves."""
    leaves: list[torch.Tensor] = []

    def leaf(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            leaves.append(x.detach().clone().requires_grad_())
            return leaves[-1]
        return x

    mappings = ("tempered_logsumexp", "subset_logsumexp")
    changes = {f.name: leaf(getattr(outputs, f.name)) for f in dataclasses.fields(outputs) if f.name not in mappings}
    changes |= {name: {key: leaf(x) for key, x in getattr(outputs, name).items()} for name in mappings}
    return dataclasses.replace(outputs, **changes), leaves


def topk_cache(method, live: LiveTeacher, collator, examples, student_tok, teacher_tok, directory):
    """The teacher-output cache entry the harness would build for ``method`` over ``examples``."""
    from methods.token_text import VocabInfo
    from methods.vocab_subsets import teacher_subset

    vocabs = VocabInfo.from_tokenizer(student_tok), VocabInfo.from_tokenizer(teacher_tok)
    request = method.teacher_request()
    subsets = {name: teacher_subset(name, *vocabs) for name in request.subsets}
    key = {"k": max(request.topk, 1), "temperatures": sorted(set(request.temperatures) - {1.0}),
           **row_values_key(request.token_logprobs, subsets)}
    return ensure_topk_cache(directory, key, lambda: live, collator, examples, [e.answer for e in examples], 3, subsets)


@pytest.mark.parametrize("name, overrides", CASES, ids=[f"{n}{'-' + '-'.join(map(str, o.values())) if o else ''}"
                                                        for n, o in CASES])
def test_two_steps_train_the_student_and_never_the_teacher(name, overrides, models, map_cache, tmp_path):
    method_class = METHODS.get(name)
    method = method_class(method_class.config_class.from_dict(overrides))
    request = method.teacher_request()
    assert isinstance(request, TeacherRequest) and request == method.teacher_request()  # derived, not mutated
    teacher_key = "gpt2-teacher" if method.same_tokenizer_only else "qwen2"
    train_two_steps(method, models[teacher_key], build_tiny("gpt2", seed=2), map_cache, tmp_path)


PADDING = 128  # output rows beyond the tokenizer, as in Qwen2.5-7B's head (152,064 rows over ~151,665 tokens)


@pytest.fixture(scope="module")
def padded_models():
    return {family: build_tiny(family, seed, extra_rows=PADDING) for family, seed in (("qwen2", 1), ("gpt2", 3))}


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_a_padded_head_pair(name, padded_models, map_cache, tmp_path):
    """Teacher and student heads 128 rows wider than their tokenizers: every method trains, its loss finite."""
    method = METHODS.get(name)()
    teacher = padded_models["gpt2" if method.same_tokenizer_only else "qwen2"]
    student = build_tiny("gpt2", seed=2, extra_rows=PADDING)
    assert student[0].get_output_embeddings().weight.size(0) == len(student[1]) + PADDING
    train_two_steps(method, teacher, student, map_cache, tmp_path)


def train_two_steps(method, teacher_pair, student_pair, map_cache, tmp_path):
    """Two optimizer steps of ``method`` from ``teacher_pair`` into ``student_pair`` (each ``(model, tokenizer)``)."""
    request = method.teacher_request()
    assert request.needs in get_args(TeacherNeeds)
    teacher, teacher_tok = teacher_pair
    student, student_tok = student_pair
    task = ToyTask(tmp_path, toy_examples(6, "train"), toy_examples(2, "test"))
    pool = task.load("train")
    collator = PairCollator(
        ViewEncoder(task, student_tok, PromptFormat("plain", 0), pool, 16),
        ViewEncoder(task, teacher_tok, PromptFormat("plain", 1), pool, 16),
    )
    method.prepare(CachedPairResources(student_tok, teacher_tok, map_cache))
    live = LiveTeacher(teacher, hidden_states=request.needs == "hidden_states")
    own = method.build_modules(model_weights(student), model_weights(teacher))
    own_parameters = list(own.module.parameters()) if own is not None else []
    optimizer = torch.optim.AdamW(list(student.parameters()) + own_parameters, lr=1e-3)
    student.train()
    cache = (topk_cache(method, live, collator, pool, student_tok, teacher_tok, tmp_path / "cache")
             if request.needs == "topk_logits" else None)
    for step in range(2):
        part = pool[step * 3 : step * 3 + 3]
        batch = collator(part)
        if request.on_policy_fraction > 0 and step == 1:  # the student's own samples, as the harness makes them
            samples = sample_answers(student, collator.student, part, request.sampling, seed=7)
            batch = collator(part, samples.answers, complete=samples.complete)
            assert batch.answers != [e.answer for e in part]
        outputs, leaves = None, []
        if request.needs not in ("none", "text"):
            # step 0 live, step 1 from the cache for a cached method
            outputs = cache.outputs(batch) if cache is not None and step == 1 else live.outputs(batch)
            outputs, leaves = requiring_grad(outputs)
        logits, batch = answer_row_forward(student, batch, method.student_hidden_states)  # the harness's forward
        ce = answer_ce_sum(logits, batch.student) / (batch.student.labels != -100).sum()
        terms = method.loss(batch, logits, outputs, ce)
        assert terms["loss"].dim() == 0 and torch.isfinite(terms["loss"])
        assert all(torch.isfinite(v).all() for v in terms.values())
        optimizer.zero_grad()
        terms["loss"].backward()
        grads = [p.grad for p in student.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
        # a method's own modules (projectors) train too: every parameter gets a finite gradient, not all zero
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in own_parameters)
        assert not own_parameters or sum(float(p.grad.abs().sum()) for p in own_parameters) > 0
        assert all(not p.requires_grad for p in teacher.parameters())
        assert all(leaf.grad is None for leaf in leaves), f"{method.name} sent gradient into the teacher's outputs"
        assert all(not v.requires_grad for key, v in terms.items() if key != "loss")  # logged terms are detached
        optimizer.step()


def test_token_kl_refuses_a_cross_tokenizer_batch(models, tmp_path):
    from methods.baselines import SameTokenizerError, TokenKL

    teacher, teacher_tok = models["qwen2"]
    student, student_tok = models["gpt2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    collator = PairCollator(ViewEncoder(task, student_tok, PromptFormat("plain", 0), pool, 16),
                            ViewEncoder(task, teacher_tok, PromptFormat("plain", 0), pool, 16))
    batch = collator(pool[:2])
    logits = student(input_ids=batch.student.input_ids).logits
    with pytest.raises(SameTokenizerError, match="identical student and teacher answer tokens"):
        TokenKL().loss(batch, logits, LiveTeacher(teacher).outputs(batch), torch.tensor(1.0))


def test_token_kl_is_zero_when_teacher_equals_student(models, tmp_path):
    from methods.baselines import TokenKL

    student, tokenizer = models["gpt2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    encoder = ViewEncoder(task, tokenizer, PromptFormat("plain", 0), pool, 16)
    batch = PairCollator(encoder, encoder)(pool[:3])
    logits = student(input_ids=batch.student.input_ids, attention_mask=batch.student.attention_mask).logits
    terms = TokenKL().loss(batch, logits, LiveTeacher(student).outputs(batch), torch.tensor(0.0))
    assert float(terms["kl"]) == pytest.approx(0.0, abs=1e-6)


def test_live_teacher_rows_equal_the_full_forward(models, tmp_path):
    teacher, teacher_tok = models["qwen2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    encoder = ViewEncoder(task, teacher_tok, PromptFormat("plain", 1), pool, 16)
    batch = PairCollator(encoder, encoder)(pool[:3])
    rows = LiveTeacher(teacher).outputs(batch).logits
    with torch.no_grad():
        full = teacher(input_ids=batch.teacher.input_ids, attention_mask=batch.teacher.attention_mask).logits
    assert torch.allclose(rows, batch.teacher.gather_answer_rows(full), atol=1e-5)


@pytest.mark.parametrize("head_argument", [True, False], ids=["logits_to_keep", "full-logits-fallback"])
def test_answer_row_forward_equals_the_full_forward(models, tmp_path, head_argument):
    student, tokenizer = models["gpt2"]
    task = ToyTask(tmp_path, toy_examples(4, "train"), toy_examples(1, "test"))
    pool = task.load("train")
    encoder = ViewEncoder(task, tokenizer, PromptFormat("plain", 1), pool, 16)
    batch = PairCollator(encoder, None)(pool[:3])
    model = student if head_argument else _WithoutLogitsToKeep(student)
    with torch.no_grad():
        full = student(input_ids=batch.student.input_ids, attention_mask=batch.student.attention_mask).logits
        rows, reindexed = answer_row_forward(model, batch)
    valid = batch.student.answer_token_mask()
    assert rows.size(1) == len(torch.unique(batch.student.answer_rows[valid])) < full.size(1)
    expected, got = batch.student.gather_answer_rows(full), reindexed.student.gather_answer_rows(rows)
    assert torch.allclose(got[valid], expected[valid], atol=1e-5)
    # CE by hand from the full logits: -log p(answer token) summed over every answer token, EOS included.
    by_hand = -torch.log_softmax(expected, -1).gather(-1, batch.student.answer_ids.unsqueeze(-1)).squeeze(-1)[valid].sum()
    assert float(answer_ce_sum(rows, reindexed.student)) == pytest.approx(float(by_hand), rel=1e-5)
    assert float(answer_ce_sum(full, batch.student)) == pytest.approx(float(by_hand), rel=1e-5)


class _WithoutLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep`` (as some hub architectures)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask)
