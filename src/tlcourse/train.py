"""The training loop: ``train_one_epoch``, ``evaluate``, ``fit`` -> ``History``, with resumable checkpoints."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint, models
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

    @property
    def best_acc(self) -> float:
        return max(self.test_acc) if self.test_acc else float("nan")

    def to_frame(self):
        import pandas as pd

        cols = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]
        return pd.DataFrame({c: getattr(self, c) for c in cols}).set_index("epoch")


def _autocast(device: torch.device, enabled: bool):
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(loader):
    """An iterator over ``loader``: tqdm.auto would otherwise call ``iter()`` twice (two DataLoader worker starts)."""
    return iter(loader)


def _len(loader) -> int | None:
    """Number of batches when the loader knows it (a generator does not)."""
    try:
        return len(loader)
    except TypeError:
        return None


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # channels_last (NHWC) runs these CNNs 1.6-2.2x faster on a CPU too (benchmarks/results/throughput.md).
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 and device.type != "mps" else x


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
    device = _device_of(model)
    models.train_mode(model)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in tqdm(_batches(loader), total=len(loader), desc=desc, leave=False, disable=not progress):
        x, y = _to(x, device), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            logits = model(x)
            loss = criterion(logits, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if batch_scheduler is not None:
            batch_scheduler.step()
        # Accumulate on the device: no host round trip per step.
        total_loss += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return EpochResult(total_loss.item() / max(seen, 1), correct.item() / max(seen, 1))


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable, amp: bool = True, progress: bool = False, flip_tta: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) for a whole loader, on the CPU, in float32.

    ``flip_tta`` averages the logits of each image and its mirror image (test-time augmentation).
    """
    device = _device_of(model)
    was_training = model.training
    model.eval()
    outs, labels = [], []
    for x, y in tqdm(_batches(loader), total=_len(loader), desc="predict", leave=False, disable=not progress):
        x = _to(x, device)
        with _autocast(device, amp):
            logits = model(x).float()
            if flip_tta:
                logits = (logits + model(x.flip(-1)).float()) / 2
        outs.append(logits)
        labels.append(y)
    model.train(was_training)
    return torch.cat(outs).cpu(), torch.cat(labels).cpu()


def evaluate(
    model: nn.Module, loader: Iterable, criterion: nn.Module | None = None, amp: bool = True, progress: bool = False
) -> EpochResult:
    """Mean loss and top-1 accuracy over ``loader`` in eval mode."""
    logits, labels = predict(model, loader, amp, progress)
    loss = (criterion or nn.CrossEntropyLoss())(logits, labels).item()
    return EpochResult(loss, (logits.argmax(1) == labels).float().mean().item())


