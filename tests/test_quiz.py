"""The interview quiz: packaged data is valid, points at real sections, bad data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlcourse import quiz

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def good_item(**changes) -> dict:
    item = {
        "id": "q1",
        "question": "Why?",
        "choices": ["because", "no reason"],
        "answer": 0,
        "explanation": "Shown in a cell.",
        "notebook": "06_interview_qa",
        "section": "Q1 · Why?",
    }
    item.update(changes)
    return item


def write(tmp_path: Path, obj) -> Path:
    path = tmp_path / "quiz.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def headings(notebook: str) -> set[str]:
    nb = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text(encoding="utf-8"))
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    found.add(line.lstrip("#").strip())
    return found


def test_packaged_quiz_loads_and_is_varied():
    qs = quiz.load_questions()
    assert len(qs) >= 20
    assert len({q.id for q in qs}) == len(qs)
    assert all(0 <= q.answer < len(q.choices) for q in qs)
    # the right answer is not always in the same place
    assert len({q.answer for q in qs}) >= 3


def test_every_question_points_at_an_existing_section():
    for q in quiz.load_questions():
        path = NOTEBOOKS / f"{q.notebook}.ipynb"
        assert path.is_file(), f"{q.id}: {path} does not exist"
        assert q.section in headings(q.notebook), f"{q.id}: no heading {q.section!r} in {path.name}"


def test_check_and_where():
    q = quiz.parse_questions({"version": 1, "questions": [good_item(answer=1)]})[0]
    assert q.check(1) and not q.check(0)
    assert "06_interview_qa.ipynb" in q.where and "Q1 · Why?" in q.where


@pytest.mark.parametrize(
    "obj, message",
    [
        ("{not json", "not valid JSON (line 1"),
        ([good_item()], 'must be an object with a "questions" list'),
        ({"version": 2, "questions": [good_item()]}, "version 2 is not supported"),
        ({"version": 1, "questions": []}, "has no questions"),
        (
            {"version": 1, "questions": [good_item(answer=2)]},
            "'answer' is 2, but there are 2 choices",
        ),
        ({"version": 1, "questions": [good_item(answer=-1)]}, "'answer' is -1"),
        (
            {"version": 1, "questions": [good_item(answer=True)]},
            "field 'answer' must be int, got bool",
        ),
        (
            {"version": 1, "questions": [good_item(answer="0")]},
            "field 'answer' must be int, got str",
        ),
        (
            {"version": 1, "questions": [good_item(choices=["only one"])]},
            "at least two non-empty strings",
        ),
        ({"version": 1, "questions": [good_item(choices=["a", "a"])]}, "duplicates"),
        (
            {"version": 1, "questions": [good_item(choices=["a", 3])]},
            "at least two non-empty strings",
        ),
        (
            {"version": 1, "questions": [good_item(explanation="  ")]},
            "field 'explanation' is empty",
        ),
        (
            {"version": 1, "questions": [good_item(notebook="interview")]},
            "'notebook' must be a notebook name",
        ),
        ({"version": 1, "questions": [good_item(colour="red")]}, "unknown field(s) ['colour']"),
        ({"version": 1, "questions": [good_item(), good_item()]}, "question id 'q1' is used twice"),
        ({"version": 1, "questions": ["just text"]}, "question 1: expected an object"),
    ],
)
def test_malformed_data_is_refused_with_a_clear_message(tmp_path, obj, message):
    path = write(tmp_path, obj)
    with pytest.raises(quiz.QuizError) as e:
        quiz.load_questions(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)


def test_missing_field_names_the_question(tmp_path):
    item = good_item(id="lr-question")
    del item["section"]
    with pytest.raises(quiz.QuizError, match=r"question 1 \('lr-question'\): missing field\(s\) \['section'\]"):
        quiz.load_questions(write(tmp_path, {"version": 1, "questions": [item]}))


def test_missing_file(tmp_path):
    with pytest.raises(quiz.QuizError, match="cannot read the quiz file"):
        quiz.load_questions(tmp_path / "nope.json")


def test_quiz_widget_gives_instant_feedback_and_keeps_score():
    pytest.importorskip("ipywidgets")
    from tlcourse import widgets

    qs = quiz.parse_questions(
        {
            "version": 1,
            "questions": [
                good_item(id="a", answer=1),
                good_item(id="b", answer=0, question="And <this>?"),
            ],
        }
    )
    box = widgets.quiz(qs)
    score, first, second = box.children
    assert "0 / 2" in score.value
    _, radio1, feedback1 = first.children
    radio1.value = 1
    assert "Correct" in feedback1.value and "Shown in a cell." in feedback1.value
    assert "1 / 2" in score.value
    _, radio2, feedback2 = second.children
    radio2.value = 1
    assert "Not quite" in feedback2.value and "because" in feedback2.value
    assert "1 / 2" in score.value and "2 answered" in score.value
    assert "&lt;this&gt;" in second.children[0].value  # question text is escaped
