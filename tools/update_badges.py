"""Write every "Open in Colab" badge and the Colab install line from pyproject.toml's one repository URL.

    python tools/update_badges.py          # rewrite the notebooks' title badges and first code cells, README's badges
    python tools/update_badges.py --check  # list what disagrees with pyproject.toml; exit 1 if anything does

A fork changes only ``Repository`` under ``[project.urls]`` and runs this script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "main"  # the branch the badges open and the first cell installs from
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_URL = re.compile(
    r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([\w.-]+)/notebooks/([\w.-]+)"
)
GIT_CLONE = re.compile(r"git clone (https://[\w./-]+?)(?:\.git)?(?=[\s`]|$)")
GIT_INSTALL = re.compile(r"git\+(https://[\w./-]+)@([\w.-]+)")
COURSE_ROW = re.compile(r"^\| `(\d\d_\w+)` \|")
# A diagram from assets/ (tools/make_assets.py), as raw.githubusercontent.com serves it: relative links break in
# Colab, and ?sanitize=true makes GitHub send an SVG as an image (image/svg+xml) instead of text/plain.
ASSET_URL = re.compile(
    r"https://raw\.githubusercontent\.com/([\w.-]+/[\w.-]+)/([\w.-]+)/assets/([\w.-]+)(\?sanitize=true)?"
)

FIRST_CELL = """# NBVAL_IGNORE_OUTPUT
import importlib
import subprocess
import sys
from pathlib import Path

REPO = "{url}"
try:  # installed, or installed earlier in this Colab session
    import tlcourse  # noqa: F401
except ImportError:
    clone = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "src" / "tlcourse").is_dir()), None)
    if clone:  # a clone whose package is not installed: use its src/
        sys.path.insert(0, str(clone / "src"))
    elif "google.colab" in sys.modules or any((Path(p) / "google" / "colab").is_dir() for p in sys.path):
        print("Installing tlcourse from GitHub (about a minute; Colab's torch stays as it is) ...")
        pip = [sys.executable, "-m", "pip", "install", "--quiet"]
        subprocess.check_call([*pip, f"tlcourse[colab] @ git+{REPO}@{branch}"])
    else:
        raise ModuleNotFoundError(f"no tlcourse here: pip install -r requirements.txt in a clone of {REPO}") from None
    importlib.invalidate_caches()

from tlcourse import setup_notebook

cfg = setup_notebook()"""


def repository_url(root: Path = ROOT) -> str:
    """``Repository`` under ``[project.urls]`` in pyproject.toml (the one place the URL is written)."""
    text = (root / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.urls\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    match = section and re.search(r'^Repository\s*=\s*"([^"]+)"', section.group(1), re.M)
    if not match:
        raise SystemExit('pyproject.toml has no Repository = "..." under [project.urls]')
    return match.group(1).rstrip("/")


def colab_link(url: str, notebook: str) -> str:
    """The Colab address that opens ``notebooks/<notebook>`` on BRANCH of the GitHub repository ``url``."""
    return f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{BRANCH}/notebooks/{notebook}"


def badge(url: str, notebook: str) -> str:
    """The markdown "Open in Colab" badge for one notebook."""
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_link(url, notebook)})"


def asset_url(url: str, name: str) -> str:
    """The address of ``assets/<name>`` on BRANCH that JupyterLab, GitHub and Colab all display."""
    return f"https://raw.githubusercontent.com/{url.removeprefix('https://github.com/')}/{BRANCH}/assets/{name}?sanitize=true"


def _with_asset_urls(text: str, url: str) -> str:
    return ASSET_URL.sub(lambda m: asset_url(url, m.group(3)), text)


def first_cell(url: str) -> str:
    """Every notebook's first code cell."""
    return FIRST_CELL.replace("{url}", url).replace("{branch}", BRANCH)


