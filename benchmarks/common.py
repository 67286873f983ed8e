"""Shared by the benchmark scripts: the environment line and writing a result table as markdown."""

from __future__ import annotations

import datetime
import os
import platform
import tempfile
from pathlib import Path

import torch

from tlcourse import config

RESULTS = Path(__file__).parent / "results"


def fresh_feature_cache() -> Path:
    """Point TLCOURSE_CACHE_DIR at an empty folder that shares only the decoded images.

    Every benchmark then computes its features as a learner's first run does, instead of timing a
    read of features cached by an earlier run.
    """
    arrays = config.default_cache_dir() / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)  # decoded once, then shared by every run
    cache = Path(tempfile.mkdtemp(prefix="tlcourse-bench-"))
    (cache / "arrays").symlink_to(arrays.resolve())
    os.environ["TLCOURSE_CACHE_DIR"] = str(cache)
    return cache


fresh_feature_cache()  # on import: every benchmark script starts from an empty feature cache


def environment() -> str:
    """Machine, library versions, threads and date, for the header of every result table."""
    if torch.cuda.is_available():
        device = f"GPU {torch.cuda.get_device_name(0)}"
    else:
        device = f"CPU only ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return (
        f"{device}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"Python {platform.python_version()}; {datetime.date.today().isoformat()}"
    )


def write_table(name: str, title: str, rows: list[dict], notes: list[str]) -> Path:
    """Print the table and write ``results/<name>.md`` (title, environment, notes, table)."""
    table = to_markdown(rows)
    text = "\n".join(
        [f"### {title}", "", f"Measured on: {environment()}", "", *[f"- {n}" for n in notes], "", table, ""]
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path


def to_markdown(rows: list[dict]) -> str:
    """A GitHub markdown table; floats get 3 significant digits unless already formatted."""
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
