"""Copy the class-balanced CIFAR-10 sample the package ships (100 train + 40 test images per class).

    python tools/make_sample.py /path/to/data/cifar10

The smoke profile trains on it when no full copy is found, so tests and a first run need no download.
The choice is a seeded draw from each class folder's sorted file names; files are copied byte for byte.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

DEST = Path(__file__).resolve().parents[1] / "src" / "tlcourse" / "sample" / "cifar10"
PER_CLASS = {"train": 100, "test": 40}
SEED = 0


def choose(files: list[Path], n: int, seed: int = SEED) -> list[Path]:
    """``n`` of ``files``, the same ones on every machine (sorted names, seeded draw, sorted result)."""
    return sorted(random.Random(seed).sample(sorted(files), n))


def make_sample(source: Path, dest: Path = DEST) -> int:
    """Copy the sample from ``source`` (``{train,test}/<class>/*.jpg``) into ``dest``; return the file count."""
    count = 0
    for split, n in PER_CLASS.items():
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            out = dest / split / class_dir.name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            for f in choose(list(class_dir.glob("*.jpg")), n):
                shutil.copyfile(f, out / f.name)
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a CIFAR-10 folder holding train/<class>/ and test/<class>/")
    a = parser.parse_args()
    print(f"copied {make_sample(a.source)} files into {DEST}")


if __name__ == "__main__":
    main()
