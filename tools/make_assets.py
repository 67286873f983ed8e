"""Draw the course's diagrams as SVG files in assets/.

    python tools/make_assets.py          # (re)write assets/*.svg
    python tools/make_assets.py --check  # list the files that differ from what this script draws; exit 1 if any

The SVG is written by hand, not by a plotting library, so the same code gives the same bytes on every machine
and the files stay small and diffable. Numbers in the diagrams come from the package (``probe.stage_shapes``,
``models.count_parameters``, ``config``) and the course map from docs/syllabus.md; none is typed here.
Notebooks and README show the files through ``update_badges.asset_url`` (tools/update_badges.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

import torch

from tlcourse import config, models, probe

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
SIZES = (32, 128, 224)  # input sizes of the stage map
BACKBONES = {"resnet18": "ResNet-18", "efficientnet_lite0": "EfficientNet-Lite0"}
COLORS = {"pretrained": "#9fc5e8", "frozen": "#d9dee5", "trains": "#f6b26b", "new": "#f6b26b", "projection": "#b6d7a8"}
INK, MUTED, ALERT = "#222222", "#666666", "#c0392b"


class Svg:
    """A few shapes and text, written as SVG with every number rounded: same input, same bytes."""

    def __init__(self, width: int, height: int, title: str):
        self.width, self.height, self.title, self.parts = width, height, title, []

    def rect(self, x, y, w, h, fill="#ffffff", stroke=INK, dash=False, rx=6, width=1.2) -> None:
        extra = ' stroke-dasharray="5 4"' if dash else ""
        self.parts.append(
            f'<rect x="{x:g}" y="{y:g}" width="{w:g}" height="{h:g}" rx="{rx:g}" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="{width:g}"{extra}/>'
        )

    def text(self, x, y, s, size=13, anchor="middle", bold=False, color=INK, italic=False) -> None:
        style = (' font-weight="bold"' if bold else "") + (' font-style="italic"' if italic else "")
        self.parts.append(
            f'<text x="{x:g}" y="{y:g}" font-size="{size:g}" text-anchor="{anchor}" fill="{color}"{style}>'
            f"{escape(s)}</text>"
        )

    def lines(self, x, y, rows: list[str], size=13, gap=None, **kw) -> None:
        for i, row in enumerate(rows):
            self.text(x, y + i * (gap or size * 1.35), row, size, **kw)

    def arrow(self, d: str, color=INK, dash=False) -> None:
        """A path (SVG ``d`` syntax) ending in an arrowhead."""
        extra = ' stroke-dasharray="5 4"' if dash else ""
        self.parts.append(
            f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.4" marker-end="url(#head)"{extra}/>'
        )

    def circle(self, x, y, r, fill="#ffffff") -> None:
        self.parts.append(f'<circle cx="{x:g}" cy="{y:g}" r="{r:g}" fill="{fill}" stroke="{INK}" stroke-width="1.2"/>')

    def render(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
            f"<title>{escape(self.title)}</title>\n"
            f"<!-- drawn by tools/make_assets.py: edit the script, not this file -->\n"
            '<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker></defs>\n'
            f'<rect width="{self.width}" height="{self.height}" fill="#ffffff"/>\n'
        )
        return head + "\n".join(self.parts) + "\n</svg>\n"


def legend(svg: Svg, x: float, y: float, kinds: list[tuple[str, str]]) -> None:
    for i, (color, label) in enumerate(kinds):
        svg.rect(x + i * 150, y - 11, 16, 14, COLORS[color], rx=3)
        svg.text(x + i * 150 + 22, y, label, 12, anchor="start")


def trainable_count(backbone: str, first_trainable: str) -> int:
    model = models.build_model(backbone, num_classes=10, pretrained=False)
    return models.count_parameters(models.freeze_until(model, first_trainable)).trainable


# ---------------------------------------------------------------- the diagrams


def transfer_learning() -> str:
    """Pretrained body -> new head; which stages are frozen and which train in each phase."""
    stages = list(models.STAGES)
    rows = [
        ("ImageNet pretraining", "what you download", {s: "pretrained" for s in stages}, None),
        ("Phase 1 · feature extraction", f'freeze_until(model, "fc") · Adam {config.LR_HEAD:g}', "fc", "03"),
        ("Phase 2 · fine-tuning", f'freeze_until(model, "layer4") · Adam {config.LR_FINETUNE:g}', "layer4", "04"),
    ]
    svg = Svg(1050, 420, "Transfer learning: a pretrained body, a new head, frozen and trainable stages per phase")
    svg.text(
        20,
        30,
        "Transfer learning: keep the pretrained body, replace the head, choose what trains",
        17,
        anchor="start",
        bold=True,
    )
    bw, gap, x0 = 86, 16, 430
    for r, (name, call, first, notebook) in enumerate(rows):
        y = 60 + r * 110
        kind = (
            first
            if isinstance(first, dict)
            else {
                s: ("new" if s == "fc" else "trains" if stages.index(s) >= stages.index(first) else "frozen")
                for s in stages
            }
        )
        svg.text(20, y + 20, name, 14, anchor="start", bold=True)
        svg.text(20, y + 40, f"notebook {notebook} · {call}" if notebook else call, 11.5, anchor="start", color=MUTED)
        if notebook:
            counts = ", ".join(f"{label} {trainable_count(b, first):,}" for b, label in BACKBONES.items())
            svg.text(20, y + 58, f"trainable: {counts}", 11.5, anchor="start", color=MUTED)
        svg.text(x0 - 14, y + 31, "image", 12, anchor="end")
        for i, s in enumerate(stages):
            x = x0 + i * (bw + gap)
            head = s == "fc"
            svg.rect(x, y + 8, bw, 38, COLORS[kind[s]], width=2.4 if head and notebook else 1.2)
            svg.text(x + bw / 2, y + 32, f"{s} ({'1000' if not notebook else '10'})" if head else s, 13)
            label = {"pretrained": "pretrained", "frozen": "frozen", "trains": "trains", "new": "new, trains"}
            svg.text(x + bw / 2, y + 62, label[kind[s]], 11, color=MUTED)
            if i:
                svg.arrow(f"M{x - gap:g},{y + 27:g} L{x:g},{y + 27:g}")
    fc_x = x0 + (len(stages) - 1) * (bw + gap) + bw / 2
    svg.arrow(f"M{fc_x:g},{60 + 68:g} L{fc_x:g},{170 + 8:g}", dash=True)
    svg.text(fc_x - 8, 152, "replace_head(model, 10)", 11.5, anchor="end", italic=True)
    legend(svg, x0, 400, [("pretrained", "pretrained weights"), ("frozen", "frozen"), ("trains", "trains")])
    return svg.render()


def residual_block() -> str:
    """F(x) + x with an identity shortcut, and with the 1x1 projection when the shape changes."""
    svg = Svg(850, 500, "Residual block: y = relu(F(x) + shortcut(x)), identity and 1x1 projection shortcuts")
    svg.text(20, 30, "A residual block: y = relu(F(x) + shortcut(x))", 17, anchor="start", bold=True)
    panels = [(64, 64, 1, "shape kept: the shortcut is x itself"), (64, 128, 2, "shape changes: a 1×1 projection")]
    for p, (cin, cout, stride, caption) in enumerate(panels):
        block = models.ResidualBlock(cin, cout, stride).eval()
        x = torch.zeros(1, cin, 16, 16)
        with torch.no_grad():
            y = block(x)
        shape_in, shape_out = "×".join(map(str, x.shape[1:])), "×".join(map(str, y.shape[1:]))
        ox, cx = 20 + p * 425, 20 + p * 425 + 140
        svg.text(ox, 66, caption, 14, anchor="start", bold=True)
        svg.text(cx, 100, f"x  ({shape_in})", 13)
        steps = [f"3×3 conv, {cout} ch, stride {stride}", "BatchNorm, ReLU", f"3×3 conv, {cout} ch", "BatchNorm"]
        svg.rect(cx - 100, 122, 200, 216, "#fbfbfb", stroke=MUTED, dash=True)
        svg.text(cx - 93, 334, "F(x)", 13, anchor="start", bold=True, color=MUTED)
        for i, step in enumerate(steps):
            top = 132 + i * 48
            svg.rect(cx - 90, top, 180, 34, COLORS["pretrained"])
            svg.text(cx, top + 22, step, 12)
            svg.arrow(f"M{cx:g},{top - 14:g} L{cx:g},{top:g}")
        svg.circle(cx, 370, 14)
        svg.text(cx, 375, "+", 18, bold=True)
        svg.arrow(f"M{cx:g},{132 + 3 * 48 + 34:g} L{cx:g},{356:g}")
        sx = cx + 175
        svg.arrow(f"M{cx + 40:g},{106:g} L{sx:g},{106:g} L{sx:g},{370:g} L{cx + 14:g},{370:g}")
        if block.downsample is None:
            svg.text(sx + 8, 240, "identity: x", 12, anchor="start", italic=True)
        else:
            svg.rect(sx - 64, 200, 128, 74, COLORS["projection"])
            svg.lines(sx, 222, ["downsample:", f"1×1 conv, stride {stride}", "+ BatchNorm"], 12, gap=19)
        svg.rect(cx - 50, 400, 100, 30, COLORS["pretrained"])
        svg.text(cx, 420, "ReLU", 12)
        svg.arrow(f"M{cx:g},{384:g} L{cx:g},{400:g}")
        svg.arrow(f"M{cx:g},{430:g} L{cx:g},{452:g}")
        svg.text(cx, 470, f"y  ({shape_out})", 13)
    svg.text(
        20,
        492,
        "Shapes: models.ResidualBlock on a 16×16 input (channels×height×width); "
        "the parameter names match torchvision's BasicBlock.",
        11.5,
        anchor="start",
        color=MUTED,
    )
    return svg.render()


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def stage_map() -> str:
    """Each stage's output shape at 32, 128 and 224 px, for both backbones (probe.stage_shapes, weights=None)."""
    names = [*models.STAGES[:-1], "avgpool", "fc"]
    bw, gap, x0 = 122, 10, 190
    title = "Stage map of ResNet-18 and EfficientNet-Lite0 at 32, 128, 224 px"
    svg = Svg(x0 + len(names) * (bw + gap) + 10, 420, title)
    svg.text(
        20,
        30,
        "Stage map: output of each stage (channels×height×width) at three input sizes",
        17,
        anchor="start",
        bold=True,
    )
    for r, (backbone, label) in enumerate(BACKBONES.items()):
        model = models.build_model(backbone, num_classes=10, pretrained=False).eval()
        shapes = {s: probe.stage_shapes(model, s) for s in SIZES}
        counts = {**models.count_by_stage(model), "avgpool": models.ParamCounts(0, 0)}
        y = 56 + r * 170
        svg.text(20, y + 26, label, 15, anchor="start", bold=True)
        svg.text(
            20, y + 46, f"{_count(models.count_parameters(model).total)} parameters", 12, anchor="start", color=MUTED
        )
        svg.lines(20, y + 80, [f"{s} px input" for s in SIZES], 12, gap=20, anchor="start", color=MUTED)
        for i, name in enumerate(names):
            x = x0 + i * (bw + gap)
            svg.rect(x, y, bw, 150, COLORS["new" if name == "fc" else "pretrained"])
            svg.text(x + bw / 2, y + 22, name, 13, bold=True)
            svg.text(x + bw / 2, y + 42, f"{_count(counts[name].total)} params", 11, color=MUTED)
            for k, s in enumerate(SIZES):
                shape = shapes[s][name]
                flat = len(shape) == 3 and shape[1:] == (1, 1) and name != "avgpool"
                svg.text(x + bw / 2, y + 80 + 20 * k, _shape(shape), 12, bold=flat, color=ALERT if flat else INK)
    svg.text(
        20,
        398,
        "Bold red: a 1×1 grid, one position for the whole image (the stage sees no layout). "
        "fc outputs the 10 class scores.",
        12,
        anchor="start",
        color=MUTED,
    )
    svg.text(
        20,
        414,
        "Computed by probe.stage_shapes on each backbone with random weights (shapes do not depend on them).",
        11.5,
        anchor="start",
        color=MUTED,
    )
    return svg.render()


