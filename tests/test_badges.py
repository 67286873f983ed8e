"""Every Colab badge and install line agrees with pyproject.toml's one Repository URL."""

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("update_badges", ROOT / "tools" / "update_badges.py")
update_badges = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_badges)

FORK = "https://github.com/someone/tlcourse-fork"


def test_badges_and_install_lines_agree_with_pyproject():
    url = update_badges.repository_url()
    assert url.startswith("https://github.com/")
    assert update_badges.check() == []
    readme = (ROOT / "README.md").read_text()
    assert f'pip install --quiet "tlcourse[colab] @ git+{url}@main"' in readme
    for path in update_badges.notebooks():
        cells = json.loads(path.read_text())["cells"]
        assert cells[0]["cell_type"] == "markdown" and cells[0]["source"][0].startswith("# ")
        link = f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/main/notebooks/{path.name}"
        assert link in "".join(cells[0]["source"]), path.name
        first = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        assert f'REPO = "{url}"' in first and 'git+{REPO}@main"' in first, path.name


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, root / name)
    return root


def test_a_fork_that_changes_only_pyproject_fails_until_the_script_runs(tmp_path):
    root = _copy(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(update_badges.repository_url(), FORK))
    assert update_badges.repository_url(root) == FORK
    problems = update_badges.check(root)
    for path in update_badges.notebooks(root):
        assert any(p.startswith(f"{path.name}: the title cell lacks") for p in problems), path.name
        assert any(p.startswith(f"{path.name}: the first code cell") for p in problems), path.name
    assert any(p.startswith("README.md: install line") for p in problems)
    assert update_badges.update(root)
    assert update_badges.check(root) == []
    assert f"git+{FORK}@main" in (root / "README.md").read_text()
    assert update_badges.update(root) == []  # idempotent


def test_a_stray_badge_or_install_line_is_reported(tmp_path):
    root = _copy(tmp_path)
    readme = root / "README.md"
    url = update_badges.repository_url(root)
    readme.write_text(readme.read_text() + f"\n`pip install git+{url}@dev`\n")
    nb_path = update_badges.notebooks(root)[1]
    nb = json.loads(nb_path.read_text())
    nb["cells"][0]["source"] = [s.replace(nb_path.name, "00_quickstart.ipynb") for s in nb["cells"][0]["source"]]
    nb_path.write_text(json.dumps(nb))
    problems = update_badges.check(root)
    assert any("README.md: install line" in p and "@dev" in p for p in problems)
    assert any(p.startswith(f"{nb_path.name}: badge") for p in problems)
