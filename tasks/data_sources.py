"""Where each task's data comes from: for every file an adapter reads, its origin, size, sha256 and license.

The facts are those of ``../shared/data/<task>/SOURCE.md`` and ``SHA256SUMS``: every file is the original release
at a pinned commit (or the official download), byte for byte, except DialogSum's train file, which is rebuilt from
the authors' 2021 archive by the recipe recorded here. Sizes and hashes live in ``tasks/data_manifests/<task>.tsv``
(one line per file: sha256, bytes, path under the task folder); origins, licenses and the recipe live below.
A test checks that the manifests cover exactly the files each adapter's ``data_files()`` names.
"""
from __future__ import annotations

import ast
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

__all__ = ["DataFile", "Derivation", "Origin", "TaskData", "TASK_DATA", "task_data", "python_literals_to_json_lines"]

MANIFEST_DIR = Path(__file__).resolve().parent / "data_manifests"
RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Origin:
    """Files whose path (under the task folder) starts with ``prefix`` come from ``url_base`` + the rest of it."""

    prefix: str
    url_base: str


@dataclass(frozen=True)
class Derivation:
    """A file rebuilt from ``member`` of a zip archive by ``recipe`` (bytes of the member -> bytes of the file)."""

    archive_url: str
    archive_size: int
    archive_sha256: str
    member: str
    recipe: Callable[[bytes], bytes]

    def build(self, archive: bytes) -> bytes:
        """The derived file's bytes from the archive's bytes."""
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            return self.recipe(bundle.read(self.member))


@dataclass(frozen=True)
class DataFile:
    """One file a task reads. ``url`` is where its bytes come from; for a derived file, the archive's URL."""

    task: str
    path: str  # relative to the data directory, e.g. "qed/qed-dev.jsonlines"
    size: int
    sha256: str
    url: str
    derivation: Derivation | None = None

    @property
    def download_size(self) -> int:
        """Bytes to download for this file (the archive's, for a derived file)."""
        return self.derivation.archive_size if self.derivation else self.size


@dataclass(frozen=True)
class TaskData:
    """Everything a task reads from its data folder ``<data dir>/<subdir>``, with its origin and license."""

    task: str
    subdir: str
    license: str
    origin: str  # one line, for people: repository and commit, or the official page
    files: tuple[DataFile, ...]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)


def python_literals_to_json_lines(member: bytes) -> bytes:
    """DialogSum's 2021 archive writes each record as a Python dict literal (``str(dict)``); SOURCE.md's recipe
    parses each non-blank line with ``ast.literal_eval`` and writes it back as one line of
    ``json.dumps(..., ensure_ascii=False)`` ending in a newline; keys, values and order are unchanged."""
    lines = member.decode("utf-8").split("\n")  # not splitlines(): that also splits at Unicode line separators
    records = (ast.literal_eval(line) for line in lines if line.strip())
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def _read_manifest(task: str) -> list[tuple[str, int, str]]:
    """``(sha256, size, path under the task folder)`` for each line of ``data_manifests/<task>.tsv``."""
    rows = []
    for line in (MANIFEST_DIR / f"{task}.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            sha256, size, path = line.split("\t")
            rows.append((sha256, int(size), path))
    return rows


def _task_data(task: str, *, license: str, origin: str, origins: tuple[Origin, ...],
               derived: Mapping[str, Derivation] | None = None) -> TaskData:
    """The manifest of ``task`` joined with its origins: a derived path takes its recipe, any other path the URL
    of the first origin whose prefix it starts with."""
    files = []
    for sha256, size, path in _read_manifest(task):
        derivation = (derived or {}).get(path)
        if derivation is not None:
            url = derivation.archive_url
        else:
            source = next(o for o in origins if path.startswith(o.prefix))
            url = source.url_base + path.removeprefix(source.prefix)
        files.append(DataFile(task, f"{task}/{path}", size, sha256, url, derivation))
    return TaskData(task, task, license, origin, tuple(files))


_QED = f"{RAW}/google-research-datasets/QED"
_DIALOGSUM = f"{RAW}/cylnlp/dialogsum"

TASK_DATA: Mapping[str, TaskData] = {
    data.task: data
    for data in (
        _task_data(
            "qed",
            license="CC BY-SA 3.0 (Wikipedia text; the repository has no LICENSE file)",
            origin="github.com/google-research-datasets/QED @ 2492920 (dev), cdf8ed4 (pre-release train shards)",
            origins=(
                # The shards sit at the repository root of the initial data check-in (2020-08-26).
                Origin("prerelease_train_shards_2020-08-26/", f"{_QED}/cdf8ed42edd22dd38ce236385ba4f1042ed519cb/"),
                Origin("", f"{_QED}/2492920337122918bbfc7d12c1268b9af796c6cf/"),
            ),
        ),
        _task_data(
            "squad",
            license="CC BY-SA 4.0",
            origin="rajpurkar.github.io/SQuAD-explorer (official dev-v1.1.json)",
            origins=(Origin("", "https://rajpurkar.github.io/SQuAD-explorer/dataset/"),),
        ),
        _task_data(
            "fairytaleqa",
            license="Apache-2.0 (stories from Project Gutenberg, public domain)",
            origin="github.com/uci-soe/FairytaleQAData @ a24ddc1",
            origins=(Origin("", f"{RAW}/uci-soe/FairytaleQAData/a24ddc17364666b7c13a425b9970c87368b03417/"),),
        ),
        _task_data(
            "pubmedqa",
            license="MIT",
            origin="github.com/pubmedqa/pubmedqa @ 1cbae8e (data/)",
            origins=(Origin("", f"{RAW}/pubmedqa/pubmedqa/1cbae8e92f72f20c8d3747cbb3bf5bc53554d997/data/"),),
        ),
        _task_data(
            "dialogsum",
            license="CC BY-NC-SA 4.0 (non-commercial use only)",
            origin="github.com/cylnlp/dialogsum @ 848cc8c (test); train rebuilt from DialogSum_Data.zip @ 67b15f6",
            origins=(Origin("", f"{_DIALOGSUM}/848cc8c05e0a04def79326539de827f1b28786a0/DialogSum_Data/"),),
            derived={
                # The archive the authors added and removed on 2021-06-01 (git blob 0eafb01); its size is the one
                # SOURCE.md gives, its sha256 was taken from that blob.
                "dialogsum.train.jsonl": Derivation(
                    archive_url=f"{_DIALOGSUM}/67b15f6439b42d419f6626aa2a2e5b07e3aa4ea9/DialogSum_Data.zip",
                    archive_size=4_145_589,
                    archive_sha256="640e43ee9a208f79618de9ce8f3dd2b56fdbb5fe81e619189fbba033254387f4",
                    member="DialogSum_Data/dialogsum.train.jsonl",
                    recipe=python_literals_to_json_lines,
                ),
            },
        ),
    )
}


def task_data(name: str) -> TaskData:
    """The data record of task ``name``; an unknown name is a one-line error listing the known ones."""
    if name not in TASK_DATA:
        raise ValueError(f"no data source registered for task {name!r}; known: {', '.join(TASK_DATA)}")
    return TASK_DATA[name]