def read_syllabus(text: str) -> tuple[dict[str, list[str]], list[tuple[str, list[str]]]]:
    """({notebook: the notebooks it needs}, [(path title, notebook numbers)]) from docs/syllabus.md."""
    needs = {}
    for m in re.finditer(r"^## (\d\d_\w+) — .*?\n\n\*\*Prerequisites:\*\*(.*?)\n\n", text, re.S | re.M):
        needs[m.group(1)] = sorted(set(re.findall(r"\b\d\d_[a-z_]+", m.group(2))) - {m.group(1)})
    paths = [
        (m.group(1).split(":")[0], m.group(2).split())
        for m in re.finditer(r"^### (.+?)\n.*?<!-- compute-total ([\d ]+) -->", text, re.S | re.M)
    ]
    return needs, paths


def notebook_needs(path: Path, names: list[str]) -> list[str]:
    """The notebooks named (by number) in a notebook's own **Prerequisites:** line."""
    title = "".join(json.loads(path.read_text())["cells"][0]["source"])
    line = re.search(r"\*\*Prerequisites:\*\*(.*?)(?:\n\n|$)", title, re.S)
    numbers = set(re.findall(r"\b(\d\d)\b", line.group(1))) if line else set()
    return sorted(n for n in names if n[:2] in numbers and n != path.stem)


