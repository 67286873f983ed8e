"""Wall time of each notebook, executed top to bottom in a fresh kernel, per profile.

    python benchmarks/notebook_times.py [--profiles smoke quick] [--notebooks 00 03]

Outputs are discarded (notebooks stay clean); failures are reported in the table, not hidden.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat
from common import RESULTS, fresh_feature_cache, read_table, write_table
from nbclient import NotebookClient

from tlcourse import config

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(path: Path, profile: str, timeout: int, keep: Path | None = None) -> tuple[float, str]:
    """Run ``path`` with ``TLCOURSE_PROFILE=profile``; (seconds, "ok" or the error's first line)."""
    nb = nbformat.read(path, as_version=4)
    os.environ["TLCOURSE_PROFILE"] = profile
    t0 = time.perf_counter()
    try:
        with fresh_feature_cache():  # a first run: decoded images shared, features computed afresh
            NotebookClient(
                nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
            ).execute()
        status = "ok"
    except Exception as e:  # the table reports it; the run goes on with the next notebook
        status = "FAILED: " + re.sub(r"\x1b\[[0-9;]*m", "", str(e).strip().splitlines()[-1])[:80]
    if keep:  # executed copies, to read the figures a profile produced (never committed)
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / f"{path.stem}.{profile}.ipynb")
    return time.perf_counter() - t0, status


def read_rows() -> list[dict]:
    """The rows of the last results/notebook_times.md, if any."""
    path = RESULTS / "notebook_times.md"
    return read_table(path) if path.exists() else []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--profiles", nargs="+", default=["smoke", "quick"])
    p.add_argument("--notebooks", nargs="*", help="number prefixes to run (default: all)")
    p.add_argument("--timeout", type=int, default=3600, help="per cell, seconds")
    p.add_argument("--keep", type=Path, help="also write each executed notebook into this folder")
    a = p.parse_args()
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if a.notebooks:
        paths = sorted((q for q in paths if q.name[:2] in a.notebooks), key=lambda q: a.notebooks.index(q.name[:2]))
    rows = []
    for path in paths:  # in the order asked for; the table is sorted by notebook
        row = {"notebook": path.stem}
        for profile in a.profiles:
            seconds, status = execute(path, profile, a.timeout, a.keep)
            row[f"{profile} (CPU)"] = f"{seconds / 60:.1f} min" if status == "ok" else status
            print(path.stem, profile, round(seconds), status, flush=True)
        row["GPU"] = "not measured here"
        rows.append(row)
    if a.notebooks:  # a partial run replaces its own rows and keeps the others' last measurement
        done = {r["notebook"] for r in rows}
        rows += [r for r in read_rows() if r["notebook"] not in done and list(r) == list(rows[0])]
    rows.sort(key=lambda r: r["notebook"])
    backbone = os.environ.get("TLCOURSE_BACKBONE") or config.DEFAULT_BACKBONE
    write_table(
        "notebook_times",
        "Time to run each notebook top to bottom",
        rows,
        [
            f"Backbone {backbone}, CIFAR-10 (JPEG copy); each run starts with the decoded images cached "
            "(a one-time 16 s) and no cached features, as a learner's first run does.",
            "Command: python benchmarks/notebook_times.py --profiles " + " ".join(a.profiles),
        ],
    )


if __name__ == "__main__":
    main()
