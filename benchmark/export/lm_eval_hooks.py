"""The functions lm-evaluation-harness calls for an exported CTKD-Bench task (see ``benchmark.export.lm_eval``).

An exported task's YAML names :func:`load_dataset` as its ``custom_dataset`` and :func:`process_results` as its
``process_results`` (through the folder's small ``ctkd_utils.py``). lm-eval calls :func:`load_dataset` with the
YAML's ``metadata`` merged with the ``--model_args`` (so ``pretrained=<dir>`` arrives here) and ``--metadata``.

The rows are built exactly as our evaluator builds its prompts: the task adapter reads our data files, the same
fixed-seed subset (``limit_eval``), and :class:`benchmark.engine.collate.ViewEncoder` renders each prompt with the
model's own tokenizer (same style, same shots, same token budget), so both harnesses send the model the same text.
Predictions are cleaned and scored with our metric functions, per example; lm-eval's ``mean`` aggregation then
gives the same corpus score as ``Task.score`` (the mean of the per-example scores).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.engine.collate import ViewEncoder
from benchmark.engine.evaluation import clean_prediction
from benchmark.engine.prompting import PromptFormat
from tasks import load as load_task
from tasks.base import examples_to_hf, subset
from tasks.registry import load_tasks

if TYPE_CHECKING:
    import datasets

SPLIT = "test"


def load_dataset(
    *,
    ctkd_task: str,
    data_dir: str,
    prompt_style: str,
    shots: int,
    shot_seed: int,
    max_prompt_tokens: int,
    limit_eval: int | None = None,
    pretrained: Any = None,
    tokenizer: Any = None,
    trust_remote_code: bool = False,
    **_other_metadata: Any,
) -> datasets.DatasetDict:
    """The ``test`` split of ``ctkd_task`` with our prompts rendered for the evaluated model's tokenizer.

    Columns: the :class:`tasks.base.Example` fields, ``prompt`` (the text the model is given) and ``task``.
    """
    import datasets

    task = load_task(ctkd_task, data_dir)
    fmt = PromptFormat(prompt_style, int(shots), int(shot_seed), int(max_prompt_tokens))  # type: ignore[arg-type]
    encoder = ViewEncoder(task, _tokenizer(tokenizer or pretrained, trust_remote_code), fmt,
                          task.load("train") if fmt.shots else [], max_answer_tokens=0)  # answers are not encoded
    examples = subset(task.load(SPLIT), None if limit_eval is None else int(limit_eval))
    rows = examples_to_hf(examples)
    rows = rows.add_column("prompt", [encoder.render(example).text for example in examples])
    rows = rows.add_column("task", [task.name] * len(examples))
    return datasets.DatasetDict({SPLIT: rows})


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """Per-example metrics ×100 of the generation in ``results[0]``, as our evaluator scores it."""
    scorer = load_tasks().get(doc["task"]).scorer
    return scorer.score_one(clean_prediction(results[0]), doc["references"])


def _tokenizer(source: Any, trust_remote_code: bool) -> Any:
    """The tokenizer of the model lm-eval evaluates (a folder or hub id), loaded as lm-eval loads it."""
    if not isinstance(source, (str, Path)):
        raise ValueError("a CTKD-Bench lm-eval task renders prompts with the model's tokenizer: pass --model_args "
                         f"pretrained=<model dir or hub id> (or tokenizer=<dir or hub id>); got {source!r}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source), trust_remote_code=bool(trust_remote_code))
