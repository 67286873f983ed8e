"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks"; fastai's
``lr_find``): train for a bounded number of steps while the rate grows exponentially, record the smoothed loss,
stop when it diverges, put the model and optimizer back as they were, and suggest a rate before the minimum.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import devices, models


@dataclass
class RangeTest:
    """Rates tried, in order, with the raw and smoothed (debiased running mean) training loss at each."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    diverged: bool  # stopped early because the smoothed loss exceeded ``diverge`` times its minimum

    @property
    def min_lr(self) -> float:
        """The rate at the smoothed loss's minimum: already too high to train at (the loss turns up soon after)."""
        return self.lrs[min(range(len(self.smoothed)), key=self.smoothed.__getitem__)]

    @property
    def suggestion(self) -> float:
        """A tenth of :attr:`min_lr`: one decade before the minimum, where the loss still falls (fastai v1's rule)."""
        return self.min_lr / 10

    @property
    def found_minimum(self) -> bool:
        """False when the loss was still falling at the last rate (no divergence): then there is nothing to suggest."""
        return self.diverged or self.min_lr < self.lrs[-1]

    def steepest_lr(self, skip: int = 10) -> float:
        """The rate where the smoothed loss falls fastest against log(rate) before the minimum, after ``skip`` noisy
        first steps (fastai's "steep"; it moves more from run to run than :attr:`suggestion`)."""
        k = min(range(len(self.smoothed)), key=self.smoothed.__getitem__)
        if k <= skip + 1:
            return self.lrs[skip] if skip < len(self.lrs) else self.lrs[0]
        logs = [math.log(lr) for lr in self.lrs]
        slopes = {i: (self.smoothed[i + 1] - self.smoothed[i]) / (logs[i + 1] - logs[i]) for i in range(skip, k)}
        return self.lrs[min(slopes, key=slopes.__getitem__)]


def range_test(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer | None = None,
    criterion: nn.Module | None = None,
    start_lr: float = 1e-6,
    end_lr: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    diverge: float = 4.0,
    amp: bool = True,
) -> RangeTest:
    """Run the range test on ``model``'s trainable parameters (Adam unless ``optimizer``), at most ``steps`` batches.

    The rate at step ``i`` is ``start_lr * (end_lr / start_lr) ** (i / (steps - 1))``; ``loader`` is cycled if it
    is shorter. ``beta=0.9`` averages the loss over about ten steps (fastai's 0.98, about fifty, lags far behind in
    a test of a hundred steps). Afterwards the model's weights and buffers and the optimizer's state are exactly
    what they were.
    """
    criterion = criterion or nn.CrossEntropyLoss()
    optimizer = optimizer or torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=start_lr)
    device = devices.device_of(model)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    modes = {m: m.training for m in model.modules()}  # frozen BatchNorm layers stay in eval mode
    scaler = devices.make_grad_scaler(device, amp)
    lrs, losses, smoothed, avg, best, diverged = [], [], [], 0.0, math.inf, False
    batches = _cycle(loader)
    models.train_mode(model)
    try:
        for i in range(steps):
            lr = start_lr * (end_lr / start_lr) ** (i / max(steps - 1, 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches)
            x, y = devices.to_device(x, device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            with devices.autocast(device, amp):
                loss = criterion(model(x), y)
            devices.backward_step(loss, optimizer, scaler)
            value = loss.item()
            if not math.isfinite(value):
                diverged = True
                break
            avg = beta * avg + (1 - beta) * value
            lrs.append(lr)
            losses.append(value)
            smoothed.append(avg / (1 - beta ** (i + 1)))
            best = min(best, smoothed[-1])
            if smoothed[-1] > diverge * best:
                diverged = True
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_opt)
        for m, mode in modes.items():
            m.training = mode
    return RangeTest(lrs, losses, smoothed, diverged)


def _cycle(loader):
    """Batches of ``loader``, starting over when it is exhausted."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yields no batches")
