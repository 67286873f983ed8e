"""What :func:`train.fit` keeps track of across epochs: early stopping, the best epoch's weights, its report lines."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from . import checkpoint
from .checkpoint import ModelMeta

if TYPE_CHECKING:
    from .train import History


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without a lower validation loss (``None``: never)."""

    patience: int | None = None
    best_loss: float = float("inf")
    bad_epochs: int = 0

    def update(self, val_loss: float) -> bool:
        """Count one epoch's validation loss; True when training should stop."""
        self.bad_epochs = 0 if val_loss < self.best_loss else self.bad_epochs + 1
        self.best_loss = min(self.best_loss, val_loss)
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
class BestWeights:
    """An in-memory copy of the weights of the epoch the history marks best, put back when training ends."""

    model: nn.Module
    state: dict | None = None
    epoch: int | None = None

    def update(self, history: History) -> None:
        if history.best_epoch == history.epochs_done:
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.epoch = history.best_epoch

    def restore(self, history: History, report: ProgressReport) -> None:
        """Load the best epoch's weights unless the last epoch was the best."""
        if history.best_epoch in (None, history.epochs_done):
            return
        if self.epoch != history.best_epoch:  # the best epoch ran before a resume: its weights are not in memory
            report.say(f"the best epoch ({history.best_epoch}) ran before resuming; keeping the last epoch's weights")
            return
        self.model.load_state_dict(self.state)
        report.say(f"restored the weights of epoch {self.epoch}, the best on validation ({history.best_val_acc:.2%})")


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
        val = "" if math.isnan(h.val_loss[-1]) else f"val loss {h.val_loss[-1]:.3f} acc {h.val_acc[-1]:6.2%}  "
        self.say(
            f"{self.desc}epoch {h.epochs_done:>2}/{self.epochs}  train loss {h.train_loss[-1]:.3f} "
            f"acc {h.train_acc[-1]:6.2%}  {val}lr {h.lr[-1]:.1e}  {h.seconds[-1]:.1f}s"
        )

    def tested(self, h: History) -> None:
        self.say(f"{self.desc}test (once, after training): loss {h.test_loss:.3f} acc {h.test_acc:6.2%}")

    def interrupted(self, epoch: int, state_path: Path | None) -> None:
        """Ctrl-C during ``epoch`` (counted from 0): say where the last saved state is, if anywhere."""
        if state_path is None:
            where = ""
        elif epoch > 0 and state_path.exists():
            where = f"; the state after epoch {epoch} is in {state_path}, resume with resume=True (--resume)"
        else:
            where = "; nothing was saved yet"
        self.say(f"interrupted during epoch {epoch + 1}{where}")
