"""Wall time and test accuracy of named recipes, each run as the one command a learner types.

    python benchmarks/recipe.py [--recipes cpu-10min] [--profile full]

Each recipe runs as `python -m tlcourse train --recipe NAME` in a fresh process; the wall time
covers everything from start-up to the saved checkpoint (decoded images already cached).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from common import write_table

from tlcourse import recipes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--recipes", nargs="+", default=list(recipes.RECIPES))
    p.add_argument("--profile", default="full")
    p.add_argument("--backbone", default="efficientnet_lite0")
    a = p.parse_args()
    rows = []
    for name in a.recipes:
        r = recipes.get_recipe(name)
        out = os.path.join(tempfile.mkdtemp(), "model.pt")
        cmd = [
            sys.executable,
            "-m",
            "tlcourse",
            "train",
            "--recipe",
            name,
            "--profile",
            a.profile,
            "--backbone",
            a.backbone,
            "--no-progress",
            "--out",
            out,
        ]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        print(run.stdout, run.stderr[-2000:] if run.returncode else "", flush=True)
        acc = re.search(r"test accuracy ([\d.]+)%", run.stdout)
        epochs = [ln for ln in run.stdout.splitlines() if "epoch" in ln]
        rows.append(
            {
                "recipe": name,
                "what it does": r.summary,
                "input px": r.image_size,
                "test acc": f"{acc.group(1)}%" if acc else f"failed (exit {run.returncode})",
                "wall time": f"{wall / 60:.1f} min",
                "last epoch": epochs[-1].split("  ", 1)[-1] if epochs else "",
            }
        )
    write_table(
        "recipe",
        "CPU recipes: one command, measured end to end",
        rows,
        [
            f"Backbone {a.backbone} (ImageNet weights), CIFAR-10 (JPEG copy), profile {a.profile} "
            "(50,000 train / 10,000 test images for full); test accuracy after the whole recipe, with flip TTA where the recipe says.",
            "Command: python benchmarks/recipe.py --recipes " + " ".join(a.recipes) + f" --profile {a.profile}",
        ],
    )


if __name__ == "__main__":
    main()
