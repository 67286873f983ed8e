"""Measured numbers in the notebooks' markdown live where their source is named.

A number with a unit (%, ms, s, min, x/×, points, MB, img/s) typed into running prose goes stale the day
the code changes. The course keeps such figures in a ``> **Reference results**`` box (backbone, profile,
data, machine), in a ``> **Claim check**`` (which may quote the figure it checks), in the spliced
``**Reference timings**`` table, or prints them from a cell; a "Before running" prompt may offer guesses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BOXES = ("> **Reference results**", "> **Claim check**")
PROMPTS = ("**Before running:**", "*Before running:*")
NUMBER = r"[-+−~≈]?\d[\d,]*(?:\.\d+)?"
UNIT = re.compile(
    rf"(?<![\w.]){NUMBER}(?:\s?(?:[-–/]|→|to)\s?{NUMBER})*\s?(?:%|ms\b|s\b|min\b|×|x\b|points?\b|MB\b|img/s\b)"
)
# Constants, not measurements: the seed's promise (quoted wherever it is checked), a bound, torchvision's
# RandomResizedCrop default area range, and sizes such as 32×32 or 1×1 (removed by SIZES).
ALLOWED = ("85–90%", "85–90 %", "sums to 100%", "towards 100%", "8–100% of its area")
SIZES = re.compile(r"\d+\s?×\s?\d+")
BOX_NAMES = {
    "backbone": re.compile(r"EfficientNet-Lite0|efficientnet_lite0|ResNet-18|resnet18"),
    "profile or image counts": re.compile(r"(smoke|quick|full) profile|\d[\d,]* (train|training|test)\b"),
    "data": re.compile(r"CIFAR-10"),
    "machine": re.compile(r"\bCPU\b|\bGPU\b|H200"),
}


def blocks(source: str) -> list[list[str]]:
    """Markdown split into blocks (paragraphs, quotes, tables) at blank lines."""
    out, current = [], []
    for line in source.splitlines():
        if line.strip():
            current.append(line)
        elif current:
            out.append(current)
            current = []
    return out + ([current] if current else [])


def prose_lines(source: str) -> list[str]:
    """Lines outside Reference results / Claim check boxes, timing tables and prediction prompts."""
    kept, after_timings = [], False
    for block in blocks(source):
        first = block[0].strip()
        exempt = first.startswith(BOXES + PROMPTS) or (after_timings and first.startswith("|"))
        after_timings = first.startswith("**Reference timings**")
        if not (exempt or after_timings):
            kept.extend(block)
    return kept


def unboxed_numbers(source: str) -> list[str]:
    """Each ``number unit`` in markdown prose, with its line for context."""
    found = []
    for line in prose_lines(source):
        text = re.sub(r"`[^`]*`", " ", line)
        for phrase in ALLOWED:
            text = text.replace(phrase, " ")
        for m in UNIT.finditer(SIZES.sub(" ", text)):
            found.append(f"{m.group(0).strip()!r} in: {line.strip()[:150]}")
    return found


def markdown(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_measured_numbers_are_boxed_or_printed(path):
    found = [f for source in markdown(path) for f in unboxed_numbers(source)]
    assert not found, f"{path.name}: numbers with a unit outside a Reference results box:\n" + "\n".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_reference_boxes_name_where_their_numbers_come_from(path):
    for source in markdown(path):
        for block in blocks(source):
            if block[0].startswith("> **Reference results**"):
                text = " ".join(block)
                missing = [what for what, pattern in BOX_NAMES.items() if not pattern.search(text)]
                assert not missing, f"{path.name}: a Reference results box names no {missing}: {block[0][:120]}"


@pytest.mark.parametrize(
    "text, flagged",
    [
        ("The probe reached 47.4% here.", ["47.4%"]),
        ("epochs of about 23 s each, 3.1× faster, 0.69 ms, 13.8 MB, 2.6 points, 9,379 img/s", 6),
        ("from 44.8 % to 47.6 % in 0.9 min", ["44.8 %", "47.6 %", "0.9 min"]),
        ("a 3×3 convolution on a 1×1 map, 32 px, 10 classes, 50,000 images, Adam 1e-3", []),
        ("> **Reference results** — EfficientNet-Lite0, quick profile: 47.4%", []),
        ("> **Claim check** — the seed's 85–90% at 32 px", []),
        ("**Before running:** 2×, 100× or 10%?", []),
        ("**Reference timings** (measured)\n\n| quick | 1.8 min |", []),
        ("| a table outside any box | 1.8 min |", ["1.8 min"]),
    ],
)
def test_the_scanner_flags_prose_numbers_only(text, flagged):
    found = [f.split(" in: ")[0].strip("'") for f in unboxed_numbers(text)]
    assert (len(found) == flagged) if isinstance(flagged, int) else (found == flagged)
