"""Pairs defined on the command line or in a file (issue 26): parsed and checked before any model loads, hashed by
their definition, registered like any other pair."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.models.loading import ModelSpec
from benchmark.models.pairs import PAIRS
from benchmark.models.user_pairs import (
    PairDefinitionError,
    define_pairs,
    parse_pair_flag,
    parse_side,
    read_pairs_file,
)


def model_folder(path: Path, chat_template: str | None = None) -> Path:
    """A folder that passes the definition checks (config.json, a tokenizer config); nothing here loads it."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    config = {"chat_template": chat_template} if chat_template else {}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def test_a_side_is_a_hub_id_a_folder_or_a_gguf_file(tmp_path):
    hub = parse_side("org/model@v1.2:chat", tmp_path, "--pair")
    assert (hub.source, hub.ref, hub.revision, hub.prompt_style, hub.name) == ("hub", "org/model", "v1.2", "chat",
                                                                               "model")
    model_folder(tmp_path / "plain-folder")
    plain = parse_side("plain-folder", tmp_path, "--pair")
    assert (plain.source, plain.ref, plain.prompt_style, plain.name) == ("local", str(tmp_path / "plain-folder"),
                                                                        "plain", "plain-folder")
    model_folder(tmp_path / "chat", chat_template="{{ messages }}")
    assert parse_side("chat", tmp_path, "--pair").prompt_style == "chat"  # the default follows the template
    assert parse_side("chat:plain", tmp_path, "--pair").prompt_style == "plain"
    (tmp_path / "m.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(PairDefinitionError, match="m.gguf: not a readable GGUF file"):
        parse_side("m.gguf", tmp_path, "--pair")


@pytest.mark.parametrize("text, message", [
    ("nowhere", "'nowhere': no such folder or .gguf file, and not a hub id (owner/name)"),
    ("./org/name", "no such folder or .gguf file"),
    ("org/name:chatty", "'org/name:chatty': no such folder"),
    ("folder@main", "@main: a revision applies to hub ids only"),
    ("file.txt", "unknown model format '.txt'"),
    ("empty", "is not a Hugging Face model folder (no config.json)"),
])
def test_a_side_that_cannot_work_is_one_line(tmp_path, text, message):
    model_folder(tmp_path / "folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(PairDefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        parse_side(text, tmp_path, "--pair x")
    assert "\n" not in str(info.value)


def test_the_fingerprint_follows_the_definition_and_leaves_registered_pairs_alone():
    base = ModelSpec("m", "hub", "org/m", "plain")
    variants = [ModelSpec("m", "hub", "org/m", "chat"), ModelSpec("m", "hub", "org/m", "plain", revision="v1"),
                ModelSpec("m", "hub", "org/m", "plain", revision="v2"), ModelSpec("m", "hub", "org/other", "plain")]
    assert len({spec.fingerprint() for spec in [base, *variants]}) == 5
    assert ModelSpec("renamed", "hub", "org/m", "plain").fingerprint() == base.fingerprint()
    default = PAIRS.get("default")  # the hashes of registered pairs predate the revision field
    assert (default.teacher.fingerprint(), default.student.fingerprint()) == ("568fdb9de934df19", "4f82c97b9a550268")


def test_a_pairs_file_in_yaml_or_toml_defines_the_same_pairs(tmp_path):
    model_folder(tmp_path / "models" / "t")
    model_folder(tmp_path / "models" / "s")
    (tmp_path / "pairs.yaml").write_text(
        "pairs:\n  mine:\n    teacher: {model: models/t, prompt: chat}\n    student: models/s\n")
    (tmp_path / "pairs.toml").write_text(
        '[pairs.mine]\nteacher = { model = "models/t", prompt = "chat" }\nstudent = "models/s"\n')
    from_yaml, from_toml = (read_pairs_file(tmp_path / name) for name in ("pairs.yaml", "pairs.toml"))
    assert [(p.name, p.teacher, p.student) for p in from_yaml] == [(p.name, p.teacher, p.student) for p in from_toml]
    pair = from_yaml[0]
    assert pair.teacher.ref == str(tmp_path / "models" / "t") and pair.teacher.prompt_style == "chat"
    assert pair.student.prompt_style == "plain"


@pytest.mark.parametrize("content, message", [
    ("pairs: [unclosed\n", "not valid YAML"),
    ("other: 1\n", "expected a table 'pairs'"),
    ("pairs:\n  mine: {teacher: org/t}\n", "pair 'mine': expected the keys teacher, student"),
    ("pairs:\n  mine: {teacher: {model: org/t, style: chat}, student: org/s}\n", "teacher: expected a model string"),
])
def test_a_bad_pairs_file_is_one_line(tmp_path, content, message):
    (tmp_path / "pairs.yaml").write_text(content)
    with pytest.raises(PairDefinitionError, match=message):
        read_pairs_file(tmp_path / "pairs.yaml")


def test_defining_registers_once_and_refuses_a_taken_name(tmp_path):
    model_folder(tmp_path / "t")
    model_folder(tmp_path / "s")
    flag = f"issue26-test={tmp_path / 't'},{tmp_path / 's'}"
    assert define_pairs([flag], None) == ["issue26-test"]
    assert define_pairs([flag], None) == ["issue26-test"]  # a worker re-reading its parent's flags
    assert PAIRS.get("issue26-test") == parse_pair_flag(flag)
    with pytest.raises(PairDefinitionError, match="pair name 'issue26-test' is already taken"):
        define_pairs([f"issue26-test={tmp_path / 's'},{tmp_path / 't'}"], None)
    with pytest.raises(PairDefinitionError, match="pair 'twice' is defined twice"):
        define_pairs([f"twice={tmp_path / 't'},{tmp_path / 's'}"] * 2, None)
    with pytest.raises(PairDefinitionError, match="pair name 'default' is already taken"):
        define_pairs([f"default={tmp_path / 't'},{tmp_path / 's'}"], None)
