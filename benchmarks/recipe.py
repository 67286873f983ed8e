"""Wall time and test accuracy of named recipes and their variants, each in a fresh process from an empty cache.

    python benchmarks/recipe.py [--variants cpu-fast cpu-fast:image_size=160,flip_tta=0] [--profile full]

A named recipe runs as `python -m tlcourse train --recipe NAME`, the one command a learner types; a variant
(``NAME:field=value,...``, fields of :class:`tlcourse.recipes.Recipe`) runs the same recipe through
``recipes.run_recipe`` in its own process. Every run gets an empty feature and engine cache that shares only
the decoded images (``common.fresh_feature_cache``), so the wall time covers start-up, the engine's export,
every feature extraction, training and the saved checkpoint. Every variant run is written to results/recipe.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time

from common import fresh_feature_cache, write_table

from tlcourse import config, recipes, runtime


def parse_variant(spec: str) -> recipes.Recipe:
    """``cpu-fast:image_size=160,flip_tta=0`` -> that recipe with those fields changed (types from the defaults)."""
    name, _, changes = spec.partition(":")
    recipe = recipes.get_recipe(name)
    fields = {}
    for item in filter(None, changes.split(",")):
        key, _, value = item.partition("=")
        old = getattr(recipe, key)
        fields[key] = bool(int(value)) if isinstance(old, bool) else type(old)(value) if old is not None else value
    return dataclasses.replace(recipe, **fields)


def run_variant(spec: str, profile: str, backbone: str, out: str) -> None:
    """The child process of a variant: the CLI's steps for ``train --recipe``, with the variant's fields."""
    cfg = config.get_config(profile, backbone=backbone)
    runtime.seed_everything(cfg.seed)
    recipe = parse_variant(spec)
    _, ev, seconds = recipes.run_recipe(recipe, cfg, out, progress=False)
    print(f"test accuracy {ev.accuracy:.2%} on {len(ev.labels):,} images in {seconds['total'] / 60:.1f} min")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))


def measure(spec: str, profile: str, backbone: str) -> dict:
    """Run ``spec`` in a fresh process with an empty cache; its table row."""
    out = os.path.join(tempfile.mkdtemp(), "model.pt")
    if ":" in spec:
        cmd = [sys.executable, __file__, "--one", spec, "--profile", profile, "--backbone", backbone, "--out", out]
    else:
        cmd = [sys.executable, "-m", "tlcourse", "train", "--recipe", spec, "--profile", profile]
        cmd += ["--backbone", backbone, "--no-progress", "--out", out]
    with fresh_feature_cache():
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    print(run.stdout, run.stderr[-2000:] if run.returncode else "", flush=True)
    acc = re.search(r"test accuracy ([\d.]+)%", run.stdout)
    no_tta = re.search(r"test accuracy without flip TTA ([\d.]+)%", run.stdout)
    epochs = [ln for ln in run.stdout.splitlines() if "epoch" in ln]
    r = parse_variant(spec)
    return {
        "variant": spec,
        "input px": r.image_size,
        "backbone": r.backbone or backbone,
        "test acc": f"{acc.group(1)}%" if acc else f"failed (exit {run.returncode})",
        "without flip TTA": f"{no_tta.group(1)}%" if no_tta else "",
        "wall time": f"{wall / 60:.1f} min",
        "last epoch": epochs[-1].split("  ", 1)[-1] if epochs else "",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variants", nargs="+", default=list(recipes.RECIPES))
    p.add_argument("--profile", default="full")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child process of one variant
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        return run_variant(a.one, a.profile, a.backbone, a.out)
    rows = [measure(spec, a.profile, a.backbone) for spec in a.variants]
    summaries = [f"{name}: {r.summary}" for name, r in recipes.RECIPES.items()]
    write_table(
        "recipe",
        "CPU recipes and their variants: one fresh process each, from an empty feature and engine cache",
        rows,
        [
            f"Backbone {a.backbone} (ImageNet weights) unless the recipe names its own, CIFAR-10 (JPEG copy), "
            f"profile {a.profile} (50,000 train / 10,000 test images for full); test accuracy after the whole "
            "recipe; wall time from process start to the saved model, decoded images already cached.",
            *summaries,
            "A variant NAME:field=value changes those fields of recipe NAME (tlcourse.recipes.Recipe).",
            "Command: python benchmarks/recipe.py --variants " + " ".join(a.variants) + f" --profile {a.profile}",
        ],
    )


if __name__ == "__main__":
    main()
