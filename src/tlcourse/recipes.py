"""Named recipes: the fastest route this package offers to high accuracy on given hardware.

``python -m tlcourse train --recipe cpu-10min`` runs one; ``benchmarks/recipe.py`` measures it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from . import data, finetune, metrics, models, train
from .classifier import ImageClassifier
from .config import Config
from .errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """A schedule: a head on cached features, then (``epochs`` > 0) every layer with one-cycle AdamW and augmentation."""

    name: str
    summary: str
    image_size: int  # CIFAR's 32 px upsampled to this
    head_epochs: int  # Phase 1 on features computed once (seconds, not minutes)
    epochs: int  # then all layers train, end to end, with the seed's augmentation (0: head only)
    lr: float  # peak rate of the body
    head_lr: float  # peak rate of fc
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    bn_momentum: float | None = 0.1  # PyTorch's default; Lite0 ships 0.01, slow for a few epochs; None keeps it
    flip_tta: bool = True  # average each test image's logits with its mirror image's


RECIPES = {
    "cpu-10min": Recipe(
        "cpu-10min",
        "96 px; the frozen network's features computed once, then a linear head trained on them "
        "(20 epochs, Adam 1e-3, StepLR); no fine-tuning: on 2 CPU cores resolution buys more than training layers",
        image_size=96,
        head_epochs=20,
        epochs=0,
        lr=0.0,
        head_lr=1e-3,
        flip_tta=False,
    ),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is an error that lists the known ones."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def run_recipe(
    recipe: Recipe, cfg: Config, out: str | Path | None = None, progress: bool = True, log=print
) -> tuple[ImageClassifier, metrics.Evaluation, dict[str, float]]:
    """Train ``cfg.backbone`` by ``recipe`` on ``cfg``'s data; (classifier, final evaluation, seconds per stage)."""
    t0 = time.perf_counter()
    cfg = cfg.replace(image_size=recipe.image_size)
    train_loader, test_loader = data.make_loaders(cfg)
    classes = data.load_datasets(cfg)[0].classes
    clf = ImageClassifier(cfg.backbone, len(classes), classes, image_size=cfg.image_size, device=cfg.device)
    seconds = {"set-up": time.perf_counter() - t0}
    t = time.perf_counter()
    if recipe.head_epochs:
        clf.train(
            train_loader,
            recipe.head_epochs,
            test_loader,
            phase="head",
            lr=recipe.head_lr,
            cache=True,
            progress=progress,
            log=log,
        )
    seconds["head on cached features"] = time.perf_counter() - t
    if recipe.epochs:
        t = time.perf_counter()
        _train_all_layers(clf, recipe, train_loader, test_loader, progress, log)
        seconds["all layers, end to end"] = time.perf_counter() - t
    t = time.perf_counter()
    logits, labels = train.predict(clf.model, test_loader, flip_tta=recipe.flip_tta)
    evaluation = metrics.summarize(logits, labels, clf.classes)
    seconds["final evaluation" + (" (flip TTA)" if recipe.flip_tta else "")] = time.perf_counter() - t
    if out:
        clf.save_model(out)
    seconds["total"] = time.perf_counter() - t0
    return clf, evaluation, seconds


def _train_all_layers(clf: ImageClassifier, recipe: Recipe, train_loader, test_loader, progress: bool, log) -> None:
    """Every layer, one-cycle AdamW, label smoothing, the seed's augmentation; the head at its own rate."""
    models.freeze_until(clf.model, "conv1")
    if recipe.bn_momentum is not None:
        models.set_bn_momentum(clf.model, recipe.bn_momentum)
    groups = finetune.param_groups_by_stage(clf.model, {"fc": recipe.head_lr}, default_lr=recipe.lr)
    opt = train.make_optimizer(clf.model, recipe.lr, "adamw", recipe.weight_decay, param_groups=groups)
    sched = train.make_one_cycle(opt, recipe.epochs, len(train_loader))
    clf.history = train.fit(
        clf.model,
        train_loader,
        test_loader,
        recipe.epochs,
        optimizer=opt,
        scheduler=sched,
        criterion=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        progress=progress,
        log=log,
        desc="[all layers] ",
    )
