"""Named recipes: the fastest route this package offers to high accuracy on given hardware.

``python -m tlcourse train --recipe cpu-fast`` runs one; ``benchmarks/recipe.py`` measures each in a fresh process.
Head-only recipes (``epochs=0``) run the frozen body once per image set (ONNX Runtime on a CPU, see
:mod:`engine`), train ``fc`` on the cached features and evaluate it on the cached test features: the
network never runs over the test set a second time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import config, data, features, finetune, loaders, metrics, models, train
from .classifier import ImageClassifier
from .errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """A schedule: a head on cached features, then (``epochs`` > 0) all layers with one-cycle AdamW and augmentation."""

    name: str
    summary: str
    image_size: int  # CIFAR's 32 px upsampled to this
    head_epochs: int  # Phase 1 on features computed once (seconds, not minutes)
    epochs: int  # then all layers train, end to end, with the reference augmentation (0: head only)
    lr: float  # peak rate of the body
    head_lr: float  # peak rate of fc
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    bn_momentum: float | None = 0.1  # PyTorch's default; Lite0 ships 0.01, slow for a few epochs; None keeps it
    flip_tta: bool = True  # average each test image's logits with its mirror image's
    backbone: str | None = None  # None: the configuration's (--backbone)
    mirror_train: bool = False  # head-only: the mirrored training images' features too (twice the extraction)
    head_batch_size: int = 256  # head-only: a linear layer on features takes large batches
    needs_gpu: bool = False  # refused on a CPU, where it would take hours


RECIPES = {
    "cpu-fast": Recipe(
        "cpu-fast",
        "128 px; the frozen EfficientNet-Lite0 run once per image (and its mirror image for the test set) on the "
        "fastest engine; a linear head on pooled layer3 + last-stage + head features (1712 values), standardized, "
        "AdamW with label smoothing (30 epochs); flip TTA on the cached features",
        image_size=128,
        head_epochs=30,
        epochs=0,
        lr=0.0,
        head_lr=config.LR_HEAD,
        weight_decay=0.5,  # chosen on a validation split of the quick profile's training images (8k/2k)
        backbone="efficientnet_lite0_multiscale",
    ),
    "cpu-10min": Recipe(
        "cpu-10min",
        "160 px; as cpu-fast, and the mirrored training images' features too (a second view of every image)",
        image_size=160,
        head_epochs=30,
        epochs=0,
        lr=0.0,
        head_lr=config.LR_HEAD,
        weight_decay=0.5,
        backbone="efficientnet_lite0_multiscale",
        mirror_train=True,
    ),
    "all-layers": Recipe(
        "all-layers",
        "32 px; a head on cached features (2 epochs), then every layer end to end with one-cycle AdamW, "
        "label smoothing and the reference augmentation (3 epochs), flip TTA: the route that trains layers",
        image_size=32,
        head_epochs=2,
        epochs=3,
        lr=config.LR_HEAD,
        head_lr=config.LR_HEAD,
    ),
    "gpu-224": Recipe(
        "gpu-224",
        "224 px on one CUDA GPU; a head on cached features (2 epochs), then every layer end to end (8 epochs) "
        "with one-cycle AdamW, label smoothing and the reference augmentation done on the GPU, bf16 (fp16 with "
        "loss scaling before compute capability 8.0), channels_last; flip TTA. Aim: 95% on the full test set",
        image_size=224,
        head_epochs=2,
        epochs=8,
        lr=3e-4,  # at high resolution the pretrained features already suit CIFAR-10: a moderate rate (notebook 04)
        head_lr=config.LR_HEAD,
        needs_gpu=True,
    ),
}


@dataclass
class CourseModel:
    """The course model, the loaders it was trained and tested with, its history and its configuration."""

    clf: ImageClassifier
    loaders: loaders.LoaderSet
    history: train.History
    cfg: config.Config


def train_course_model(cfg: config.Config, progress: bool = True, log=print) -> CourseModel:
    """Notebook 00's model, for the notebooks that evaluate, explain and deploy one (05, 07).

    The pretrained body at ``config.COURSE_IMAGE_SIZE`` px, only the head trained, on cached features, for
    ``config.COURSE_HEAD_EPOCHS`` epochs; the epoch is chosen on validation and the test set scored once.
    """
    cfg = cfg.replace(image_size=config.COURSE_IMAGE_SIZE)
    loader_set = loaders.make_loaders(cfg)
    classes = data.load_datasets(cfg).train.classes
    clf = ImageClassifier(cfg.backbone, len(classes), classes, image_size=cfg.image_size, device=cfg.device)
    clf.history = features.fit_cached(  # what clf.train(..., phase="head", cache=True) runs, cached under cfg
        clf.model,
        "fc",
        loader_set.train,
        loader_set.val,
        config.COURSE_HEAD_EPOCHS,
        config.LR_HEAD,
        cfg,
        options=train.FitOptions(progress=progress, log=log, desc="[head] "),
        test_loader=loader_set.test,
    )
    return CourseModel(clf, loader_set, clf.history, cfg)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is an error that lists the known ones."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def run_recipe(
    recipe: Recipe, cfg: config.Config, out: str | Path | None = None, progress: bool = True, log=print
) -> tuple[ImageClassifier, metrics.Evaluation, dict[str, float]]:
    """Train ``recipe.backbone`` (else ``cfg.backbone``) by ``recipe``: (classifier, evaluation, seconds by stage)."""
    if recipe.needs_gpu and torch.device(cfg.device).type != "cuda":
        raise ConfigError(
            f"recipe {recipe.name} trains every layer at {recipe.image_size} px and needs a CUDA GPU (this run is on "
            f"{cfg.device}); on a CPU use --recipe cpu-fast or cpu-10min"
        )
    t0 = time.perf_counter()
    # A fixed schedule chooses nothing, so no validation slice is held out: every training image trains.
    cfg = cfg.replace(image_size=recipe.image_size, backbone=recipe.backbone or cfg.backbone, val_size=0)
    train_loader, _, test_loader = loaders.make_loaders(cfg)
    classes = data.load_datasets(cfg).train.classes
    clf = ImageClassifier(cfg.backbone, len(classes), classes, image_size=cfg.image_size, device=cfg.device)
    seconds = {"set-up": time.perf_counter() - t0}
    if recipe.epochs == 0:
        evaluation = _train_head_on_features(clf, recipe, cfg, train_loader, test_loader, seconds, progress, log)
    else:
        t = time.perf_counter()
        if recipe.head_epochs:
            clf.train(
                train_loader,
                recipe.head_epochs,
                phase="head",
                lr=recipe.head_lr,
                cache=True,
                progress=progress,
                log=log,
            )
        seconds["head on cached features"] = time.perf_counter() - t
        t = time.perf_counter()
        _train_all_layers(clf, recipe, train_loader, progress, log)
        seconds["all layers, end to end"] = time.perf_counter() - t
        t = time.perf_counter()
        logits, labels = train.predict(clf.model, test_loader, flip_tta=recipe.flip_tta)
        evaluation = metrics.summarize(logits, labels, clf.classes)
        seconds["final evaluation" + (" (flip TTA)" if recipe.flip_tta else "")] = time.perf_counter() - t
    if out:
        clf.save_model(out)
    seconds["total"] = time.perf_counter() - t0
    return clf, evaluation, seconds


def mirrored(loader: loaders.TensorLoader) -> loaders.TensorLoader:
    """The same loader over left-right mirrored images (the cached features of a flip-TTA view)."""
    return loader.replace(x=loader.x.flip(-1))


def _train_head_on_features(
    clf: ImageClassifier, recipe: Recipe, cfg: config.Config, train_loader, test_loader, seconds, progress, log
) -> metrics.Evaluation:
    """Cache the frozen body's features (and mirrored views), fit ``fc`` on them, evaluate it on the cached test set."""
    t = time.perf_counter()
    models.freeze_until(clf.model, "fc")
    prefix, _ = models.split_model(clf.model, "fc")
    clean = features.without_augmentation(train_loader, test_loader)
    train_views = [clean, mirrored(clean)] if recipe.mirror_train else [clean]
    test_views = [test_loader, mirrored(test_loader)] if recipe.flip_tta else [test_loader]
    # float32: the evaluation then scores exactly what the saved model computes on these images
    tr = [features.cached_extract(cfg, prefix, v, "train", progress=progress, log=log) for v in train_views]
    te = [features.cached_extract(cfg, prefix, v, "test", progress=progress, log=log) for v in test_views]
    seconds["features (frozen body, cached)"] = time.perf_counter() - t
    t = time.perf_counter()
    x_train = torch.cat([f.x[0] for f in tr])
    y_train = torch.cat([f.y for f in tr])
    clf.history = fit_standardized_head(clf.model.fc, x_train, y_train, recipe, progress, log)
    seconds["linear head on cached features"] = time.perf_counter() - t
    fc, device = clf.model.fc, clf.model.fc.weight.device
    with torch.no_grad():  # fc is linear: the logits of the mean of two views are the mean of their logits
        logits = fc(torch.stack([f.x[0] for f in te]).mean(0).to(device))
        plain = metrics.accuracy(fc(te[0].x[0].to(device)), te[0].y)
    if recipe.flip_tta and log:
        log(f"test accuracy without flip TTA {plain:.2%}, with {metrics.accuracy(logits, te[0].y):.2%}")
    return metrics.summarize(logits.float().cpu(), te[0].y.cpu(), clf.classes)