def course_map() -> str:
    """Notebooks as boxes, arrows from what each needs, and the suggested paths.

    Prerequisites and paths come from docs/syllabus.md; a notebook it does not cover yet from its own first cell.
    """
    needs, paths = read_syllabus((ROOT / "docs" / "syllabus.md").read_text())
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    names = [p.stem for p in notebooks]
    needs = {p.stem: needs[p.stem] if p.stem in needs else notebook_needs(p, names) for p in notebooks}
    depth: dict[str, int] = {}
    for nb in needs:  # the syllabus lists notebooks in order, so prerequisites come first
        depth[nb] = 1 + max((depth[p] for p in needs[nb]), default=-1)
    columns: dict[int, list[str]] = {}
    for nb, d in depth.items():
        columns.setdefault(d, []).append(nb)
    bw, bh, colw, spine = 150, 56, 176, 180
    needed = {p for required in needs.values() for p in required}
    alone = [nb for nb in needs if not needs[nb] and nb not in needed]  # needs nothing, needed by nothing
    svg = Svg(40 + len(columns) * colw, 400 + 22 * len(paths), "Course map: notebooks, what each needs, paths")
    svg.text(
        20, 30, "Course map: each arrow points from a notebook to one that needs it", 17, anchor="start", bold=True
    )
    pos = {}
    for d, nbs in sorted(columns.items()):
        linked = [nb for nb in nbs if nb not in alone]
        ys = [spine] if len(linked) == 1 else [spine - 70 + 140 * i / (len(linked) - 1) for i in range(len(linked))]
        pos.update({nb: (30 + d * colw, y) for nb, y in zip(linked, ys)})
        pos.update({nb: (30 + d * colw, spine + 110) for nb in nbs if nb in alone})
    for nb, (x, y) in pos.items():
        number, title = nb.split("_", 1)
        svg.rect(x, y - bh / 2, bw, bh, COLORS["pretrained"] if needs[nb] else COLORS["trains"])
        svg.text(x + bw / 2, y - 4, number, 14, bold=True)
        svg.text(x + bw / 2, y + 15, title.replace("_", " "), 12)
    ancestors: dict[str, set[str]] = {}
    for nb in needs:  # in order, so a prerequisite's ancestors are known
        ancestors[nb] = set(needs[nb]).union(*(ancestors[p] for p in needs[nb]))
    for nb, required in needs.items():
        # Only direct needs: an edge that another prerequisite already implies is left out.
        for p in [p for p in required if not any(p in ancestors[q] for q in required)]:
            (x1, y1), (x2, y2) = pos[p], pos[nb]
            between = [n for n in pos if depth[p] < depth[n] < depth[nb] and abs(pos[n][1] - y1) < 1]
            if abs(y1 - y2) >= 1 and depth[nb] - depth[p] == 1 or abs(y1 - y2) < 1 and not between:
                svg.arrow(f"M{x1 + bw:g},{y1:g} L{x2:g},{y2:g}")
            elif abs(y1 - y2) < 1:  # along the spine, over a column: an arc below the boxes
                drop = y1 + bh / 2 + 14 + 14 * (depth[nb] - depth[p])
                svg.arrow(
                    f"M{x1 + bw / 2:g},{y1 + bh / 2:g} C{x1 + bw / 2:g},{drop:g} {x2 + bw / 2:g},{drop:g} "
                    f"{x2 + bw / 2:g},{y2 + bh / 2:g}"
                )
            else:  # from above the spine, over a column: along its own row, then down into the top
                svg.arrow(
                    f"M{x1 + bw:g},{y1:g} C{x1 + bw + 120:g},{y1:g} {x2 + bw / 2:g},{y1:g} "
                    f"{x2 + bw / 2:g},{y2 - bh / 2:g}"
                )
    svg.text(
        20,
        345,
        "Orange: needs no other notebook. A notebook needs what its arrows come from, and all that those need "
        "(docs/syllabus.md).",
        12,
        anchor="start",
        color=MUTED,
    )
    svg.text(20, 375, "Suggested paths", 14, anchor="start", bold=True)
    for i, (title, numbers) in enumerate(paths):
        svg.text(20, 400 + 22 * i, f"{title}: {' → '.join(numbers)}", 13, anchor="start")
    return svg.render()


DIAGRAMS: dict[str, Callable[[], str]] = {
    "transfer_learning.svg": transfer_learning,
    "residual_block.svg": residual_block,
    "stage_map.svg": stage_map,
    "course_map.svg": course_map,
}


def draw_all() -> dict[str, str]:
    """File name -> SVG text of every diagram."""
    return {name: draw() for name, draw in DIAGRAMS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ (exit 1 if any)")
    a = parser.parse_args(argv)
    drawn = draw_all()
    stale = [n for n, t in drawn.items() if not (ASSETS / n).is_file() or (ASSETS / n).read_text() != t]
    if a.check:
        print("\n".join(f"assets/{n} differs from what tools/make_assets.py draws" for n in stale) or "assets agree")
        return 1 if stale else 0
    ASSETS.mkdir(exist_ok=True)
    for name in stale:
        (ASSETS / name).write_text(drawn[name])
        print(f"wrote assets/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
