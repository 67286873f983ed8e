"""Time-to-accuracy of Phase 1 and Phase 2: the course's cached paths against the seed's loop, one run.

    python benchmarks/phase_speed.py [--profile quick] [--epochs 10] [--finetune-epochs 4]

Seed loop: a DataLoader decoding JPEG files with PIL transforms, the whole network forward on every
step, only the trainable part updated (train.fit on make_torch_loaders). Course path: the frozen
prefix's outputs computed once without augmentation (features.fit_cached), then only the trainable
part runs. Same images, same initial weights, same optimizer (Adam 1e-3 / 1e-4, StepLR(10, 0.1)),
same number of epochs. Time-to-accuracy = wall time until the validation accuracy first reaches the seed
loop's final accuracy minus 0.5 points; the speed-up divides the seed's by the course's.
"""

from __future__ import annotations

import argparse
import copy
import time

from common import fresh_feature_cache, write_table

from tlcourse import config, features, loaders, models, runtime, train


def run(label: str, fn) -> dict:
    """Call ``fn()`` -> History and return its accuracy curve against cumulative wall time."""
    t0 = time.perf_counter()
    hist = fn(t0)
    return {"label": label, "hist": hist, "total": time.perf_counter() - t0}


def curve(result: dict) -> list[tuple[float, float]]:
    """(seconds since start, validation accuracy) after each epoch, set-up time included."""
    h = result["hist"]
    done = result["total"] - sum(h.seconds)  # extraction and other set-up before the first epoch
    out, t = [], done
    for s, acc in zip(h.seconds, h.val_acc):
        t += s
        out.append((t, acc))
    return out


def time_to(result: dict, target: float) -> float | None:
    return next((t for t, acc in curve(result) if acc >= target), None)


def compare(phase: str, seed: dict, ours: dict, rows: list[dict]) -> None:
    target = seed["hist"].val_acc[-1] - 0.005
    t_seed, t_ours = time_to(seed, target), time_to(ours, target)
    for r, t in ((seed, t_seed), (ours, t_ours)):
        rows.append(
            {
                "phase": phase,
                "path": r["label"],
                "epochs": len(r["hist"].epoch),
                "best val acc": f"{r['hist'].best_val_acc:.1%}",
                "test acc (once, at the end)": f"{r['hist'].test_acc:.1%}",
                "total s": round(r["total"], 1),
                "target acc": f"{target:.1%}",
                "s to target": "not reached" if t is None else round(t, 1),
                "speed-up": "" if r is seed else (f"{t_seed / t_ours:.1f}x" if t_ours else "n/a"),
            }
        )
        print(rows[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--profile", default="quick", choices=list(config.PROFILES))
    p.add_argument("--epochs", type=int, default=10, help="Phase 1 epochs (the seed's full schedule: 10)")
    p.add_argument("--finetune-epochs", type=int, default=4, help="Phase 2 epochs")
    a = p.parse_args()
    cfg = config.get_config(a.profile, backbone="efficientnet_lite0", device="cpu")
    runtime.seed_everything(0)
    start = models.build_model(cfg.backbone)
    seed_train, _ = loaders.make_torch_loaders(cfg)
    fast_train, fast_val, fast_test = loaders.make_loaders(cfg)  # both paths choose on the same val, test once
    rows: list[dict] = []

    def seed_phase(model, stage, lr, epochs):
        models.freeze_until(model, stage)
        return lambda t0: train.fit(
            model,
            seed_train,
            fast_val,
            epochs,
            lr,
            options=train.FitOptions(progress=False, desc="seed "),
            test_loader=fast_test,
        )

    def ours_phase(model, stage, lr, epochs):
        return lambda t0: features.fit_cached(
            model,
            stage,
            fast_train,
            fast_val,
            epochs,
            lr,
            cfg,
            options=train.FitOptions(progress=False, desc="ours "),
            test_loader=fast_test,
        )

    p1_seed_model, p1_ours_model = copy.deepcopy(start), copy.deepcopy(start)
    seed1 = run("seed loop (PIL DataLoader, full forward)", seed_phase(p1_seed_model, "fc", cfg.lr_head, a.epochs))
    ours1 = run("cached features (computed once)", ours_phase(p1_ours_model, "fc", cfg.lr_head, a.epochs))
    compare("1: head only", seed1, ours1, rows)

    # Phase 2 starts both paths from the same Phase 1 weights (the seed loop's).
    p2_seed_model, p2_ours_model = copy.deepcopy(p1_seed_model), copy.deepcopy(p1_seed_model)
    seed2 = run(
        "seed loop (PIL DataLoader, full forward)",
        seed_phase(p2_seed_model, "layer4", cfg.lr_finetune, a.finetune_epochs),
    )
    ours2 = run("cached conv1..layer3 outputs", ours_phase(p2_ours_model, "layer4", cfg.lr_finetune, a.finetune_epochs))
    compare("2: layer4 + head", seed2, ours2, rows)

    n_train = "50,000" if cfg.train_size is None else f"{cfg.train_size:,}"
    n_test = "10,000" if cfg.test_size is None else f"{cfg.test_size:,}"
    write_table(
        "phase_speed",
        "Time-to-accuracy: course paths vs the seed's loop",
        rows,
        [
            f"Backbone efficientnet_lite0 (ImageNet weights), 32 px, CIFAR-10 (JPEG copy), {n_train} train / "
            f"{cfg.val_size:,} validation / {n_test} test (profile {cfg.profile}), batch 128, Adam + StepLR(10, 0.1); "
            "seconds include data set-up "
            "and feature extraction.",
            "The cached paths see each training image without augmentation; the seed loop augments every epoch.",
            "Target = the seed loop's final validation accuracy minus 0.5 points; speed-up = the seed loop's seconds "
            "to the "
            "target / the cached path's.",
            f"Command: python benchmarks/phase_speed.py --profile {a.profile} --epochs {a.epochs} "
            f"--finetune-epochs {a.finetune_epochs}",
        ],
    )


if __name__ == "__main__":
    with fresh_feature_cache():
        main()
