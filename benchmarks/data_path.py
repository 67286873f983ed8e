"""Images per second of the course's data path against the seed's PIL DataLoader, in one run.

    python benchmarks/data_path.py [--batches 60]

Every path produces augmented, normalized float batches of 128 at 32 px (and the batched path also
at 64 and 128 px); the ratio column divides by the seed's loader measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import fresh_feature_cache, write_table

from tlcourse import config, loaders


def images_per_second(loader, batches: int) -> float:
    """Draw ``batches`` batches (after one warm-up batch) and return images per second."""
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        x, y = next(it)
        n += len(y)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=60)
    a = p.parse_args()
    cfg = config.get_config("full", backbone="efficientnet_lite0", device="cpu")
    rows = []
    base = None
    for label, make in [
        ("seed: DataLoader, JPEG files + PIL transforms, num_workers=0", lambda: loaders.make_torch_loaders(cfg)[0]),
        (
            "seed: DataLoader, JPEG files + PIL transforms, num_workers=2",
            lambda: loaders.make_torch_loaders(cfg.replace(num_workers=2))[0],
        ),
        ("in-memory uint8 + batched augmentation, 32 px", lambda: loaders.make_loaders(cfg)[0]),
        ("in-memory uint8 + batched augmentation, 64 px", lambda: loaders.make_loaders(cfg.replace(image_size=64))[0]),
        (
            "in-memory uint8 + batched augmentation, 128 px",
            lambda: loaders.make_loaders(cfg.replace(image_size=128))[0],
        ),
    ]:
        rate = images_per_second(make(), a.batches)
        base = base or rate
        rows.append({"data path": label, "images/s": round(rate), "vs seed (workers=0)": f"{rate / base:.1f}x"})
        print(rows[-1])
    write_table(
        "data_path",
        "Data path throughput (augmented training batches of 128)",
        rows,
        [
            "Data: CIFAR-10 (JPEG copy), 50,000 training images; normalization of efficientnet_lite0.",
            f"Each row draws {a.batches} batches after one warm-up batch; decoded arrays already cached.",
            "Command: python benchmarks/data_path.py",
        ],
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    with fresh_feature_cache():
        main()
