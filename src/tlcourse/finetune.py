"""Fine-tuning helpers for notebooks 04 and 06: per-stage learning rates, a strategy comparison,
BatchNorm drift, feature drift, weight change by stage, and step timing.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import config, data, features, loaders, models, train
from .config import Config

# ---------------------------------------------------------------- learning rates per stage


def param_groups_by_stage(model: nn.Module, lrs: Mapping[str, float], default_lr: float | None = None) -> list[dict]:
    """Optimizer parameter groups, one per stage with trainable parameters, each with its own rate.

    ``lrs`` maps stage names (conv1, layer1..layer4, fc) to rates; other trainable stages get
    ``default_lr``. Frozen parameters are left out. Pass the result as ``param_groups=`` to
    ``train.make_optimizer``.
    """
    unknown = set(lrs) - set(models.STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; stages are {models.STAGES}")
    groups, covered = [], set()
    for stage, module in models.stage_modules(model).items():
        params = [p for p in module.parameters() if p.requires_grad and id(p) not in covered]
        if not params:
            continue
        lr = lrs.get(stage, default_lr)
        if lr is None:
            raise ValueError(
                f"stage {stage!r} has trainable parameters but no learning rate; add it to lrs or pass default_lr"
            )
        covered.update(id(p) for p in params)
        groups.append({"params": params, "lr": float(lr), "stage": stage})
    missed = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered]
    if missed:
        raise ValueError(f"trainable parameters outside the stages {models.STAGES}: {missed[:3]}")
    return groups


def layerwise_lrs(head_lr: float, decay: float, stages: Sequence[str] = models.STAGES) -> dict[str, float]:
    """``fc`` at ``head_lr``, each earlier stage ``decay`` times the next one (layer-wise decay)."""
    ordered = [s for s in models.STAGES if s in stages]
    return {s: head_lr * decay**i for i, s in enumerate(reversed(ordered))}


# ---------------------------------------------------------------- the strategy comparison


@dataclass(frozen=True)
class Strategy:
    """How much of the network trains, from which weights, at which rate (notebook 04's rows)."""

    name: str
    first_trainable: str  # freeze_until(model, first_trainable): "fc", "layer4" or "conv1"
    lr: float
    pretrained: bool = True
    head_lr: float | None = None  # discriminative rates: fc at head_lr, the rest at lr
    bn_momentum: float | None = None  # set every BatchNorm's momentum; None keeps the backbone's


def default_strategies(cfg: Config) -> list[Strategy]:
    """The four rows of notebook 04's comparison, at the seed's rates."""
    return [
        Strategy("feature extraction (fc)", "fc", cfg.lr_head),
        Strategy("fine-tune layer4 + fc", "layer4", cfg.lr_finetune),
        Strategy("fine-tune all layers", "conv1", cfg.lr_finetune),
        # Lite0's BatchNorm momentum (0.01, from TensorFlow) suits 350 ImageNet epochs; in a short
        # run from random weights the running statistics lag far behind, so use PyTorch's 0.1.
        Strategy("random init, train all", "conv1", cfg.lr_head, pretrained=False, bn_momentum=0.1),
    ]


def time_train_step(model: nn.Module, loader: Iterable, steps: int = 2, warmup: int = 1) -> float:
    """Seconds per end-to-end training batch with the model's current freezing (min over ``steps``).

    Runs forward, backward and an optimizer step on real batches, then restores every weight and
    BatchNorm statistic, so the model is unchanged afterwards.
    """
    state = copy.deepcopy(model.state_dict())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0) if params else None
    device = next(model.parameters()).device
    models.train_mode(model)
    times = []
    try:
        for i, (x, y) in enumerate(loader):
            if i >= warmup + steps:
                break
            t0 = time.perf_counter()
            loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            if opt is not None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    finally:
        model.load_state_dict(state)
        model.eval()
    return min(times) if times else float("nan")


