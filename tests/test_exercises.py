"""Every exercise solution runs against the package as it is.

Solutions stay hidden from learners in collapsed ``<details>`` blocks of the notebooks' markdown; this test
extracts their ```python blocks, appends them as code cells after the notebook's own cells, and executes the
whole notebook once with nbclient in the smoke profile (a temporary copy; the notebook file is not changed).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DETAILS = re.compile(r"<details>.*?</details>", re.S)
CODE = re.compile(r"```python\n(.*?)```", re.S)


def solution_blocks(path: Path) -> list[str]:
    """The hidden ``<details>`` blocks of a notebook's markdown, in order."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [d for c in nb["cells"] if c["cell_type"] == "markdown" for d in DETAILS.findall("".join(c["source"]))]


def solution_code(path: Path) -> list[str]:
    """Each solution's Python code, dedented (it sits indented under a list item)."""
    return ["\n".join(textwrap.dedent(code).strip() for code in CODE.findall(block)) for block in solution_blocks(path)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_solution_is_executable_code(path):
    blocks = solution_blocks(path)
    assert blocks, f"{path.name}: no exercise solutions in <details> blocks"
    for block in blocks:
        assert CODE.search(block), f"{path.name}: a solution has no ```python block to run: {block[:120]!r}"


def test_solution_code_is_extracted_and_dedented(tmp_path):
    md = (
        "1. **(easy)** Try it.\n   <details><summary>Solution</summary>\n\n"
        "   ```python\n   x = 1\n   print(x)\n   ```\n   </details>\n"
    )
    nb = {"cells": [{"cell_type": "markdown", "source": [md]}]}
    path = tmp_path / "99_x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert solution_code(path) == ["x = 1\nprint(x)"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_run_after_the_notebook(path, cfg, monkeypatch):
    """The notebook's cells, then every solution, once, in the smoke profile (``cfg`` skips without CIFAR-10)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TLCOURSE_PROFILE", "smoke")  # the kernel inherits the environment
    nb = nbformat.read(path, as_version=4)
    for code in solution_code(path):
        nb.cells.append(nbformat.v4.new_code_cell(code, metadata={"tags": ["solution"]}))
    client = nbclient.NotebookClient(
        nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
