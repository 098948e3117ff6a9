"""FairytaleQA: generative QA over sections of children's stories (official split, ``data-by-train-split``).

- **train** = ``questions/train`` (8,548), **test** = ``questions/test`` (1,007, the published evaluation set);
  the val split is not used. Question files are read in sorted file-name order, rows in file order.
- Context = the texts of the story sections named by ``cor_section`` (a number or a comma-separated list such as
  ``"7, 9"``), in the listed order (a repeated number once), joined with a newline; a section number that
  appears on several rows of the story file (one story has two rows numbered 5) contributes all of them, in
  file order.
- ``answer`` = ``answer1``; ``references`` = ``answer1`` and ``answer4`` when non-empty (the two annotators'
  ground truths; always both in test). Answers 2/3/5/6 are alternatives the official evaluation ignores.
- Ids are ``"<story>#<row>"`` (row = 1-based data row of the questions CSV): ``question_id`` repeats within a
  few train stories. The cluster is the story: its questions share one text, so they are resampled together.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tasks.base import (
    DataError,
    Example,
    GenerativeQATask,
    Split,
    get_str,
    make_example,
    read_csv,
)
from tasks.registry import TASKS

SPLIT_DIR = "data-by-train-split"
QUESTIONS_SUFFIX = "-questions.csv"
STORY_SUFFIX = "-story.csv"


@TASKS.register("fairytaleqa", aliases=("fairytale", "ftqa"))
class FairytaleQA(GenerativeQATask):
    """FairytaleQA generative QA (test: official test 1,007; metric: ROUGE-Lsum)."""

    data_subdir = "fairytaleqa"

    def _question_files(self, split: Split) -> list[Path]:
        folder = self.data_dir / SPLIT_DIR / "questions" / split
        files = sorted(folder.glob(f"*{QUESTIONS_SUFFIX}"))
        if not files:
            raise DataError(f"no FairytaleQA question files (*{QUESTIONS_SUFFIX}) in {str(folder)!r}")
        return files

    def _story_file(self, questions_file: Path, split: Split) -> Path:
        story = questions_file.name.removesuffix(QUESTIONS_SUFFIX)
        return self.data_dir / SPLIT_DIR / "section-stories" / split / f"{story}{STORY_SUFFIX}"

    def data_files(self) -> list[Path]:
        files: list[Path] = []
        for split in ("train", "test"):
            for questions_file in self._question_files(split):
                files += [questions_file, self._story_file(questions_file, split)]
        return files

    def _read(self, split: Split) -> Iterator[Example]:
        for questions_file in self._question_files(split):
            story = questions_file.name.removesuffix(QUESTIONS_SUFFIX)
            story_file = self._story_file(questions_file, split)
            sections = _read_sections(story_file)
            for row_number, (where, row) in enumerate(read_csv(questions_file), start=1):
                labels = [label.strip() for label in get_str(row, "cor_section", where, non_empty=True).split(",")]
                missing = [label for label in labels if label not in sections]
                if missing:
                    raise DataError(f"{where}: field 'cor_section' names section(s) {missing} absent from {story_file}")
                context = "\n".join(text for label in dict.fromkeys(labels) for text in sections[label])
                answer = get_str(row, "answer1", where, non_empty=True)
                references = [answer, get_str(row, "answer4", where)]
                question = get_str(row, "question", where, non_empty=True)
                yield make_example(f"{story}#{row_number}", context, question, answer, references, cluster=story)


def _read_sections(path: Path) -> dict[str, list[str]]:
    """Section number (as written) → its texts, in file order."""
    sections: dict[str, list[str]] = {}
    for where, row in read_csv(path):
        label = get_str(row, "section", where, non_empty=True).strip()
        sections.setdefault(label, []).append(get_str(row, "text", where))
    return sections