def fit_standardized_head(
    fc: nn.Linear,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    recipe: Recipe,
    progress: bool = False,
    log=None,
) -> train.History:
    """Train ``fc`` on standardized features (one-cycle AdamW, label smoothing), then fold the scaling into it.

    Afterwards ``fc`` reads raw features, so the model runs unchanged on images.
    """
    # a floor: a nearly constant feature would otherwise get a huge folded weight that amplifies rounding
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(float(x_train.std(0).mean()) * 0.01 + 1e-12)
    scale = lambda x: (x - mean) / std  # noqa: E731
    (ftr,) = features.feature_loaders(
        features.Features(scale(x_train)[None], y_train),
        batch_size=recipe.head_batch_size,
        device=str(fc.weight.device),
    )
    opt = train.make_optimizer(fc, recipe.head_lr, "adamw", recipe.weight_decay)
    history = train.fit(
        fc,
        ftr,
        None,  # a fixed one-cycle schedule: nothing to choose, so no validation set
        recipe.head_epochs,
        optimizer=opt,
        scheduler=train.make_one_cycle(opt, recipe.head_epochs, len(ftr)),
        criterion=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        options=train.FitOptions(progress=progress, log=log, desc="[head] "),
    )
    with torch.no_grad():  # w.(x - mean)/std + b  ==  (w/std).x + (b - (w/std).mean)
        fc.weight.div_(std.to(fc.weight.device))
        fc.bias.sub_(fc.weight @ mean.to(fc.weight.device))
    return history


def _train_all_layers(clf: ImageClassifier, recipe: Recipe, train_loader, progress: bool, log) -> None:
    """Every layer, one-cycle AdamW, label smoothing, the reference augmentation; the head at its own rate."""
    models.freeze_until(clf.model, "conv1")
    if recipe.bn_momentum is not None:
        models.set_bn_momentum(clf.model, recipe.bn_momentum)
    groups = finetune.param_groups_by_stage(clf.model, {"fc": recipe.head_lr}, default_lr=recipe.lr)
    opt = train.make_optimizer(clf.model, recipe.lr, "adamw", recipe.weight_decay, param_groups=groups)
    sched = train.make_one_cycle(opt, recipe.epochs, len(train_loader))
    clf.history = train.fit(
        clf.model,
        train_loader,
        None,  # a fixed one-cycle schedule: the test set is scored once, by run_recipe
        recipe.epochs,
        optimizer=opt,
        scheduler=sched,
        criterion=nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        options=train.FitOptions(progress=progress, log=log, desc="[all layers] "),
    )
