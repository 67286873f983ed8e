"""The interview quiz of notebook 06: questions live in ``quiz.json`` beside this module.

Each question names the notebook and the section heading whose cell demonstrates the answer, so a
reader who gets it wrong knows where to look; ``tests/test_quiz.py`` checks those headings exist.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import TLCourseError

QUIZ_PATH = Path(__file__).with_name("quiz.json")
_NOTEBOOK = re.compile(r"^\d\d_[a-z0-9_]+$")
_FIELDS = {
    "id": str,
    "question": str,
    "choices": list,
    "answer": int,
    "explanation": str,
    "notebook": str,
    "section": str,
}


class QuizError(TLCourseError, ValueError):
    """The quiz data file is missing or malformed; the message names the question and the field."""


@dataclass(frozen=True)
class Question:
    """One multiple-choice question, its answer index, why, and where the course shows it."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    explanation: str
    notebook: str  # e.g. "06_interview_qa"
    section: str  # a markdown heading in that notebook

    def check(self, choice: int) -> bool:
        """True when ``choice`` (an index into ``choices``) is the right answer."""
        return int(choice) == self.answer

    @property
    def where(self) -> str:
        return f"notebooks/{self.notebook}.ipynb, section \u201c{self.section}\u201d"


def _question(i: int, item) -> Question:
    where = f"question {i + 1}"
    if not isinstance(item, dict):
        raise QuizError(f"{where}: expected an object with fields {sorted(_FIELDS)}, got {type(item).__name__}")
    where = f"question {i + 1} ({item.get('id', 'no id')!r})"
    missing = [k for k in _FIELDS if k not in item]
    if missing:
        raise QuizError(f"{where}: missing field(s) {missing}")
    extra = sorted(set(item) - set(_FIELDS))
    if extra:
        raise QuizError(f"{where}: unknown field(s) {extra}; known: {sorted(_FIELDS)}")
    for key, kind in _FIELDS.items():
        value = item[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise QuizError(f"{where}: field {key!r} must be {kind.__name__}, got {type(value).__name__}")
        if kind is str and not value.strip():
            raise QuizError(f"{where}: field {key!r} is empty")
    choices = item["choices"]
    if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise QuizError(f"{where}: 'choices' must be a list of at least two non-empty strings")
    if len(set(choices)) != len(choices):
        raise QuizError(f"{where}: 'choices' has duplicates")
    if not 0 <= item["answer"] < len(choices):
        raise QuizError(
            f"{where}: 'answer' is {item['answer']}, but there are {len(choices)} choices "
            f"(indices 0..{len(choices) - 1})"
        )
    if not _NOTEBOOK.match(item["notebook"]):
        raise QuizError(f"{where}: 'notebook' must be a notebook name like '06_interview_qa', got {item['notebook']!r}")
    return Question(
        item["id"],
        item["question"],
        tuple(choices),
        item["answer"],
        item["explanation"],
        item["notebook"],
        item["section"],
    )


def parse_questions(obj) -> list[Question]:
    """Validate decoded quiz data (``{"version": 1, "questions": [...]}``); return the questions."""
    if not isinstance(obj, dict) or not isinstance(obj.get("questions"), list):
        raise QuizError('quiz data must be an object with a "questions" list')
    if obj.get("version") != 1:
        raise QuizError(f"quiz data version {obj.get('version')!r} is not supported (expected 1)")
    if not obj["questions"]:
        raise QuizError("quiz data has no questions")
    questions = [_question(i, q) for i, q in enumerate(obj["questions"])]
    seen = set()
    for q in questions:
        if q.id in seen:
            raise QuizError(f"question id {q.id!r} is used twice; ids must be unique")
        seen.add(q.id)
    return questions


def load_questions(path: str | Path | None = None) -> list[Question]:
    """Read and validate the quiz (the package's ``quiz.json`` unless ``path`` is given)."""
    path = Path(path) if path else QUIZ_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise QuizError(f"{path}: cannot read the quiz file ({e.strerror or e})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise QuizError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    try:
        return parse_questions(obj)
    except QuizError as e:
        raise QuizError(f"{path}: {e}") from None
