"""The seed's two phases on the full data set, as `python -m tlcourse train` runs them, timed per phase.

    python benchmarks/full_phases.py [--profile full] [--epochs 10] [--finetune-epochs 10] [--uncached]

Phase 1 trains only the new head (by default on features computed once; --uncached runs augmented
images through the whole network every epoch, as the seed did); Phase 2 unfreezes layer4 and trains
end to end with the seed's augmentation, Adam 1e-4, StepLR(10, 0.1).
"""

from __future__ import annotations

import argparse
import time

from common import fresh_feature_cache, write_table

from tlcourse import config, loaders, runtime
from tlcourse.classifier import ImageClassifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--profile", default="full", choices=list(config.PROFILES))
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--uncached", action="store_true")
    a = p.parse_args()
    cfg = config.get_config(a.profile, backbone=a.backbone, device=config.pick_device())
    runtime.seed_everything(cfg.seed)
    t0 = time.perf_counter()
    train_loader, val_loader, test_loader = loaders.make_loaders(cfg)
    clf = ImageClassifier(cfg.backbone, 10, image_size=cfg.image_size, device=cfg.device)
    setup = time.perf_counter() - t0
    rows = []
    for phase, epochs, lr, cache in (
        ("head", a.epochs, cfg.lr_head, not a.uncached),
        ("layer4", a.finetune_epochs, cfg.lr_finetune, False),
    ):
        t = time.perf_counter()
        hist = clf.train(
            train_loader, epochs, val_loader, phase=phase, lr=lr, cache=cache, progress=False, test_loader=test_loader
        )
        wall = time.perf_counter() - t
        how = "head on features computed once" if cache else "augmented images through the network, every epoch"
        rows.append(
            {
                "phase": f"{'1' if phase == 'head' else '2'}: {phase}",
                "how": how,
                "epochs": epochs,
                "val acc (best epoch)": f"{hist.best_val_acc:.1%}",
                "test acc (that epoch, once)": f"{hist.test_acc:.1%}",
                "wall time": f"{wall / 60:.1f} min",
            }
        )
        print(rows[-1], flush=True)
    n = "50,000 / 10,000" if cfg.train_size is None else f"{cfg.train_size:,} / {cfg.test_size:,}"
    write_table(
        "full_phases",
        f"The seed's two phases, profile {cfg.profile}",
        rows,
        [
            f"Backbone {cfg.backbone} (ImageNet weights), {cfg.image_size} px, CIFAR-10 (JPEG copy), "
            f"{n} train/test images, "
            f"batch {cfg.batch_size}, device {cfg.device}; data set-up {setup:.0f} s (decoded arrays cached).",
            "Command: python benchmarks/full_phases.py" + (" --uncached" if a.uncached else ""),
        ],
    )


if __name__ == "__main__":
    with fresh_feature_cache():
        main()
