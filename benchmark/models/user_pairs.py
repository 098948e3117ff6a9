"""Pairs a user defines without editing the suite: ``--pair NAME=TEACHER,STUDENT`` and ``--pairs-file FILE``.

A side is a hub id (``owner/name``), a local Hugging Face folder (holding ``config.json``) or a ``.gguf`` file,
optionally followed by ``@REVISION`` (hub ids only) and ``:plain`` or ``:chat`` (the prompt style; by default
``chat`` when the tokenizer has a chat template, else ``plain``). A pairs file (``.yaml``/``.yml`` or ``.toml``)
holds the same under ``pairs``::

    pairs:
      mine:
        teacher: {model: ./teacher, prompt: chat}
        student: ./student          # a side may also be the one-line form above
        description: my two models

Relative paths are read from the working directory (``--pair``) or the file's folder (``--pairs-file``). Every
definition is checked here, before any model loads; a bad one raises :class:`PairDefinitionError` (one line). A
defined pair is registered in :data:`benchmark.models.pairs.PAIRS` and from there is used like any other.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

from benchmark.engine.prompting import PROMPT_STYLES
from benchmark.models.loading import ModelSpec, hub_file
from benchmark.models.pairs import PAIRS, Pair
from benchmark.store import usable_name

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SIDE_KEYS = ("model", "prompt", "revision")
_PAIR_KEYS = ("teacher", "student", "description")


class PairDefinitionError(ValueError):
    """A pair definition that cannot work; the message names the bad value and what is accepted."""


def define_pairs(flags: Iterable[str], pairs_file: str | None) -> list[str]:
    """Register the pairs of ``--pair`` flags and a ``--pairs-file``; returns their names. A name already
    registered is an error unless it is the same definition again (a worker re-reading its parent's flags)."""
    pairs = [parse_pair_flag(flag) for flag in flags]
    if pairs_file is not None:
        pairs += read_pairs_file(Path(pairs_file))
    seen: set[str] = set()
    for pair in pairs:
        if pair.name in seen:
            raise PairDefinitionError(f"pair {pair.name!r} is defined twice")
        seen.add(pair.name)
        if pair.name in PAIRS:
            if PAIRS.get(pair.name) != pair:
                raise PairDefinitionError(f"pair name {pair.name!r} is already taken (see `run_bench.py ls pairs`); "
                                          "choose another")
            continue
        PAIRS.add(pair.name, pair, description=pair.description)
    return [pair.name for pair in pairs]


def parse_pair_flag(flag: str) -> Pair:
    """``NAME=TEACHER,STUDENT`` -> the pair."""
    name, sep, sides = flag.partition("=")
    parts = sides.split(",")
    if not sep or len(parts) != 2 or not all(parts):
        raise PairDefinitionError(f"--pair {flag!r}: expected NAME=TEACHER,STUDENT, each side a hub id, a folder "
                                  "or a .gguf file, optionally followed by @REVISION and :plain or :chat")
    teacher, student = (parse_side(part, Path.cwd(), f"--pair {flag!r}") for part in parts)
    return make_pair(name, teacher, student, f"user pair (--pair): {teacher.ref} -> {student.ref}", f"--pair {flag!r}")


def read_pairs_file(path: Path) -> list[Pair]:
    """The pairs of a ``.yaml``/``.yml`` or ``.toml`` file (module docstring)."""
    where = f"--pairs-file {str(path)!r}"
    content = _load_file(path, where)
    entries = content.get("pairs") if isinstance(content, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise PairDefinitionError(f"{where}: expected a table 'pairs' of NAME: {{teacher: ..., student: ...}}")
    pairs = []
    for name, entry in entries.items():
        at = f"{where}: pair {name!r}"
        if not isinstance(entry, dict) or {"teacher", "student"} - entry.keys() or entry.keys() - set(_PAIR_KEYS):
            raise PairDefinitionError(f"{at}: expected the keys teacher, student and optionally description")
        teacher, student = (_side_entry(entry[role], path.parent, f"{at}: {role}") for role in ("teacher", "student"))
        description = str(entry.get("description") or f"user pair ({path.name}): {teacher.ref} -> {student.ref}")
        pairs.append(make_pair(str(name), teacher, student, description, at))
    return pairs


def _load_file(path: Path, where: str) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise PairDefinitionError(f"{where}: unknown format {suffix or '(no suffix)'!r}; accepted: .yaml, .yml, .toml")
    try:
        text = path.read_text()
    except OSError as error:
        raise PairDefinitionError(f"{where}: cannot read it ({error.strerror})") from None
    import tomllib
    import yaml

    try:
        return tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise PairDefinitionError(f"{where}: not valid {suffix[1:].upper()} ({reason})") from None


def _side_entry(value: Any, base: Path, where: str) -> ModelSpec:
    """A side in a file: the one-line form, or ``{model, prompt, revision}``."""
    if isinstance(value, str):
        return parse_side(value, base, where)
    if not isinstance(value, dict) or "model" not in value or value.keys() - set(_SIDE_KEYS):
        raise PairDefinitionError(f"{where}: expected a model string or a table with model and optionally prompt "
                                  "and revision")
    revision = value.get("revision")
    return model_spec(str(value["model"]), base, where, value.get("prompt"),
                      None if revision is None else str(revision))


def parse_side(text: str, base: Path, where: str) -> ModelSpec:
    """``REF[@REVISION][:plain|:chat]`` -> the model spec."""
    ref, style = text, None
    head, colon, tail = text.rpartition(":")
    if colon and tail in PROMPT_STYLES:
        ref, style = head, tail
    revision = None
    if "@" in ref and not _as_path(ref, base).exists():
        ref, _, revision = ref.rpartition("@")
    return model_spec(ref, base, where, style, revision)


def model_spec(ref: str, base: Path, where: str, style: Any = None, revision: str | None = None) -> ModelSpec:
    """Check one side and describe it as a :class:`ModelSpec` (its prompt style defaulted from the tokenizer)."""
    if style is not None and style not in PROMPT_STYLES:
        raise PairDefinitionError(f"{where}: prompt {style!r}: accepted: {', '.join(PROMPT_STYLES)}")
    path, typed = _as_path(ref, base), ref
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PairDefinitionError(f"{where}: folder {str(path)!r} is not a Hugging Face model folder (no "
                                      "config.json)")
        source, ref, name = "local", str(path), typed  # as typed: a saved student's folder is always "student"
    elif path.is_file():
        if path.suffix.lower() != ".gguf":
            raise PairDefinitionError(f"{where}: {str(path)!r}: unknown model format {path.suffix or '(no suffix)'!r};"
                                      " accepted: a Hugging Face folder, a .gguf file or a hub id (owner/name)")
        source, ref, name = "gguf", str(path), typed
    elif _HUB_ID.fullmatch(ref) and not ref.startswith((".", "~")):
        source, name = "hub", ref.rsplit("/", 1)[1]
    else:
        raise PairDefinitionError(f"{where}: {ref!r}: no such folder or .gguf file, and not a hub id (owner/name)")
    if revision is not None and source != "hub":
        raise PairDefinitionError(f"{where}: @{revision}: a revision applies to hub ids only, not to {ref!r}")
    if style is None:
        style = "chat" if has_chat_template(source, ref, revision) else "plain"
    return ModelSpec(name, source, ref, style, revision=revision)  # type: ignore[arg-type]


def make_pair(name: str, teacher: ModelSpec, student: ModelSpec, description: str, where: str) -> Pair:
    if not usable_name(name):
        raise PairDefinitionError(f"{where}: name {name!r} is not usable as a directory name; accepted: lowercase "
                                  "letters, digits, '.', '_' and '-', starting with a letter or digit")
    return Pair(name, teacher, student, description)


def has_chat_template(source: str, ref: str, revision: str | None) -> bool:
    """Whether the model's tokenizer has a chat template, read from its files (no tokenizer is built)."""
    if source == "gguf":
        return _gguf_has_chat_template(Path(ref))
    if source == "local":
        folder = Path(ref)
        if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
            return True
        config: Path | None = folder / "tokenizer_config.json"
    else:
        config = hub_file(ref, "tokenizer_config.json", revision, download=True)
    try:
        return config is not None and bool(json.loads(config.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def _gguf_has_chat_template(path: Path) -> bool:
    from gguf import GGUFReader  # deferred: only GGUF sides need it

    try:
        return "tokenizer.chat_template" in GGUFReader(path).fields
    except (OSError, ValueError) as error:
        raise PairDefinitionError(f"{path}: not a readable GGUF file ({str(error).splitlines()[0]})") from None


def _as_path(ref: str, base: Path) -> Path:
    path = Path(ref).expanduser()
    return (path if path.is_absolute() else base / path).resolve()