def run_strategy(
    cfg: Config,
    strategy: Strategy,
    epochs: int,
    head_epochs: int = 0,
    loader_set: loaders.LoaderSet | None = None,
    time_steps: int = 2,
    progress: bool = True,
    log=None,
) -> tuple[dict, train.History, nn.Module]:
    """Train one strategy without augmentation, choose its epoch on validation; return (table row, history, model).

    ``head_epochs`` > 0 first trains the new head of a pretrained model alone on cached features
    (the seed's Phase 1; skipped for random weights). ``fc`` and ``layer4`` strategies train on
    cached frozen-prefix outputs (identical results to end-to-end training without augmentation,
    at a fraction of the time) and their end-to-end epoch time is estimated from ``time_steps``
    timed training steps; ``conv1`` trains end to end and reports its measured epochs. The model
    is built after ``torch.manual_seed(cfg.seed)``, so every strategy starts from the same head.
    """
    if strategy.first_trainable not in ("fc", "layer4", "conv1"):
        raise ValueError(f"first_trainable must be fc, layer4 or conv1, not {strategy.first_trainable!r}")
    train_loader, val_loader, test_loader = loader_set or loaders.make_loaders(cfg, augment=False)
    torch.manual_seed(cfg.seed)
    model = models.build_model(cfg.backbone, len(data.CLASSES), pretrained=strategy.pretrained)
    model = model.to(cfg.device)
    if strategy.bn_momentum is not None:
        models.set_bn_momentum(model, strategy.bn_momentum)
    t0 = time.perf_counter()
    if head_epochs > 0 and strategy.pretrained:
        features.fit_cached(
            model,
            "fc",
            train_loader,
            val_loader,
            head_epochs,
            cfg.lr_head,
            cfg,
            options=train.FitOptions(progress=progress, log=log, desc="[head] "),
        )
    models.freeze_until(model, strategy.first_trainable)
    lrs = {"fc": strategy.head_lr} if strategy.head_lr is not None else {}
    opt = train.make_optimizer(
        model, strategy.lr, param_groups=param_groups_by_stage(model, lrs, default_lr=strategy.lr)
    )
    sched = train.make_scheduler(opt, cfg.step_size, cfg.gamma)
    options = train.FitOptions(progress=progress, log=log, desc=f"[{strategy.name}] ")
    t1 = time.perf_counter()
    if strategy.first_trainable == "conv1":
        hist = train.fit(
            model,
            train_loader,
            val_loader,
            epochs,
            optimizer=opt,
            scheduler=sched,
            options=options,
            test_loader=test_loader,
        )
    else:
        hist = features.fit_cached(
            model,
            strategy.first_trainable,
            train_loader,
            val_loader,
            epochs,
            strategy.lr,
            cfg,
            optimizer=opt,
            scheduler=sched,
            options=options,
            test_loader=test_loader,
        )
    t2 = time.perf_counter()
    cached = strategy.first_trainable != "conv1"
    if not cached:  # this run was end to end: its own epochs are the measurement
        e2e = sum(hist.seconds) / max(len(hist.seconds), 1)
    else:
        e2e = time_train_step(model, train_loader, time_steps) * len(train_loader) if time_steps else float("nan")
    counts = models.count_parameters(model)
    row = {
        "strategy": strategy.name,
        "pretrained": strategy.pretrained,
        "trainable params": counts.trainable,
        "lr": strategy.lr if strategy.head_lr is None else f"{strategy.head_lr:g} head / {strategy.lr:g}",
        "epochs": len(hist.epoch),
        "best epoch": hist.best_epoch,
        "val acc": hist.best_val_acc,
        "test acc": hist.test_acc if hist.test_acc is not None else float("nan"),
        "train acc": hist.train_acc[-1] if hist.train_acc else float("nan"),
        "s/epoch (as run)": sum(hist.seconds) / max(len(hist.seconds), 1),
        "s/epoch (end to end, est.)": e2e,
        "total s": t2 - t0,
        "cached": cached,
        "setup s": t1 - t0 + (t2 - t1 - sum(hist.seconds)),  # head phase + feature caching
    }
    return row, hist, model


def compare_strategies(
    cfg: Config,
    strategies: Sequence[Strategy],
    epochs: int,
    head_epochs: int = 0,
    time_steps: int = 2,
    progress: bool = True,
    log=None,
):
    """Run each strategy on the same images for the same epochs; (DataFrame, {name: History})."""
    import pandas as pd

    loader_set = loaders.make_loaders(cfg, augment=False)
    rows, histories = [], {}
    for s in strategies:
        row, hist, _ = run_strategy(cfg, s, epochs, head_epochs, loader_set, time_steps, progress, log)
        row = {"image size": cfg.image_size, **row}
        rows.append(row)
        histories[s.name] = hist
    return pd.DataFrame(rows).set_index("strategy"), histories


