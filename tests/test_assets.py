"""assets/: each diagram shown exists, is small, is what tools/make_assets.py draws, and uses pyproject's URL."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


update_badges = _tool("update_badges")
make_assets = _tool("make_assets")
MAX_BYTES = 200_000
ANY_ASSET = re.compile(r"[\w./:-]*assets/([\w.-]+\.svg)[\w?=]*")


def _documents(root: Path = ROOT) -> dict[str, str]:
    """README and every notebook's markdown, by file name."""
    docs = {"README.md": (root / "README.md").read_text()}
    for path in update_badges.notebooks(root):
        cells = json.loads(path.read_text())["cells"]
        docs[path.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return docs


def _references(root: Path = ROOT) -> list[tuple[str, str]]:
    found = [(where, m.group(0)) for where, text in _documents(root).items() for m in ANY_ASSET.finditer(text)]
    return [(where, link) for where, link in found if link != update_badges.BADGE_IMAGE]  # Colab's own badge


def test_every_referenced_asset_exists_is_small_and_linked_from_the_repository_url():
    url = update_badges.repository_url()
    refs = _references()
    assert {"README.md", "00_quickstart.ipynb", "01_residual_blocks.ipynb", "03_feature_extraction.ipynb"} <= {
        where for where, _ in refs
    }
    for where, link in refs:
        name = ANY_ASSET.match(link).group(1)
        assert link == update_badges.asset_url(url, name), f"{where}: {link} (a relative link breaks in Colab)"
        path = ROOT / "assets" / name
        assert path.is_file(), f"{where} shows assets/{name}, which does not exist"
        assert path.stat().st_size < MAX_BYTES, f"assets/{name} is {path.stat().st_size:,} bytes"


def test_every_drawn_diagram_is_shown_somewhere():
    shown = {ANY_ASSET.match(link).group(1) for _, link in _references()}
    assert set(make_assets.DIAGRAMS) <= shown
    assert {p.name for p in (ROOT / "assets").iterdir()} == set(make_assets.DIAGRAMS)  # no stray files


@pytest.mark.slow
def test_regenerating_the_assets_gives_the_committed_bytes():
    drawn = make_assets.draw_all()
    for name, text in drawn.items():
        assert (ROOT / "assets" / name).read_text() == text, f"assets/{name} is stale: run python tools/make_assets.py"
        assert text.startswith("<svg ") and text.endswith("</svg>\n") and "<script" not in text
    assert make_assets.draw_all() == drawn  # deterministic: no dates, ids or hash salts


@pytest.mark.slow
def test_numbers_in_the_stage_map_come_from_the_package():
    from tlcourse import models, probe

    svg = (ROOT / "assets" / "stage_map.svg").read_text()
    lite0 = models.build_model("efficientnet_lite0", pretrained=False)
    for size in make_assets.SIZES:
        c, h, w = probe.stage_shapes(lite0, size)["layer4"]
        assert f">{c}×{h}×{w}<" in svg


def test_the_course_map_reads_the_syllabus():
    needs, paths = make_assets.read_syllabus((ROOT / "docs" / "syllabus.md").read_text())
    assert needs["00_quickstart"] == [] and "03_feature_extraction" in needs["04_fine_tuning"]
    assert ("Interview sprint", ["00", "03", "04", "06"]) in paths
    svg = (ROOT / "assets" / "course_map.svg").read_text()
    for path in update_badges.notebooks():
        assert f">{path.stem[:2]}<" in svg, f"{path.name} is missing from the course map"


def test_a_fork_rewrites_the_asset_links_from_pyproject(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    fork = "https://github.com/someone/tlcourse-fork"
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(update_badges.repository_url(), fork))
    assert any(": image https://raw.githubusercontent.com/" in p for p in update_badges.check(root))
    update_badges.update(root)
    assert not [p for p in update_badges.check(root) if ": image " in p]
    links = {link for _, link in _references(root)}
    assert links and all(
        link.startswith("https://raw.githubusercontent.com/someone/tlcourse-fork/main/") for link in links
    )