def make_optimizer(
    model: nn.Module, lr: float, kind: str = "adam", weight_decay: float = 0.0, param_groups: list[dict] | None = None
) -> torch.optim.Optimizer:
    """Adam (the seed's) or SGD with momentum, over trainable parameters only."""
    params = param_groups or [p for p in model.parameters() if p.requires_grad]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"optimizer kind must be adam, adamw or sgd, not {kind!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, step_size: int = 10, gamma: float = 0.1):
    """The seed's StepLR: multiply the rate by ``gamma`` every ``step_size`` epochs."""
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


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as plain data (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Undo :func:`rng_state`."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(
    model: nn.Module,
    train_loader,
    test_loader,
    epochs: int,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    device: str | None = None,
    checkpoint_path: str | Path | None = None,
    meta: ModelMeta | None = None,
    resume: bool = False,
    patience: int | None = None,
    amp: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    desc: str = "",
    compile: bool = False,
    whole_model: nn.Module | None = None,
    criterion: nn.Module | None = None,
) -> History:
    """Train for ``epochs``, evaluating after each; the seed's Adam + StepLR(10, 0.1) by default.

    With ``checkpoint_path`` the full training state is written there after every epoch (resume
    with ``resume=True``) and, when ``meta`` is given, the best epoch's weights go to
    :func:`checkpoint.best_path` as a model file. ``patience`` stops after that many
    epochs without a lower test loss. Ctrl-C ends the run after saving; the history so far is returned.
    ``compile=True`` runs the steps through ``torch.compile`` (worth it on a GPU for long runs).
    ``whole_model`` is what the best-epoch file holds when ``model`` is only its trainable suffix.
    ``criterion`` is the training loss (default cross-entropy); the test loss is always plain cross-entropy.
    A ``OneCycleLR`` scheduler is stepped every batch, any other once per epoch.
    """
    device = torch.device(device) if device else _device_of(model)
    model.to(device)
    if device.type != "mps":
        model.to(memory_format=torch.channels_last)
    optimizer = optimizer or make_optimizer(model, lr)
    step_model = torch.compile(model) if compile else model  # shares parameters with model
    scheduler = scheduler or make_scheduler(optimizer)
    per_batch = isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR)
    scaler = (
        torch.amp.GradScaler("cuda") if amp and device.type == "cuda" and not torch.cuda.is_bf16_supported() else None
    )
    history, start, best_loss, bad_epochs = History(), 0, float("inf"), 0
    path = Path(checkpoint_path) if checkpoint_path else None
    loader_gen = getattr(train_loader, "generator", None)  # a DataLoader's shuffle generator
    best_path = checkpoint.best_path(path) if path else None
    if resume and path and path.exists():
        state = checkpoint.safe_load(path, checkpoint.STATE_FORMAT)
        checkpoint.load_weights(model, state.get("model"), path)
        try:
            optimizer.load_state_dict(state["optimizer"])
            lacking = sorted({k for g in optimizer.param_groups for k in optimizer.defaults if k not in g})
            if lacking:  # e.g. an Adam state (betas) loaded into SGD (momentum)
                raise ValueError(f"the saved optimizer has no {lacking}; it was another kind")
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise checkpoint.CheckpointError(
                f"{path}: this training state does not match the run ({type(e).__name__}: {e}); it was saved "
                "with another optimizer or set of trainable layers; delete it or drop resume to start over"
            ) from None
        if loader_gen is not None and "loader_rng" in state:
            loader_gen.set_state(state["loader_rng"])
        history = History(**state["history"])
        start, best_loss, bad_epochs = state["epoch"], state["best_loss"], state["bad_epochs"]
        if log:
            log(f"resumed from {path} after epoch {start}")
    elif resume and path and log:
        log(f"nothing to resume at {path}; starting at epoch 1")
    epoch = start
    try:
        for epoch in range(start, epochs):
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(epoch)  # TensorLoader: the epoch's shuffle comes from (seed, epoch)
            t0 = time.perf_counter()
            lr_now = optimizer.param_groups[0]["lr"]
            tr = train_one_epoch(
                step_model,
                train_loader,
                optimizer,
                criterion=criterion,
                amp=amp,
                scaler=scaler,
                progress=progress,
                desc=f"{desc}epoch {epoch + 1}/{epochs}",
                batch_scheduler=scheduler if per_batch else None,
            )
            te = evaluate(step_model, test_loader, amp=amp) if test_loader is not None else tr
            if not per_batch:
                scheduler.step()
            for name, value in zip(
                ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"),
                (epoch + 1, tr.loss, tr.accuracy, te.loss, te.accuracy, lr_now, time.perf_counter() - t0),
            ):
                getattr(history, name).append(value)
            if te.accuracy >= history.best_acc:
                history.best_epoch = epoch + 1
                if best_path and meta:
                    checkpoint.save_model(best_path, whole_model or model, meta)
            bad_epochs = 0 if te.loss < best_loss else bad_epochs + 1
            best_loss = min(best_loss, te.loss)
            if log:
                log(
                    f"{desc}epoch {epoch + 1:>2}/{epochs}  train loss {tr.loss:.3f} acc {tr.accuracy:6.2%}  "
                    f"test loss {te.loss:.3f} acc {te.accuracy:6.2%}  lr {lr_now:.1e}  "
                    f"{history.seconds[-1]:.1f}s"
                )
            if path:
                checkpoint.atomic_save(
                    {
                        "format": checkpoint.STATE_FORMAT,
                        "version": checkpoint.VERSION,
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng_state(),
                        "history": asdict(history),
                        "best_loss": best_loss,
                        "bad_epochs": bad_epochs,
                        **({"loader_rng": loader_gen.get_state()} if loader_gen is not None else {}),
                    },
                    path,
                )
            if patience is not None and bad_epochs >= patience:
                history.stopped_early = True
                if log:
                    log(f"early stop: test loss has not improved for {patience} epochs (best {best_loss:.3f})")
                break
    except KeyboardInterrupt:
        history.interrupted = True
        if log:
            where = (
                f"; the state after epoch {epoch} is in {path}, resume with resume=True (--resume)"
                if path and epoch > 0 and path.exists()
                else "; nothing was saved yet"
                if path
                else ""
            )
            log(f"interrupted during epoch {epoch + 1}{where}")
    return history
