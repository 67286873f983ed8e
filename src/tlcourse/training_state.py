"""The resumable training state: its file layout, saving and restoring it, and the RNG states it carries."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .errors import CheckpointError

STATE_FORMAT = "tlcourse-training-state"


@dataclass
class TrainingProgress:
    """The plain-data part of a training state: epochs done, the history so far, early stopping's counters."""

    epoch: int
    history: dict  # train.History as a dict (dataclasses.asdict)
    best_loss: float
    bad_epochs: int
    best_model: dict | None = None  # the best epoch's weights so far (train.FitOptions.restore_best)


def save_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    progress: TrainingProgress,
    loader_generator: torch.Generator | None = None,
) -> Path:
    """Everything a run needs to continue bit for bit: weights, optimizer, scheduler, every RNG, ``progress``."""
    state = {
        "format": STATE_FORMAT,
        "version": checkpoint.VERSION,
        **asdict(progress),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
    }
    if loader_generator is not None:  # a DataLoader's shuffle generator
        state["loader_rng"] = loader_generator.get_state()
    return checkpoint.atomic_save(state, path)


def load_training_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    loader_generator: torch.Generator | None = None,
) -> TrainingProgress:
    """Restore a :func:`save_training_state` file into these objects and the RNGs; return its progress."""
    state = checkpoint.safe_load(path, STATE_FORMAT)
    checkpoint.load_weights(model, state.get("model"), path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        lacking = sorted({k for g in optimizer.param_groups for k in optimizer.defaults if k not in g})
        if lacking:  # e.g. an Adam state (betas) loaded into SGD (momentum)
            raise ValueError(f"the saved optimizer has no {lacking}; it was another kind")
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(
            f"{path}: this training state does not match the run ({type(e).__name__}: {e}); it was saved "
            "with another optimizer or set of trainable layers; delete it or drop resume to start over"
        ) from None
    if loader_generator is not None and "loader_rng" in state:
        loader_generator.set_state(state["loader_rng"])
    return TrainingProgress(
        state["epoch"], state["history"], state["best_loss"], state["bad_epochs"], state.get("best_model")
    )


@dataclass
class TrainingStateFile:
    """The resumable state of these objects at ``path`` (None: not kept)."""

    path: Path | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader_generator: torch.Generator | None = None  # a DataLoader's shuffle generator

    def save(self, history, stopping, best_model: dict | None = None) -> None:
        """Write the state after an epoch: ``history`` (a ``train.History``), early stopping's counters and
        the best epoch's weights (``best_model``, a state dict) when they are kept."""
        if self.path:
            progress = TrainingProgress(
                history.epochs_done, asdict(history), stopping.best_loss, stopping.bad_epochs, best_model
            )
            save_training_state(self.path, self.model, self.optimizer, self.scheduler, progress, self.loader_generator)

    def load(self) -> TrainingProgress | None:
        """Restore every object from ``path``; None when there is nothing to resume."""
        if not (self.path and self.path.exists()):
            return None
        return load_training_state(self.path, self.model, self.optimizer, self.scheduler, self.loader_generator)


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
