"""The training loop: ``train_one_epoch``, ``evaluate``, ``fit`` -> ``History``, and the parts ``fit`` composes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, config, devices, distributed, loaders, models, training_state
from .checkpoint import ModelMeta
from .errors import CheckpointError
from .tracking import BestModelFile, BestWeights, EarlyStopping, ProgressReport


@dataclass
class EpochResult:
    loss: float
    accuracy: float


NO_VALIDATION = EpochResult(float("nan"), float("nan"))  # fit without a val_loader: nothing to choose by


@dataclass
class History:
    """Per-epoch numbers from :func:`fit` (``to_frame()`` gives a table) and the test set's, measured once at the end.

    Epochs are chosen on the validation columns (``val_*``); ``test_loss``/``test_acc`` stay None unless
    ``fit`` was given a ``test_loader``, which it evaluates once, after the last epoch.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False
    test_loss: float | None = None
    test_acc: float | None = None

    columns = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")  # not a field

    @property
    def best_val_acc(self) -> float:
        return self.val_acc[self.best_epoch - 1] if self.best_epoch else float("nan")

    @property
    def epochs_done(self) -> int:
        return self.epoch[-1] if self.epoch else 0

    def record(self, epoch: int, tr: EpochResult, val: EpochResult, lr: float, seconds: float) -> None:
        """Append one epoch's row; it becomes ``best_epoch`` when its validation accuracy is the highest so far
        (every epoch does when there is no validation set: NaN, and the last epoch is the one kept)."""
        for name, value in zip(self.columns, (epoch, tr.loss, tr.accuracy, val.loss, val.accuracy, lr, seconds)):
            getattr(self, name).append(value)
        if math.isnan(val.accuracy) or val.accuracy >= max(a for a in self.val_acc if not math.isnan(a)):
            self.best_epoch = epoch

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({c: getattr(self, c) for c in self.columns}).set_index("epoch")


