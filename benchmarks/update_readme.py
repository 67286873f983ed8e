"""Copy the committed result tables (results/*.md) into README.md between their markers.

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SECTIONS = {  # README marker -> result files, in order
    "notebook-times": ["notebook_times"],
    "results": ["recipe", "phase_speed", "data_path", "resolution_strategy", "full_phases", "deployment"],
}


def splice(text: str, marker: str, body: str) -> str:
    """Replace what follows ``<!-- marker -->`` up to the next heading (or marker) with ``body``."""
    pattern = re.compile(rf"(<!-- {marker} -->\n)(.*?)(?=\n## |\n<!-- |\Z)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {marker} --> marker")
    return pattern.sub(lambda m: m.group(1) + body, text, count=1)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for marker, names in SECTIONS.items():
        parts = [(RESULTS / f"{n}.md").read_text().strip() for n in names if (RESULTS / f"{n}.md").exists()]
        body = "\n\n".join(parts) + "\n" if parts else "_not measured yet_\n"
        text = splice(text, marker, "\n" + body)
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
