"""The LR range test on a problem whose largest stable rate is known: least squares with plain gradient descent."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tlcourse import lr_finder


def _least_squares(seed: int = 0):
    """A linear model, one full batch, MSE loss; gradient descent diverges exactly above 2 / L."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=gen) * torch.linspace(0.5, 3.0, 8)  # unequal curvature per direction
    y = x @ torch.randn(8, 1, generator=gen) + 0.1 * torch.randn(256, 1, generator=gen)
    model = nn.Linear(8, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    hessian = 2 * x.T @ x / len(x)  # of mean((xw - y)^2)
    return model, [(x, y)], 2 / torch.linalg.eigvalsh(hessian).max().item()


def test_divergence_is_found_above_two_over_l_and_the_suggestion_is_below_it():
    model, batches, limit = _least_squares()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    result = lr_finder.range_test(model, batches, opt, nn.MSELoss(), start_lr=1e-5, end_lr=10.0, steps=120, amp=False)
    assert result.diverged and result.found_minimum
    # Below 2/L every step shrinks the error: the loss never rises, so the stop can only come above the limit.
    assert result.lrs[-1] > limit
    assert all(b <= a + 1e-6 for a, b, lr in zip(result.losses, result.losses[1:], result.lrs[1:]) if lr < limit)
    # The suggestion sits before the minimum, within two decades of the largest stable rate.
    assert limit / 100 < result.suggestion < result.min_lr and result.suggestion < limit
    assert result.steepest_lr() <= result.min_lr
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) < 120
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios)) and ratios[0] == pytest.approx((10.0 / 1e-5) ** (1 / 119))


def test_model_and_optimizer_state_are_restored():
    model, batches, _ = _least_squares(seed=1)
    model.add_module("bn", nn.BatchNorm1d(1))  # a buffer that training would change, restored too
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):  # give Adam some state to keep
        opt.zero_grad()
        nn.functional.mse_loss(model(batches[0][0]), batches[0][1]).backward()
        opt.step()
    model.eval()
    before_model = {k: v.clone() for k, v in model.state_dict().items()}
    before_opt = opt.state_dict()
    exp_avg = {k: {n: t.clone() for n, t in s.items()} for k, s in before_opt["state"].items()}
    lr_finder.range_test(model, batches, opt, nn.MSELoss(), steps=30, amp=False)
    assert all(torch.equal(before_model[k], v) for k, v in model.state_dict().items())
    after = opt.state_dict()
    assert [g["lr"] for g in after["param_groups"]] == [1e-3]
    assert all(torch.equal(exp_avg[k][n], t) for k, s in after["state"].items() for n, t in s.items())
    assert not model.training  # the mode it was in


def test_a_loss_that_only_falls_has_no_minimum_to_suggest():
    """Linearly separable data: larger steps only grow the margins, the loss never turns up."""
    x = torch.cat([torch.randn(32, 2) + 4, torch.randn(32, 2) - 4])
    y = torch.cat([torch.zeros(32), torch.ones(32)]).long()
    result = lr_finder.range_test(nn.Linear(2, 2), [(x, y)], start_lr=1e-4, end_lr=1e-1, steps=40, amp=False)
    assert not result.diverged and not result.found_minimum
    assert all(math.isfinite(v) for v in result.smoothed)


def test_an_empty_loader_is_refused():
    with pytest.raises(ValueError, match="no batches"):
        lr_finder.range_test(nn.Linear(2, 2), [], steps=3)
