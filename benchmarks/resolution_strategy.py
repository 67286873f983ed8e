"""Accuracy and time over input resolution x transfer strategy, with one model family, in one run.

    python benchmarks/resolution_strategy.py [--sizes 32 64 96 128] [--train-size 2500] [--epochs 2]

Strategies (finetune.default_strategies, as in notebook 04): linear probe / feature extraction (fc only),
layer4 + fc, all layers (at the seed's 1e-4 and at --full-lr), and the same network from random
initialization. Pretrained strategies start with --head-epochs of Phase 1 (head on cached features).
All see the same images without augmentation for the same number of epochs; frozen parts are
computed once (features.fit_cached).
"""

from __future__ import annotations

import argparse

from common import fresh_feature_cache, write_table

from tlcourse import config, finetune, runtime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128])
    p.add_argument("--train-size", type=int, default=2500)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument(
        "--head-epochs", type=int, default=2, help="Phase 1 on cached features before each pretrained strategy"
    )
    p.add_argument("--full-lr", type=float, default=1e-3, help="an extra full fine-tuning row at this rate (0: none)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    a = p.parse_args()
    rows = []
    for size in a.sizes:
        cfg = config.get_config(
            "quick",
            backbone=a.backbone,
            device=config.pick_device(),
            image_size=size,
            train_size=a.train_size,
            test_size=a.test_size,
        )
        runtime.seed_everything(cfg.seed)
        strategies = finetune.default_strategies(cfg)
        if a.full_lr:  # notebook 04 found the seed's 1e-4 too timid for all layers in a short run
            strategies.insert(3, finetune.Strategy(f"fine-tune all layers, {a.full_lr:g}", "conv1", a.full_lr))
        table, _ = finetune.compare_strategies(
            cfg, strategies, a.epochs, head_epochs=a.head_epochs, time_steps=0, progress=False, log=print
        )
        for name, r in table.iterrows():
            rows.append(
                {
                    "input px": size,
                    "strategy": name,
                    "trainable params": f"{r['trainable params']:,}",
                    "test acc": f"{r['test acc']:.1%}",
                    "train acc": f"{r['train acc']:.1%}",
                    "total s": round(r["total s"], 1),
                }
            )
            print(rows[-1], flush=True)
    write_table(
        "resolution_strategy",
        "Accuracy and time: input resolution x strategy",
        rows,
        [
            f"Backbone {a.backbone} (ImageNet weights unless 'random init'), CIFAR-10 (JPEG copy) upsampled from "
            f"32 px, {a.train_size:,} train / {a.test_size:,} test images, {a.head_epochs} head epochs (pretrained "
            f"rows) then {a.epochs} epochs each, no augmentation, Adam (1e-3 head-only and random init, 1e-4 layer4 "
            f"and all layers, {a.full_lr:g} in the extra all-layers row); 'total s' includes computing cached "
            "features and the head epochs.",
            "Command: python benchmarks/resolution_strategy.py --sizes "
            + " ".join(map(str, a.sizes))
            + f" --train-size {a.train_size} --test-size {a.test_size}"
            + f" --epochs {a.epochs} --head-epochs {a.head_epochs}"
            + f" --full-lr {a.full_lr:g}",
        ],
    )


if __name__ == "__main__":
    with fresh_feature_cache():
        main()
