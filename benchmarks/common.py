"""Shared by the benchmark scripts: a fresh feature cache, the environment line, and result tables.

Importing it changes nothing; a script runs its work inside ``with fresh_feature_cache():``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tlcourse import config, formats, runtime

RESULTS = Path(__file__).parent / "results"


@contextlib.contextmanager
def fresh_feature_cache() -> Iterator[Path]:
    """Point TLCOURSE_CACHE_DIR at an empty folder that shares only the decoded images, for the ``with`` block.

    Features are then computed as a learner's first run does, instead of timing a read of features cached
    by an earlier run. Afterwards the folder is deleted and TLCOURSE_CACHE_DIR is restored.
    """
    arrays = config.default_cache_dir() / "arrays"
    arrays.mkdir(parents=True, exist_ok=True)  # decoded once, then shared by every run
    before = os.environ.get("TLCOURSE_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="tlcourse-bench-") as tmp:
        cache = Path(tmp)
        (cache / "arrays").symlink_to(arrays.resolve())  # removed as a link: the shared arrays stay
        os.environ["TLCOURSE_CACHE_DIR"] = tmp
        try:
            yield cache
        finally:
            if before is None:
                os.environ.pop("TLCOURSE_CACHE_DIR", None)
            else:
                os.environ["TLCOURSE_CACHE_DIR"] = before


def environment() -> str:
    """Machine, library versions, threads and date, for the header of every result table."""
    m = runtime.describe_machine()
    return (
        f"{m['cpu']} ({m['cores']} cores), GPU: {m['gpu']}; torch {m['torch']}, {m['torch threads']} threads; "
        f"Python {m['python']}; {m['date']}"
    )


def write_table(name: str, title: str, rows: list[dict], notes: list[str]) -> Path:
    """Print the table and write ``results/<name>.md`` (title, environment, notes, table)."""
    table = formats.markdown_table(rows)
    text = "\n".join(
        [f"### {title}", "", f"Measured on: {environment()}", "", *[f"- {n}" for n in notes], "", table, ""]
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of the first markdown table in ``path`` (as :func:`write_table` writes it), header -> cell."""
    lines = (ln.strip() for ln in path.read_text().splitlines())
    table = itertools.takewhile(
        lambda ln: ln.startswith("|"), itertools.dropwhile(lambda ln: not ln.startswith("|"), lines)
    )
    # split on "|" but not on an escaped "\|" inside a cell
    block = [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", ln[1:-1])] for ln in table]
    return [dict(zip(block[0], cells)) for cells in block[2:]]  # block[1] is the |---| line