# ---------------------------------------------------------------- one epoch, evaluation


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module | None = None,
    amp: bool = True,
    scaler=None,
    progress: bool = True,
    desc: str = "train",
    batch_scheduler=None,
) -> EpochResult:
    """One pass over ``loader``: forward, loss, backward, step. Frozen BatchNorm stays in eval mode.

    ``batch_scheduler`` (e.g. one-cycle) is stepped after every batch.
    """
    criterion = criterion or nn.CrossEntropyLoss()
    device = devices.device_of(model)
    models.train_mode(model)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in devices.iterate_batches(loader, desc, progress):
        x, y = devices.to_device(x, device), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with devices.autocast(device, amp):
            logits = model(x)
            loss = criterion(logits, y)
        devices.backward_step(loss, optimizer, scaler)
        if batch_scheduler is not None:
            batch_scheduler.step()
        # Accumulate on the device: no host round trip per step.
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    totals = torch.stack([total_loss, correct.float(), torch.tensor(float(seen), device=device)])
    if distributed.count_shards(loader) > 1:
        totals = distributed.sum_across(totals)  # the epoch's numbers over every rank's shard
    loss_sum, n_correct, n_seen = totals.tolist()
    return EpochResult(loss_sum / max(n_seen, 1), n_correct / max(n_seen, 1))


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable, amp: bool = True, progress: bool = False, flip_tta: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for a whole loader, on the CPU, in float32.

    ``flip_tta`` averages the logits of each image and its mirror image (test-time augmentation).
    A loader sharded under torchrun gives every rank the whole set's logits, gathered in order.
    """
    device = devices.device_of(model)
    was_training = model.training
    model.eval()
    outs, labels = [], []
    for x, y in devices.iterate_batches(loader, "predict", progress):
        x = devices.to_device(x, device)
        with devices.autocast(device, amp):
            logits = model(x).float()
            if flip_tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        outs.append(logits)
        labels.append(y)
    model.train(was_training)
    logits, labels = distributed.gather_from_shards(loader, torch.cat(outs), torch.cat(labels))
    return logits.cpu(), labels.cpu()


def evaluate(
    model: nn.Module, loader: Iterable, criterion: nn.Module | None = None, amp: bool = True, progress: bool = False
) -> EpochResult:
    """Mean loss and top-1 accuracy over ``loader`` in eval mode."""
    logits, labels = predict(model, loader, amp, progress)
    loss = (criterion or nn.CrossEntropyLoss())(logits, labels).item()
    return EpochResult(loss, (logits.argmax(1) == labels).float().mean().item())


# ---------------------------------------------------------------- optimizers and schedules


def make_optimizer(
    model: nn.Module, lr: float, kind: str = "adam", weight_decay: float = 0.0, param_groups: list[dict] | None = None
) -> torch.optim.Optimizer:
    """Adam (the original design's) or SGD with momentum, over trainable parameters only."""
    params = param_groups or [p for p in model.parameters() if p.requires_grad]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"optimizer kind must be adam, adamw or sgd, not {kind!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, step_size: int = config.STEP_SIZE, gamma: float = config.GAMMA):
    """StepLR, the original design's schedule: multiply the rate by ``gamma`` every ``step_size`` epochs."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


def make_one_cycle(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int, pct_start: float = 0.25):
    """Warm up to each group's rate, then anneal to ~0 (Smith's one-cycle); stepped every batch by :func:`fit`."""
    total = max(epochs * steps_per_epoch, 4)  # PyTorch divides by zero when a phase would have no step
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=total,
        pct_start=max(pct_start, 2 / total),
    )


# ---------------------------------------------------------------- the parts fit composes


@dataclass
class FitOptions:
    """How :func:`fit` runs, saves and reports, apart from what it optimizes."""

    device: str | None = None  # default: where the model's parameters are
    amp: bool = True  # mixed precision on CUDA (config.pick_amp_dtype)
    compile: bool = False  # torch.compile the steps (worth it on a GPU for long runs)
    checkpoint_path: str | Path | None = None  # the full training state, written after every epoch
    resume: bool = False  # continue from checkpoint_path when it exists
    meta: ModelMeta | None = None  # with checkpoint_path: the best epoch's model file (checkpoint.best_path)
    whole_model: nn.Module | None = None  # what that file holds when the model trained is only its suffix
    patience: int | None = None  # stop after this many epochs without a lower validation loss
    restore_best: bool = True  # end with the weights of the best epoch on validation (needs a val_loader)
    progress: bool = True  # progress bars
    log: Callable[[str], None] | None = print  # one line per epoch; None: silent
    desc: str = ""  # prefix of those lines and bars, e.g. "[head] "
    sync_bn: bool = False  # under torchrun: SyncBatchNorm for trainable BatchNorm (CUDA only)


def resume_history(state: training_state.TrainingStateFile, patience: int | None, report: ProgressReport):
    """Restore the run from ``state``: history, early-stopping counters, best weights; fresh ones without a file."""
    saved = state.load()
    if saved is None:
        if state.path:
            report.say(f"nothing to resume at {state.path}; starting at epoch 1")
        return History(), EarlyStopping(patience), BestWeights(state.model)
    if not {"val_loss", "val_acc"} <= saved.history.keys():
        raise CheckpointError(
            f"{state.path} was written by an older tlcourse that chose epochs on the test set; "
            "start again without resume (--resume), or delete the file"
        )
    report.say(f"resumed from {state.path} after epoch {saved.epoch}")
    history = History(**saved.history)
    best = BestWeights(state.model, saved.best_model, history.best_epoch if saved.best_model is not None else None)
    return history, EarlyStopping(patience, saved.best_loss, saved.bad_epochs), best


# ---------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    train_loader,
    val_loader,
    epochs: int,
    lr: float = config.LR_HEAD,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    criterion: nn.Module | None = None,
    options: FitOptions | None = None,
    test_loader=None,
) -> History:
    """Train for ``epochs``, choosing and early-stopping on ``val_loader``; then evaluate ``test_loader`` once.

    Adam at ``lr`` and StepLR(STEP_SIZE, GAMMA) by default. ``options`` (:class:`FitOptions`): device, precision,
    checkpoints, resume, early stopping, keeping the best epoch, reporting. A ``OneCycleLR`` is stepped every
    batch, any other scheduler once per epoch; Ctrl-C returns the history so far. Without ``val_loader`` the
    training numbers fill the ``val_*`` columns and the last epoch is kept. Under torchrun the steps run
    through DistributedDataParallel and only rank 0 reports and writes files.
    """
    opts = options or FitOptions()
    main = distributed.is_main_process()
    device = devices.place_model(model, opts.device)
    optimizer = optimizer or make_optimizer(model, lr)
    scheduler = scheduler or make_scheduler(optimizer)
    batch_scheduler = scheduler if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) else None
    ddp_model = distributed.wrap_model(model, opts.sync_bn)  # model itself in a single process
    step_model = torch.compile(ddp_model) if opts.compile else ddp_model  # shares parameters with model
    eval_model = step_model if ddp_model is model else model  # DDP's forward syncs buffers; evaluation needs none
    scaler = devices.make_grad_scaler(device, opts.amp)
    path = Path(opts.checkpoint_path) if opts.checkpoint_path else None
    state = training_state.TrainingStateFile(
        path, model, optimizer, scheduler, getattr(train_loader, "generator", None)
    )
    best = BestModelFile(checkpoint.best_path(path) if path else None, opts.whole_model or model, opts.meta)
    report = ProgressReport(opts.log if main else None, opts.desc, epochs)
    if opts.resume:
        distributed.barrier()  # every rank restores the state rank 0 wrote
    history, stopping, keep = (
        resume_history(state, opts.patience, report)
        if opts.resume
        else (History(), EarlyStopping(opts.patience), BestWeights(model))
    )
    epoch = history.epochs_done
    try:
        for epoch in range(history.epochs_done, epochs):
            loaders.set_epoch(train_loader, epoch)
            t0, lr_now = time.perf_counter(), optimizer.param_groups[0]["lr"]
            tr = train_one_epoch(
                step_model,
                train_loader,
                optimizer,
                criterion=criterion,
                amp=opts.amp,
                scaler=scaler,
                progress=opts.progress and main,
                desc=report.bar_label(epoch),
                batch_scheduler=batch_scheduler,
            )
            val = evaluate(eval_model, val_loader, amp=opts.amp) if val_loader is not None else NO_VALIDATION
            if batch_scheduler is None:
                scheduler.step()
            history.record(epoch + 1, tr, val, lr_now, time.perf_counter() - t0)
            # the same on every rank: all evaluate the whole validation set
            stop = val_loader is not None and stopping.update(val.loss)
            report.epoch_done(history)
            if opts.restore_best and val_loader is not None:
                keep.update(history)
            if main:
                best.update(history)
                state.save(history, stopping, keep.state)
            if stop:
                history.stopped_early = True
                report.say(
                    f"early stop: validation loss has not improved for {opts.patience} epochs "
                    f"(best {stopping.best_loss:.3f})"
                )
                break
    except KeyboardInterrupt:
        history.interrupted = True
        report.interrupted(epoch, path)
        return history
    if opts.restore_best and val_loader is not None:
        keep.restore(history, report)
    if test_loader is not None:  # the first and only time the test set is seen
        te = evaluate(eval_model, test_loader, amp=opts.amp)
        history.test_loss, history.test_acc = te.loss, te.accuracy
        report.tested(history)
    return history
