"""The pairs registry: names, aliases, tokenizer relations and reachability reasons."""
from __future__ import annotations

import pytest
import torch

from benchmark.core.registry import RegistryError
from benchmark.models.loading import ModelSpec, load_model, load_tokenizer
from benchmark.models.pairs import PAIRS, Pair, pair_status

TINY_PAIRS = ["tiny-qwen2-to-gpt2", "tiny-llama2-to-pythia", "tiny-gpt2-to-gpt2"]
PAPER_TEACHERS = ["llama2-7b-chat", "mistral-7b-instruct-v0.3", "qwen-7b-chat", "llama3-8b-instruct"]
PAPER_STUDENTS = ["opt-350m", "pythia-410m", "bloomz-560m"]
PAPER_PAIRS = [f"{t}-to-{s}" for t in PAPER_TEACHERS for s in PAPER_STUDENTS]


def test_registered_names_and_default_alias():
    assert PAIRS.names() == ["qwen2.5-coder-0.5b-to-smollm2-135m", "gemma3-270m-to-smollm2-135m",
                             "qwen2.5-coder-1.5b-to-smollm2-135m", *TINY_PAIRS, *PAPER_PAIRS]
    assert PAIRS.canonical("default") == "qwen2.5-coder-0.5b-to-smollm2-135m"
    default = PAIRS.get("default")
    assert (default.teacher.ref, default.student.ref) == ("qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct")
    assert PAIRS.get("gemma3-270m-to-smollm2-135m").teacher.ref == "gemma3-270m"
    larger = PAIRS.get("qwen2.5-coder-1.5b-to-smollm2-135m")  # same tokenizer as the 0.5B, an optional install
    assert (larger.teacher.ref, larger.student) == ("qwen2.5-coder-1.5b-instruct", default.student)
    for name in PAIRS.names():
        assert PAIRS.get(name).name == name and PAIRS.description(name)


def test_unknown_pair_lists_names_and_suggests():
    with pytest.raises(RegistryError, match="unknown pair 'tiny-qwen-to-gpt2'.*did you mean 'tiny-qwen2-to-gpt2'"):
        PAIRS.get("tiny-qwen-to-gpt2")


def test_names_are_safe_directory_names():
    spec = ModelSpec("t", "tiny", "gpt2")
    for bad in ("A/B", "../x", "Default", "", "a b"):
        with pytest.raises(ValueError, match="directory name"):
            Pair(bad, spec, spec)


def test_tokenizer_relations():
    for name in ["qwen2.5-coder-0.5b-to-smollm2-135m", "gemma3-270m-to-smollm2-135m",
                 "qwen2.5-coder-1.5b-to-smollm2-135m", *TINY_PAIRS[:2],
                 *PAPER_PAIRS]:
        assert not PAIRS.get(name).same_tokenizer, name
    control = PAIRS.get("tiny-gpt2-to-gpt2")
    assert control.same_tokenizer and control.teacher.tiny_seed != control.student.tiny_seed


def test_prompt_styles():
    for name in PAIRS.names():
        pair = PAIRS.get(name)
        assert pair.student.prompt_style == "plain", name
    assert {PAIRS.get(p).teacher.prompt_style for p in PAPER_PAIRS} == {"chat"}
    assert PAIRS.get("default").teacher.prompt_style == "plain"


def test_paper_pairs_are_reported_unreachable_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    for name in PAPER_PAIRS:
        reason = pair_status(PAIRS.get(name))
        assert reason is not None and reason.startswith("teacher ") and "Hugging Face cache" in reason, name


def test_tiny_pairs_reachable_and_status_checks_load_nothing(monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("pair_status must only look at files, never load a model or tokenizer")

    for name in ("load_model", "load_tokenizer", "build_tiny", "load_family_tokenizer", "load_offline"):
        monkeypatch.setattr(f"benchmark.models.loading.{name}", no_loading)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", no_loading)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", no_loading)
    statuses = {name: pair_status(PAIRS.get(name)) for name in PAIRS.names()}
    assert all(statuses[name] is None for name in TINY_PAIRS)


def test_tiny_pairs_have_the_declared_tokenizers():
    for name in TINY_PAIRS:
        pair = PAIRS.get(name)
        same_vocab = load_tokenizer(pair.teacher).get_vocab() == load_tokenizer(pair.student).get_vocab()
        assert same_vocab == pair.same_tokenizer, name


def test_default_tiny_pair_loads_and_runs():
    pair = PAIRS.get("tiny-qwen2-to-gpt2")
    for spec in (pair.teacher, pair.student):
        model, tokenizer = load_model(spec)
        ids = tokenizer("hello world", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            assert model(ids).logits.shape == (1, ids.shape[1], len(tokenizer))
