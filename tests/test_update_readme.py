"""benchmarks/update_readme.py splices result files into README between markers; common.py writes and reads tables."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

BEFORE = "# Title\n\nIntro text that stays.\n\n"
AFTER = "\n## Layout\n\nThe end, kept as is.\n"


@pytest.fixture
def bench(monkeypatch):
    """The benchmark helpers, imported as the scripts import them (their folder on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("common"), importlib.import_module("update_readme")


def _section(marker: str) -> str:
    return f"## Section {marker}\n\nProse about {marker}, kept as is.\n\n<!-- {marker} -->\nold {marker} table\n\n"


def _readme(tmp_path: Path, markers) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(BEFORE + "".join(_section(m) for m in markers) + AFTER)
    return readme


def test_splice_replaces_the_marked_sections_only(bench, tmp_path):
    _, update = bench
    marker, names = max(update.SECTIONS.items(), key=lambda kv: len(kv[1]))  # a section of several files
    results = tmp_path / "results"
    results.mkdir()
    for n in reversed(names[:2]):  # written in reverse: the README follows SECTIONS' order, not the files'
        (results / f"{n}.md").write_text(f"### Table {n}\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    readme = _readme(tmp_path, update.SECTIONS)
    update.update_readme(readme, results)
    text = readme.read_text()
    assert "old " not in text and text.startswith(BEFORE) and text.endswith(AFTER)
    for m in update.SECTIONS:  # the prose before each marker is untouched
        assert f"## Section {m}\n\nProse about {m}, kept as is.\n\n<!-- {m} -->\n\n" in text
    first, second = (text.index(f"### Table {n}") for n in names[:2])
    assert text.index(f"<!-- {marker} -->") < first < second
    assert text.count("_not measured yet_") == len(update.SECTIONS) - 1
    update.update_readme(readme, results)  # idempotent: a second run changes nothing
    assert readme.read_text() == text


def test_sections_without_results_say_so(bench, tmp_path):
    _, update = bench
    readme = _readme(tmp_path, update.SECTIONS)
    (tmp_path / "empty").mkdir()
    update.update_readme(readme, tmp_path / "empty")
    assert readme.read_text().count("_not measured yet_") == len(update.SECTIONS)


def test_missing_marker_is_a_clear_error(bench, tmp_path):
    _, update = bench
    missing = list(update.SECTIONS)[-1]
    readme = _readme(tmp_path, [m for m in update.SECTIONS if m != missing])
    before = readme.read_text()
    with pytest.raises(SystemExit, match=f"no <!-- {missing} --> marker"):
        update.update_readme(readme, tmp_path)
    assert readme.read_text() == before  # nothing half-written


def test_the_real_readme_is_spliced_idempotently(bench, tmp_path):
    _, update = bench
    readme = tmp_path / "README.md"
    shutil.copy(BENCHMARKS.parent / "README.md", readme)
    update.update_readme(readme)
    once = readme.read_text()
    update.update_readme(readme)
    assert readme.read_text() == once and once.count("<!-- results -->") == 1


def test_written_tables_read_back(bench, tmp_path, monkeypatch):
    common, update = bench
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    rows = [{"notebook": "00_a", "smoke (CPU)": "0.2 min", "note": "x | y"}, {"notebook": "01_b", "smoke (CPU)": 1.5}]
    path = common.write_table("notebook_times", "Times", rows, ["a note"])
    assert "Measured on: " in path.read_text() and "- a note" in path.read_text()
    got = common.read_table(path)
    assert got == [
        {"notebook": "00_a", "smoke (CPU)": "0.2 min", "note": "x | y"},
        {"notebook": "01_b", "smoke (CPU)": "1.50", "note": ""},
    ]
    monkeypatch.setattr(update, "RESULTS", tmp_path)  # update_readme reads the notebook rows with the same parser
    assert update.notebook_times() == {r["notebook"]: r for r in got}


def test_importing_common_changes_nothing(bench):
    common, _ = bench
    before = dict(os.environ)
    importlib.reload(common)
    assert dict(os.environ) == before


def test_fresh_feature_cache_cleans_up(bench, monkeypatch, tmp_path):
    common, _ = bench
    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(tmp_path / "shared"))
    with common.fresh_feature_cache() as cache:
        assert (
            os.environ["TLCOURSE_CACHE_DIR"] == str(cache)
            and (cache / "arrays").resolve() == (tmp_path / "shared" / "arrays").resolve()
        )
    assert not cache.exists() and (tmp_path / "shared" / "arrays").is_dir()
    assert os.environ["TLCOURSE_CACHE_DIR"] == str(tmp_path / "shared")
