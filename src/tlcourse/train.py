"""The training loop: ``train_one_epoch``, ``evaluate``, ``fit`` -> ``History``, and the parts ``fit`` composes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, config, devices, distributed, loaders, models, training_state
from .checkpoint import ModelMeta


@dataclass
class EpochResult:
    loss: float
    accuracy: float


@dataclass
class History:
    """Per-epoch numbers from :func:`fit`; ``to_frame()`` gives a table."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False

    columns = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")  # not a field

    @property
    def best_acc(self) -> float:
        return max(self.test_acc) if self.test_acc else float("nan")

    @property
    def epochs_done(self) -> int:
        return self.epoch[-1] if self.epoch else 0

    def record(self, epoch: int, tr: EpochResult, te: EpochResult, lr: float, seconds: float) -> None:
        """Append one epoch's row; it becomes ``best_epoch`` when its test accuracy is the highest so far."""
        for name, value in zip(self.columns, (epoch, tr.loss, tr.accuracy, te.loss, te.accuracy, lr, seconds)):
            getattr(self, name).append(value)
        if te.accuracy >= self.best_acc:
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
    patience: int | None = None  # stop after this many epochs without a lower test loss
    progress: bool = True  # progress bars
    log: Callable[[str], None] | None = print  # one line per epoch; None: silent
    desc: str = ""  # prefix of those lines and bars, e.g. "[head] "
    sync_bn: bool = False  # under torchrun: SyncBatchNorm for trainable BatchNorm (CUDA only)


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without a lower test loss (``None``: never)."""

    patience: int | None = None
    best_loss: float = float("inf")
    bad_epochs: int = 0

    def update(self, test_loss: float) -> bool:
        """Count one epoch's test loss; True when training should stop."""
        self.bad_epochs = 0 if test_loss < self.best_loss else self.bad_epochs + 1
        self.best_loss = min(self.best_loss, test_loss)
        return self.patience is not None and self.bad_epochs >= self.patience


@dataclass
class BestModelFile:
    """Writes ``model`` as a model file to ``path`` after each epoch that the history marks best."""

    path: Path | None
    model: nn.Module
    meta: ModelMeta | None

    def update(self, history: History) -> None:
        if self.path and self.meta and history.best_epoch == history.epochs_done:
            checkpoint.save_model(self.path, self.model, self.meta)


@dataclass
class ProgressReport:
    """The lines :func:`fit` writes through ``log`` (None: silent) and the labels of its progress bars."""

    log: Callable[[str], None] | None
    desc: str
    epochs: int

    def say(self, line: str) -> None:
        if self.log:
            self.log(line)

    def bar_label(self, epoch: int) -> str:
        return f"{self.desc}epoch {epoch + 1}/{self.epochs}"

    def epoch_done(self, h: History) -> None:
        self.say(
            f"{self.desc}epoch {h.epochs_done:>2}/{self.epochs}  train loss {h.train_loss[-1]:.3f} "
            f"acc {h.train_acc[-1]:6.2%}  test loss {h.test_loss[-1]:.3f} acc {h.test_acc[-1]:6.2%}  "
            f"lr {h.lr[-1]:.1e}  {h.seconds[-1]:.1f}s"
        )

    def interrupted(self, epoch: int, state_path: Path | None) -> None:
        """Ctrl-C during ``epoch`` (counted from 0): say where the last saved state is, if anywhere."""
        if state_path is None:
            where = ""
        elif epoch > 0 and state_path.exists():
            where = f"; the state after epoch {epoch} is in {state_path}, resume with resume=True (--resume)"
        else:
            where = "; nothing was saved yet"
        self.say(f"interrupted during epoch {epoch + 1}{where}")


def resume_history(state: training_state.TrainingStateFile, patience: int | None, report: ProgressReport):
    """Restore the run from ``state`` and return its history and early-stopping counters; fresh ones without a file."""
    saved = state.load()
    if saved is None:
        if state.path:
            report.say(f"nothing to resume at {state.path}; starting at epoch 1")
        return History(), EarlyStopping(patience)
    report.say(f"resumed from {state.path} after epoch {saved.epoch}")
    return History(**saved.history), EarlyStopping(patience, saved.best_loss, saved.bad_epochs)


# ---------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    train_loader,
    test_loader,
    epochs: int,
    lr: float = config.LR_HEAD,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    criterion: nn.Module | None = None,
    options: FitOptions | None = None,
) -> History:
    """Train for ``epochs``, evaluating after each; Adam at ``lr`` and StepLR(STEP_SIZE, GAMMA) by default.

    ``options`` (:class:`FitOptions`): device, precision, checkpoints, resume, early stopping, reporting. A
    ``OneCycleLR`` is stepped every batch, any other scheduler once per epoch; Ctrl-C returns the history so far.
    Under torchrun the steps run through DistributedDataParallel and only rank 0 reports and writes files.
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
    history, stopping = (
        resume_history(state, opts.patience, report) if opts.resume else (History(), EarlyStopping(opts.patience))
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
            te = evaluate(eval_model, test_loader, amp=opts.amp) if test_loader is not None else tr
            if batch_scheduler is None:
                scheduler.step()
            history.record(epoch + 1, tr, te, lr_now, time.perf_counter() - t0)
            stop = stopping.update(te.loss)  # the same on every rank: all evaluate the whole test set
            report.epoch_done(history)
            if main:
                best.update(history)
                state.save(history, stopping)
            if stop:
                history.stopped_early = True
                report.say(
                    f"early stop: test loss has not improved for {opts.patience} epochs (best {stopping.best_loss:.3f})"
                )
                break
    except KeyboardInterrupt:
        history.interrupted = True
        report.interrupted(epoch, path)
    return history