# ---------------------------------------------------------------- what fine-tuning changes


def _frozen_bn(model: nn.Module) -> dict[str, list[nn.modules.batchnorm._BatchNorm]]:
    out = {}
    for stage, mod in models.stage_modules(model).items():
        bns = [
            m
            for m in mod.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters())
        ]
        if bns:
            out[stage] = bns
    return out


def bn_stat_change(reference: nn.Module, model: nn.Module) -> dict[str, float]:
    """Largest |change| of any frozen BatchNorm running mean per stage, between two model copies."""
    ref = _frozen_bn(reference)
    return {
        s: max(
            float((bn.running_mean - b.running_mean.to(bn.running_mean.device)).abs().max())
            for bn, b in zip(bns, ref[s], strict=True)
        )
        for s, bns in _frozen_bn(model).items()
    }


@torch.no_grad()
def bn_stat_drift(model: nn.Module, batches: Iterable, keep_frozen_bn: bool = True) -> dict[str, float]:
    """Largest change of any frozen BatchNorm running mean, per stage, after forward passes.

    ``keep_frozen_bn=True`` runs them under ``models.train_mode`` (what ``train.train_one_epoch``
    does); ``False`` under plain ``model.train()``. Works on a copy: ``model`` is not changed.
    """
    m = copy.deepcopy(model)
    device = next(m.parameters()).device
    models.train_mode(m) if keep_frozen_bn else m.train()
    for x, _ in batches:
        m(x.to(device))
    return bn_stat_change(model, m)


@torch.no_grad()
def feature_drift(reference: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    """Mean cosine similarity of two models' pooled features (fc's input) on ``x``; 1: unchanged."""
    sims = []
    for m in (reference, model):
        was = m.training
        m.eval()
        prefix, _ = models.split_model(m, "fc")
        sims.append(prefix(x.to(next(m.parameters()).device)).float())
        m.train(was)
    return float(nn.functional.cosine_similarity(sims[0], sims[1], dim=1).mean())


def weight_change_by_stage(before: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, float]:
    """Relative change ||W - W0|| / ||W0|| per stage since ``before`` (a copy of the state_dict)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for stage, mod in models.stage_modules(model).items():
        num = den = 0.0
        for p in mod.parameters():
            w0 = before[names[id(p)]].detach().float().cpu()
            num += float((p.detach().float().cpu() - w0).pow(2).sum())
            den += float(w0.pow(2).sum())
        out[stage] = (num**0.5) / max(den**0.5, 1e-12)
    return out


# ---------------------------------------------------------------- any loss (notebook 06)


def fit_with_loss(
    model: nn.Module,
    train_loader,
    val_loader,
    epochs: int,
    lr: float,
    criterion: nn.Module,
    kind: str = "adam",
    test_loader=None,
) -> train.History:
    """``train.fit`` at a constant rate with any loss (label smoothing, class weights); val/test loss stay plain CE."""
    opt = train.make_optimizer(model, lr, kind)
    constant = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return train.fit(
        model,
        train_loader,
        val_loader,
        epochs,
        optimizer=opt,
        scheduler=constant,
        criterion=criterion,
        options=train.FitOptions(progress=False, log=None),
        test_loader=test_loader,
    )


def fit_head(
    train_feats: features.Features,
    val_feats: features.Features | None,
    epochs: int,
    lr: float,
    criterion: nn.Module | None = None,
    kind: str = "adam",
    num_classes: int = 10,
    batch_size: int = config.BATCH_SIZE,
    seed: int = 0,
    test_feats: features.Features | None = None,
) -> tuple[nn.Linear, train.History]:
    """A new linear head trained on cached features with any loss and optimizer (notebook 06).

    Its epoch is chosen on ``val_feats``; ``test_feats``, when given, is scored once at the end. The head's
    initial weights come from ``seed`` without touching the global random state, so runs that differ only
    in loss or optimizer start from the same head.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(train_feats.x.shape[-1], num_classes).to(train_feats.x.device)
    device = str(train_feats.x.device)
    ftr, fval, fte = features.feature_loaders(
        train_feats, val_feats, test_feats, batch_size=batch_size, device=device, seed=seed
    )
    hist = fit_with_loss(head, ftr, fval, epochs, lr, criterion or nn.CrossEntropyLoss(), kind, test_loader=fte)
    return head, hist
