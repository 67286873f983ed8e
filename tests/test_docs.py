"""The teaching kit (docs/) agrees with the notebooks and with the measured notebook run times."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SYLLABUS = (ROOT / "docs" / "syllabus.md").read_text()
NOTES = (ROOT / "docs" / "instructor_notes.md").read_text()
TIMES_FILE = ROOT / "benchmarks" / "results" / "notebook_times.md"


def normalize(text: str) -> str:
    """Lower case, without markdown emphasis, code ticks or quotes, single spaces."""
    return " ".join(re.sub(r"[*`\"“”]", "", text).lower().split())


def markdown_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]


def section_headings(path: Path) -> list[str]:
    """The notebook's ``##`` headings, in order."""
    return [ln[3:].strip() for src in markdown_cells(path) for ln in src.splitlines() if ln.startswith("## ")]


def before_running_prompts(path: Path) -> list[tuple[str, str]]:
    """(nearest preceding ``##`` heading, prompt text) for every "Before running" in the notebook's markdown."""
    section, found = "", []
    for src in markdown_cells(path):
        lines = src.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("## "):
                section = line[3:].strip()
            m = re.search(r"before running\W*", line, flags=re.I)
            if m:
                rest = [line[m.end() :]]
                for nxt in lines[i + 1 :]:
                    if not nxt.strip():
                        break
                    rest.append(nxt)
                found.append((section, " ".join(" ".join(rest).split())))
    return found


def doc_sections(text: str, level: str) -> dict[str, str]:
    """Heading text -> body for every heading of exactly ``level`` (``##`` or ``###``) in ``text``."""
    parts = re.split(rf"^{level} (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def notes_for(stem: str) -> dict[str, str]:
    """The ``###`` subsections under ``## <stem>`` in the instructor notes."""
    body = doc_sections(NOTES, "##").get(stem)
    assert body is not None, f"docs/instructor_notes.md has no '## {stem}' section"
    return doc_sections(body, "###")


def measured_times() -> dict[str, dict[str, str]]:
    """notebook -> {column: value} from the results table."""
    lines = [ln for ln in TIMES_FILE.read_text().splitlines() if ln.startswith("|")]
    cols = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(cols, (v.strip() for v in ln.strip("|").split("|")))) for ln in lines[2:]]
    return {r.pop("notebook"): r for r in rows}


def syllabus_time_lines(kind: str) -> dict[str, dict[str, str]]:
    """Marker argument -> {column: value} for each ``<!-- compute-<kind> ... -->`` line in the syllabus."""
    out = {}
    for arg, line in re.findall(rf"<!-- compute-{kind} ([^>]+?) -->\n([^\n]*)", SYLLABUS):
        assert line.startswith("**Compute time**"), f"no compute-time line after the {arg} marker"
        parts = line.split("): ", 1)[1].rstrip(".").split(" · ")
        out[arg] = dict(re.match(r"(.+?\)|GPU) (.+)", p).groups() for p in parts)
    return out


def test_syllabus_compute_times_equal_the_results_file():
    times = measured_times()
    assert set(times) == {p.stem for p in NOTEBOOKS}, "the results file and notebooks/ differ"
    assert syllabus_time_lines("time") == times


def test_syllabus_path_totals_are_the_sums_of_the_results_file():
    times = measured_times()
    by_number = {stem[:2]: stem for stem in times}
    totals = syllabus_time_lines("total")
    assert {"00 03 04 06", "00 01 02 03 04 05 06 07"} <= set(totals)  # the interview sprint and the full course
    for numbers, shown in totals.items():
        stems = [by_number[n] for n in numbers.split()]
        for col, value in shown.items():
            minutes = [re.fullmatch(r"([0-9.]+) min", times[s][col]) for s in stems]
            if all(minutes):
                assert value == f"{sum(float(m.group(1)) for m in minutes):.1f} min", (numbers, col)
            else:
                assert "measured" in value, (numbers, col, value)


def test_syllabus_is_what_update_docs_writes():
    """Objectives copied from the notebooks and times from the results file are current (rerun update_docs)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        update_docs = importlib.import_module("update_docs")
        assert update_docs.update_syllabus(SYLLABUS, update_docs.notebook_times()) == SYLLABUS, (
            "docs/syllabus.md is stale: run python benchmarks/update_docs.py"
        )
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_syllabus_plan_covers_every_section_in_a_60_to_90_minute_class(path: Path):
    body = doc_sections(SYLLABUS, "##")
    section = next((b for h, b in body.items() if h.startswith(path.stem)), None)
    assert section is not None, f"docs/syllabus.md has no '## {path.stem} ...' section"
    assert f"<!-- objectives {path.stem} -->" in section and f"<!-- compute-time {path.stem} -->" in section
    assert "**Prerequisites:**" in section
    rows = re.findall(r"^\| (.+?) \| (\d+) \|", section, flags=re.M)
    planned = [name for name, _ in rows]
    assert planned == section_headings(path), "the plan must name the notebook's ## sections, in order"
    assert 60 <= sum(int(m) for _, m in rows) <= 90


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_before_running_prompt_has_an_answer(path: Path):
    notes = notes_for(path.stem)
    for section, prompt in before_running_prompts(path):
        first_words = " ".join(normalize(prompt).split()[:4])
        matches = [
            body
            for heading, body in notes.items()
            if normalize(section) in normalize(heading) and first_words in normalize(heading)
        ]
        assert matches, f"no '### {section} — before running: \"{first_words} ...\"' in instructor_notes.md"
        assert len(matches[0].strip()) > 80, f"the answer to '{first_words}' in {path.stem} is too short"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_an_answer_and_each_notebook_has_mistakes_and_questions(path: Path):
    cell = next((src for src in markdown_cells(path) if "## Exercises" in src), "")
    exercises = re.split(r"^## ", cell.split("## Exercises", 1)[-1], flags=re.M)[0]
    count = len(re.findall(r"^\d+\. \*\*\(", exercises, flags=re.M))
    assert count >= 2, f"{path.stem}: exercises not found"
    notes = notes_for(path.stem)
    numbered = sorted(int(m.group(1)) for h in notes if (m := re.match(r"Exercise (\d+) ", h)))
    assert numbered == list(range(1, count + 1))
    for part in ("Common mistakes", "Discussion questions"):
        assert part in notes, f"{path.stem}: no '### {part}'"
        assert len(re.findall(r"^- ", notes[part], flags=re.M)) >= 3, f"{path.stem}: '{part}' needs 3 or more bullets"
