"""Copy the committed result tables (results/*.md) into README.md between their markers, and each
notebook's measured run times (results/notebook_times.md) into its "Reference timings" table.

    python benchmarks/update_readme.py
"""

from __future__ import annotations

import re
from pathlib import Path

from common import RESULTS, read_table

from tlcourse import config

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {  # README marker -> result files, in order
    "notebook-times": ["notebook_times"],
    "engines": ["engines"],
    "results": [
        "full_phases",
        "recipe",
        "phase_speed",
        "data_path",
        "throughput",
        "resolution_strategy",
        "gpu_path",
        "deployment",
        "serve_load",
    ],
    "scaling": ["scaling"],
}


def splice(text: str, marker: str, body: str) -> str:
    """Replace what follows ``<!-- marker -->`` up to the next heading (or marker) with ``body``."""
    pattern = re.compile(rf"(<!-- {marker} -->\n)(.*?)(?=\n## |\n<!-- |\Z)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README has no <!-- {marker} --> marker: add it where the {marker} tables belong")
    return pattern.sub(lambda m: m.group(1) + body, text, count=1)


PROFILE_ROWS = {  # the profiles' own sizes: train / validation / test images
    name: f"{name} ({p.train_size:,} / {p.val_size:,} / {p.test_size:,} images)"
    for name, p in config.PROFILES.items()
    if name in ("smoke", "quick")
}


def notebook_times() -> dict[str, dict[str, str]]:
    """notebook stem -> {"smoke (CPU)": "0.3 min", ...} from results/notebook_times.md."""
    path = RESULTS / "notebook_times.md"
    return {r["notebook"]: r for r in read_table(path)} if path.exists() else {}


def timing_table(times: dict[str, str], date: str) -> str:
    """The markdown table a notebook's first cell shows."""
    lines = [
        f"**Reference timings** (whole notebook, top to bottom, first run; EfficientNet-Lite0; measured by "
        f"`benchmarks/notebook_times.py` on {date}):",
        "",
        "| profile | CPU (2 cores, no GPU) | GPU |",
        "|---|---|---|",
    ]
    for profile, label in PROFILE_ROWS.items():
        lines.append(f"| {label} | {times.get(f'{profile} (CPU)', 'not measured')} | not measured |")
    lines.append("| full (50,000 / 10,000 images) | not measured | not measured |")
    return "\n".join(lines) + "\n"


def update_notebooks() -> None:
    """Rewrite the timing table in each notebook's first cell (sources only: notebooks stay without outputs)."""
    import json

    times = notebook_times()
    stamp = re.search(r"(\d{4}-\d{2}-\d{2})", (RESULTS / "notebook_times.md").read_text()) if times else None
    for stem, row in times.items():
        path = ROOT / "notebooks" / f"{stem}.ipynb"
        nb = json.loads(path.read_text())
        src = "".join(nb["cells"][0]["source"])
        table = timing_table(row, stamp.group(1))
        new = re.sub(
            r"\*\*Reference timings\*\*.*?\n\n(?:\|[^\n]*(?:\n|$))+",
            lambda _: table,  # noqa: B023 (re.sub calls it at once)
            src,
            count=1,
            flags=re.S,
        )
        if new != src:
            nb["cells"][0]["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n")
            print(f"updated {path.name}")


def update_readme(readme: Path, results: Path = RESULTS) -> None:
    """Splice each section's result files from ``results`` into ``readme`` between its markers."""
    text = readme.read_text()
    for marker, names in SECTIONS.items():
        parts = [(results / f"{n}.md").read_text().strip() for n in names if (results / f"{n}.md").exists()]
        body = "\n\n".join(parts) + "\n" if parts else "_not measured yet_\n"
        text = splice(text, marker, "\n" + body)
    readme.write_text(text)
    print(f"updated {readme}")


def main() -> None:
    update_readme(ROOT / "README.md")
    update_notebooks()


if __name__ == "__main__":
    main()
