"""Copy the measured notebook run times (results/notebook_times.md) and each notebook's learning objectives
into docs/syllabus.md at its markers.

    python benchmarks/update_docs.py

``<!-- compute-time 03_feature_extraction -->`` is followed by one notebook's times;
``<!-- compute-total 00 03 04 06 -->`` by the sum over those notebooks (a path through the course);
``<!-- objectives 03_feature_extraction -->`` by the bullets under the notebook's "You will be able to".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from update_readme import notebook_times

ROOT = Path(__file__).resolve().parents[1]
SYLLABUS = ROOT / "docs" / "syllabus.md"
SOURCE = "`benchmarks/results/notebook_times.md`"


def minutes(value: str) -> float | None:
    """``"3.7 min"`` -> 3.7; anything else (``"not measured here"``, a failure) -> None."""
    found = re.fullmatch(r"([0-9.]+) min", value.strip())
    return float(found.group(1)) if found else None


def time_line(times: dict[str, dict[str, str]], stems: list[str], what: str) -> str:
    """``**Compute time** ...: quick (CPU) 3.7 min · smoke (CPU) 0.4 min · GPU not measured here.``"""
    columns = [c for c in times[stems[0]] if c != "notebook"]
    parts = []
    for col in columns:
        values = [times[s][col] for s in stems]
        mins = [minutes(v) for v in values]
        if len(stems) == 1 or None in mins:
            shown = values[0] if len(set(values)) == 1 else "not measured for every notebook"
        else:
            shown = f"{sum(mins):.1f} min"
        parts.append(f"{col} {shown}")
    return f"**Compute time** ({what}; from {SOURCE}): " + " · ".join(parts) + "."


def objectives(stem: str) -> str:
    """The bullet list under "**You will be able to**" in the notebook's first cell."""
    path = ROOT / "notebooks" / f"{stem}.ipynb"
    if not path.exists():
        raise SystemExit(f"docs/syllabus.md names {stem}, which notebooks/ does not have")
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    found = re.search(r"\*\*You will be able to\*\*\n((?:(?:- |  )[^\n]*\n?)+)", first)
    if not found:
        raise SystemExit(f"{path.name}: no '**You will be able to**' list in the first cell")
    return found.group(1).rstrip("\n") + "\n"


def update_syllabus(text: str, times: dict[str, dict[str, str]]) -> str:
    """``text`` with what follows every marker rewritten from ``times`` and the notebooks."""
    by_number = {stem[:2]: stem for stem in times}

    def one(m: re.Match) -> str:
        if m.group(1) not in times:
            raise SystemExit(f"docs/syllabus.md names {m.group(1)}, which results/notebook_times.md does not have")
        return m.group(0).split("\n")[0] + "\n" + time_line(times, [m.group(1)], "whole notebook, first run")

    def total(m: re.Match) -> str:
        stems = [by_number.get(n) for n in m.group(1).split()]
        if None in stems:
            raise SystemExit(f"docs/syllabus.md: a notebook in '{m.group(1)}' is not in results/notebook_times.md")
        return m.group(0).split("\n")[0] + "\n" + time_line(times, stems, "each notebook run once, summed")

    text = re.sub(
        r"<!-- objectives (\S+) -->\n(?:(?:- |  )[^\n]*\n)*",
        lambda m: m.group(0).split("\n")[0] + "\n" + objectives(m.group(1)),
        text,
    )
    text = re.sub(r"<!-- compute-time (\S+) -->\n[^\n]*", one, text)
    return re.sub(r"<!-- compute-total ([0-9 ]+?) -->\n[^\n]*", total, text)


def main() -> None:
    times = notebook_times()
    if not times:
        raise SystemExit("no results/notebook_times.md: run benchmarks/notebook_times.py first")
    SYLLABUS.write_text(update_syllabus(SYLLABUS.read_text(), times))
    print(f"updated {SYLLABUS}")


if __name__ == "__main__":
    main()
