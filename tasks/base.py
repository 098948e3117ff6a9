"""What every task adapter provides: examples from the original files, prompt pieces, a metric.

An adapter knows nothing about models or methods. It renders the *task* part of a prompt (``format_query``,
``format_answer``); how that is wrapped for a given model (plain few-shot text or a chat template) is decided
by ``benchmark.engine.prompting`` from the pieces returned by :meth:`Task.prompt_item`.

The record readers at the end of this module are shared by the adapters, so that every malformed record is
reported the same way: one line naming the file, the line (JSON Lines), row (CSV) or record key (JSON), and
the field.
"""
from __future__ import annotations

import csv
import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Iterable,
    Iterator,
    Literal,
    Mapping,
    Sequence,
    TypeVar,
)

from benchmark.core.files import read_json as read_json_file
from benchmark.core.files import read_jsonl as read_jsonl_file
from tasks.metrics import ROUGE, SQUAD, Metric

if TYPE_CHECKING:  # datasets takes about a second to import; only the Hugging Face export needs it
    import datasets

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")

T = TypeVar("T")


@dataclass(frozen=True)
class Example:
    """One task example. ``answer`` is the training target; ``references`` are what predictions are scored against.

    ``cluster`` names the source that examples share (FairytaleQA: the story; SQuAD: the article), so that
    uncertainty estimates resample those examples together; empty means the example stands alone.
    """

    id: str
    context: str
    question: str  # "" for summarisation
    answer: str
    references: tuple[str, ...]
    cluster: str = ""

    @property
    def cluster_id(self) -> str:
        """The cluster this example is resampled with: its ``cluster``, or its own id when it stands alone."""
        return self.cluster or self.id


@dataclass(frozen=True)
class PromptItem:
    """``{id, prompt, answer, references}`` plus the pieces a chat template needs."""

    id: str
    prompt: str  # plain k-shot rendering: shots separated by blank lines, then the query
    answer: str
    references: tuple[str, ...]
    query: str  # the query alone, e.g. "Context: ...\nQuestion: ...\nAnswer:"
    shots: tuple[tuple[str, str], ...]  # (query, answer) pairs
    system: str  # the task's system message (used by chat templates)


class DataError(ValueError):
    """A missing data directory/file or a malformed record (names the file, the line and the field)."""

def one_line(text: str) -> str:
    """``text`` with every whitespace run (newlines included) collapsed to one space, stripped."""
    return " ".join(text.split())


def make_example(
    id: str, context: str, question: str, answer: str, references: Iterable[str] = (), *, cluster: str = ""
) -> Example:
    """An :class:`Example` whose answer and references are single lines (generations are cut at the first
    newline, so a target must not contain one); references are de-duplicated in order, empty ones dropped, and
    default to the answer."""
    answer = one_line(answer)
    refs = tuple(dict.fromkeys(r for r in map(one_line, references) if r)) or (answer,)
    return Example(id=id, context=context, question=question, answer=answer, references=refs, cluster=cluster)


