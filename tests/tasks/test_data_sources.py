"""tasks.data_sources: the registry covers exactly the files each adapter reads, with the shared copy's hashes;
origins are pinned; DialogSum's recipe rebuilds the released train file; the data directory resolves."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from benchmark.core.paths import default_data_dir, resolve_data_dir, user_data_dir
from tasks.data_sources import TASK_DATA, python_literals_to_json_lines, task_data
from tasks.registry import load_tasks

DATA = default_data_dir()
TASK_NAMES = sorted(TASK_DATA)
PINNED = re.compile(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/(?P<commit>[0-9a-f]{40})/")
SQUAD_OFFICIAL = "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json"


def shared_folder(name: str) -> Path:
    if DATA is None or not (DATA / name).is_dir():
        pytest.skip(f"shared data for {name!r} not found (looked in {DATA}; set CTKD_DATA_DIR)")
    return DATA / name


def shared_sums(folder: Path) -> dict[str, str]:
    """``SHA256SUMS`` as ``{path under the task folder: sha256}`` (format: ``<sha256>  ./<path>``)."""
    sums = {}
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.removeprefix("./")] = digest
    return sums


def test_registry_names_the_builtin_tasks() -> None:
    assert TASK_NAMES == sorted(load_tasks().names())


@pytest.mark.parametrize("name", TASK_NAMES)
def test_registry_covers_exactly_the_files_the_adapter_reads(name: str) -> None:
    folder = shared_folder(name)
    adapter = load_tasks().get(name)(DATA)
    read = {path.relative_to(DATA).as_posix() for path in adapter.data_files()}
    registered = {file.path: file for file in task_data(name).files}
    assert read == set(registered)
    sums = shared_sums(folder)
    for path, file in registered.items():
        under_task = path.removeprefix(f"{name}/")
        assert file.sha256 == sums[under_task], path
        assert file.size == (DATA / path).stat().st_size, path


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_origin_is_pinned_and_named_in_source_md(name: str) -> None:
    """Each URL is at a 40-hex commit that the task's SOURCE.md names (or is SQuAD's official download)."""
    source_md = (shared_folder(name) / "SOURCE.md").read_text(encoding="utf-8")
    for file in task_data(name).files:
        urls = [file.url] + ([file.derivation.archive_url] if file.derivation else [])
        for url in urls:
            if url == SQUAD_OFFICIAL:
                assert "rajpurkar.github.io/SQuAD-explorer" in source_md
                continue
            match = PINNED.match(url)
            assert match is not None, url
            assert match["commit"] in source_md, url


def test_qed_train_shards_come_from_the_initial_check_in_at_the_repository_root() -> None:
    by_path = {file.path: file.url for file in task_data("qed").files}
    base = "https://raw.githubusercontent.com/google-research-datasets/QED/"
    assert by_path["qed/prerelease_train_shards_2020-08-26/nq-train-03-qed.jsonlines"] == (
        base + "cdf8ed42edd22dd38ce236385ba4f1042ed519cb/nq-train-03-qed.jsonlines")
    assert by_path["qed/qed-dev.jsonlines"] == base + "2492920337122918bbfc7d12c1268b9af796c6cf/qed-dev.jsonlines"


def test_only_dialogsum_train_is_derived() -> None:
    derived = [file.path for data in TASK_DATA.values() for file in data.files if file.derivation]
    assert derived == ["dialogsum/dialogsum.train.jsonl"]
    recipe = task_data("dialogsum").files[1].derivation
    assert recipe is not None and recipe.archive_size == 4_145_589  # SOURCE.md's size of DialogSum_Data.zip
    assert recipe.archive_url.endswith("/67b15f6439b42d419f6626aa2a2e5b07e3aa4ea9/DialogSum_Data.zip")
    assert recipe.member == "DialogSum_Data/dialogsum.train.jsonl"


def test_recipe_turns_python_literals_into_json_lines() -> None:
    member = "{'a': \"it's\", 'b': [1, None, True]}\n\n{'z': 'é', 'y': 'x\\ny'}".encode()
    expected = '{"a": "it\'s", "b": [1, null, true]}\n{"z": "é", "y": "x\\ny"}\n'.encode()
    assert python_literals_to_json_lines(member) == expected


def test_recipe_rebuilds_the_released_train_file() -> None:
    """The 2021 archive holds ``str(record)`` per line, without a final newline; the recipe must give back the
    released file byte for byte (its registered sha256)."""
    path = shared_folder("dialogsum") / "dialogsum.train.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    member = "\n".join(repr(json.loads(line)) for line in lines).encode("utf-8")
    assert b'{"fname"' not in member  # really Python literals, not JSON
    rebuilt = python_literals_to_json_lines(member)
    assert hashlib.sha256(rebuilt).hexdigest() == task_data("dialogsum").files[1].sha256


def test_sizes_add_up() -> None:
    assert task_data("pubmedqa").size == 2_584_787 + 11_414  # SOURCE.md's table
    assert len(task_data("fairytaleqa").files) == 2 * (232 + 23)  # a questions and a story file per train/test story


def test_unknown_task_is_a_one_line_error() -> None:
    with pytest.raises(ValueError, match=r"^no data source registered for task 'sqaud'; known: qed, squad, "):
        task_data("sqaud")


def test_data_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_data_dir() == tmp_path / "xdg" / "ctkd-bench" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_data_dir() == tmp_path / "home" / ".cache" / "ctkd-bench" / "data"
    assert resolve_data_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv("CTKD_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("CTKD_DATA_DIR")
    assert resolve_data_dir() == (default_data_dir() or user_data_dir())
    monkeypatch.setattr("benchmark.core.paths.default_data_dir", lambda: None)  # a clone without ../shared/data
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "ctkd-bench" / "data"