def notebooks(root: Path = ROOT) -> list[Path]:
    """The course notebooks, in order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(nb: dict) -> tuple[dict, dict]:
    title = nb["cells"][0]
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    return title, code


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _with_badge(title: str, line: str) -> str:
    """The title cell with ``line`` right under its heading (replacing an older badge)."""
    lines = [ln for ln in title.split("\n") if "[![Open In Colab]" not in ln]
    while lines[1:3] == ["", ""]:
        del lines[1]
    return "\n".join([lines[0], "", line, *lines[1:]])


def _course_row(row: str, url: str, names: dict[str, str]) -> str:
    cells = row.strip().strip("|").split("|")
    return "|".join(["", *cells[:2], f" {badge(url, names[COURSE_ROW.match(row).group(1)])} ", ""])


def update(root: Path = ROOT) -> list[Path]:
    """Rewrite badges, first cells and README's course-map badges from pyproject; return the files changed."""
    url, changed = repository_url(root), []
    for path in notebooks(root):
        nb = json.loads(path.read_text())
        title, code = _cells(nb)
        old = json.dumps(nb)
        title["source"] = _lines(_with_badge("".join(title["source"]), badge(url, path.name)))
        code["source"] = _lines(first_cell(url))
        for cell in nb["cells"]:
            if ASSET_URL.search("".join(cell["source"])):
                cell["source"] = _lines(_with_asset_urls("".join(cell["source"]), url))
        if json.dumps(nb) != old:
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    readme = root / "README.md"
    names = {p.stem: p.name for p in notebooks(root)}
    lines = readme.read_text().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("| notebook | you will be able to |"):
            lines[i], lines[i + 1] = "| notebook | you will be able to | Colab |", "|---|---|---|"
        elif (m := COURSE_ROW.match(line)) and m.group(1) in names:
            lines[i] = _course_row(line, url, names)
    text = GIT_INSTALL.sub(lambda m: f"git+{url}@{BRANCH}", _with_asset_urls("\n".join(lines), url))
    text = GIT_CLONE.sub(lambda m: f"git clone {url}", text)
    if text != readme.read_text():
        readme.write_text(text)
        changed.append(readme)
    return changed


def _link_problems(where: str, text: str, url: str, notebook: str | None = None) -> list[str]:
    repo = url.removeprefix("https://github.com/")
    problems = [f"{where}: git clone {m.group(1)} is not {url}" for m in GIT_CLONE.finditer(text) if m.group(1) != url]
    for m in COLAB_URL.finditer(text):
        if m.group(1) != repo or m.group(2) != BRANCH or (notebook and m.group(3) != notebook):
            problems.append(f"{where}: badge {m.group(0)} should open {colab_link(url, notebook or m.group(3))}")
    for m in GIT_INSTALL.finditer(text):
        if (m.group(1), m.group(2)) != (url, BRANCH):
            problems.append(f"{where}: install line git+{m.group(1)}@{m.group(2)} should be git+{url}@{BRANCH}")
    for m in ASSET_URL.finditer(text):
        if m.group(0) != asset_url(url, m.group(3)):
            problems.append(f"{where}: image {m.group(0)} should be {asset_url(url, m.group(3))}")
    return problems


def check(root: Path = ROOT) -> list[str]:
    """Every badge, repository link and install line that disagrees with pyproject's Repository URL."""
    url, problems = repository_url(root), []
    for path in notebooks(root):
        title, code = _cells(json.loads(path.read_text()))
        if badge(url, path.name) not in "".join(title["source"]):
            problems.append(f"{path.name}: the title cell lacks {badge(url, path.name)}")
        if "".join(code["source"]) != first_cell(url):
            problems.append(f"{path.name}: the first code cell is not the one this script writes")
        for cell in json.loads(path.read_text())["cells"]:
            problems += _link_problems(path.name, "".join(cell["source"]), url, path.name)
    readme = (root / "README.md").read_text()
    problems += _link_problems("README.md", readme, url)
    for path in notebooks(root):
        if readme.count(colab_link(url, path.name)) != 1:
            problems.append(f"README.md: needs exactly one badge opening {colab_link(url, path.name)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report disagreements (exit 1 if any)")
    a = parser.parse_args(argv)
    if a.check:
        problems = check()
        print("\n".join(problems) or f"badges and install lines agree with {repository_url()}")
        return 1 if problems else 0
    for path in update():
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