class Task:
    """Base class of a task adapter; subclasses set the class attributes and implement :meth:`_read`."""

    name: ClassVar[str]
    metric: ClassVar[str]  # headline metric key of :meth:`score`, e.g. "f1" or "rougeLsum"
    scorer: ClassVar[Metric]  # the metric family that produces :attr:`metric` (tasks.metrics.SQUAD or ROUGE)
    max_new_tokens: ClassVar[int]  # generation length used by the evaluator
    # Shots used when a run does not say. The published setups used 1-5 per teacher; 2 keeps CPU prompts short.
    default_shots: ClassVar[int] = 2
    system_message: ClassVar[str]
    data_subdir: ClassVar[str]  # folder under the data directory

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir) / self.data_subdir
        if not self.data_dir.is_dir():
            raise DataError(f"data directory for task {self.name!r} not found: {str(self.data_dir)!r}")
        self._splits: dict[str, tuple[Example, ...]] = {}

    # -- data ---------------------------------------------------------------------------------------------
    def load(self, split: Split) -> list[Example]:
        """All examples of ``split`` in a deterministic order (read once per instance)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if split not in self._splits:
            examples = tuple(self._read(split))
            seen: set[str] = set()
            for example in examples:
                if example.id in seen:
                    raise DataError(f"{self.name} {split}: duplicate example id {example.id!r}")
                seen.add(example.id)
            self._splits[split] = examples
        return list(self._splits[split])

    def _read(self, split: Split) -> Iterable[Example]:
        """Parse ``split`` from the original files (called once per split by :meth:`load`)."""
        raise NotImplementedError

    def data_files(self) -> list[Path]:
        """The files this adapter reads (hashed into cache keys and run metadata)."""
        raise NotImplementedError

    def to_hf(self, split: Split) -> datasets.Dataset:
        """``split`` as a Hugging Face ``datasets.Dataset``: the :class:`Example` fields, one row per example, in
        :meth:`load` order (the order and ids the evaluator uses)."""
        return examples_to_hf(self.load(split))

    # -- prompts ------------------------------------------------------------------------------------------
    def format_query(self, example: Example) -> str:
        raise NotImplementedError

    def format_answer(self, answer: str) -> str:
        """The answer as it follows the query (a leading space after "Answer:"/"Summary:")."""
        return " " + answer

    def select_shots(self, train: Sequence[Example], k: int, seed: int = 0) -> list[Example]:
        """``k`` fixed shots from the train split (same seed, same shots)."""
        if k == 0:
            return []
        if k > len(train):
            raise ValueError(f"{k} shots requested but the {self.name} train split has {len(train)} examples")
        return random.Random(seed).sample(list(train), k)

    def prompt_item(self, example: Example, shots: Sequence[Example] = ()) -> PromptItem:
        shot_pairs = tuple((self.format_query(s), s.answer) for s in shots)
        query = self.format_query(example)
        blocks = [q + self.format_answer(a) for q, a in shot_pairs] + [query]
        return PromptItem(
            id=example.id,
            prompt="\n\n".join(blocks),
            answer=example.answer,
            references=example.references,
            query=query,
            shots=shot_pairs,
            system=self.system_message,
        )

    def with_context(self, example: Example, context: str) -> Example:
        """The same example with a shortened context (used to fit a prompt into a token budget)."""
        return dataclasses.replace(example, context=context)

    # -- scoring ------------------------------------------------------------------------------------------
    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
        """Corpus metrics ×100 (e.g. ``{"f1": .., "exact_match": ..}``); the headline key is :attr:`metric`."""
        return self.scorer.score(predictions, references)

    def score_one(self, prediction: str, references: Sequence[str]) -> dict[str, float]:
        """Per-example metrics ×100 (stored beside each prediction)."""
        return self.scorer.score_one(prediction, references)


class QATask(Task):
    """Question answering over a context, prompted as ``Context: …\\nQuestion: …\\nAnswer:`` (spec §10.2)."""

    def format_query(self, example: Example) -> str:
        return f"Context: {example.context}\nQuestion: {example.question}\nAnswer:"


class ExtractiveQATask(QATask):
    """Answers are spans of the context, scored with SQuAD token F1 / exact match."""

    metric = "f1"
    scorer = SQUAD
    max_new_tokens = 32
    system_message = (
        "You are a reading-comprehension assistant. Answer the question with a short span of at most five "
        "words copied exactly from the context."
    )


class GenerativeQATask(QATask):
    """Free-form answers, scored with ROUGE (headline rougeLsum)."""

    metric = "rougeLsum"
    scorer = ROUGE
    max_new_tokens = 32
    system_message = (
        "You are a reading-comprehension assistant. Answer the question about the context briefly, "
        "in no more than 15 words."
    )


def examples_to_hf(examples: Sequence[Example]) -> datasets.Dataset:
    """A ``datasets.Dataset`` with one row per example and one string column per :class:`Example` field
    (``references`` a list of strings); the schema is explicit, so an empty sequence still gives the same columns."""
    try:
        import datasets
    except ImportError:
        raise ImportError("Task.to_hf needs the 'datasets' package: pip install -e . (it is a dependency)") from None
    names = [field.name for field in dataclasses.fields(Example)]
    features = datasets.Features({
        name: datasets.List(datasets.Value("string")) if name == "references" else datasets.Value("string")
        for name in names
    })
    columns = {name: [getattr(example, name) for example in examples] for name in names}
    columns["references"] = [list(refs) for refs in columns["references"]]
    return datasets.Dataset.from_dict(columns, features=features)


# -- record readers -----------------------------------------------------------------------------------------
def require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"data file not found: {str(path)!r}")
    return path


def read_json(path: Path) -> Any:
    """The parsed content of a JSON file; a missing or malformed one raises :class:`DataError` naming the file."""
    return read_json_file(require_file(path), DataError)


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` for each non-blank line of a JSON Lines file; ``where`` is ``"<file>, line <n>"``."""
    for number, record in read_jsonl_file(require_file(path), DataError):
        yield f"{path}, line {number}", record


def read_csv(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``(where, row)`` for each data row of a CSV file with a header; ``where`` is ``"<file>, row <n>"``."""
    with require_file(path).open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle)
        number = 0
        try:
            for number, row in enumerate(rows, start=1):
                yield f"{path}, row {number}", row
        except csv.Error as err:
            raise DataError(f"{path}, row {number + 1}: unreadable CSV ({err})") from None
        except UnicodeDecodeError as err:  # decoded in blocks: the bad byte is at or after this row
            raise DataError(f"{path}, row {number + 1} or later: not UTF-8 text ({err.reason})") from None


def as_object(value: Any, where: str) -> dict[str, Any]:
    """``value``, checked to be a JSON object."""
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def get_field(record: Mapping[str, Any], name: str, where: str, kind: type[T]) -> T:
    """``record[name]``, checked to be present (not null) and of type ``kind``."""
    value = record.get(name)
    if value is None:
        raise DataError(f"{where}: missing field {name!r}")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DataError(f"{where}: field {name!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def get_str(record: Mapping[str, Any], name: str, where: str, *, non_empty: bool = False) -> str:
    """A string field; ``non_empty`` also rejects an empty or blank string."""
    value = get_field(record, name, where, str)
    if non_empty and not value.strip():
        raise DataError(f"{where}: field {name!r} is empty")
    return value


SUBSET_SEED = 1234  # fixed: every method and seed sees the same train/eval subsets


def subset(examples: list[Example], limit: int | None) -> list[Example]:
    """The first ``limit`` examples of a fixed-seed shuffle (all of them, in file order, when unlimited)."""
    if limit is None or limit >= len(examples):
        return examples
    order = list(range(len(examples)))
    random.Random(SUBSET_SEED).shuffle(order)
    return [examples[i] for i in sorted(order[:limit])]
