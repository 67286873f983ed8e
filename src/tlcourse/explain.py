"""Grad-CAM: where in the image a stage's activations hold the evidence for a class (notebook 05).

Grad-CAM (Selvaraju et al., 2017, arXiv:1610.02391) weights each channel of a stage's output by
the mean gradient of the class score over that channel, sums, keeps the positive part and
upsamples to the input size. The map can only be as sharp as the stage's grid: at 32 px input
layer4 is 1x1 (one number: the map is flat), layer3 2x2, layer2 4x4 (see ``feature_map_sizes``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import models

CAM_STAGES = models.STAGES[:-1]  # conv1 .. layer4: stages with a spatial grid


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    n = logits.shape[0]
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, device=logits.device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries for a batch of {n} images; give one per image or one for all")
    if (t < 0).any() or (t >= logits.shape[1]).any():
        raise ValueError(f"target classes must be in 0..{logits.shape[1] - 1}, got {t.tolist()}")
    return t


def grad_cam_and_probs(
    model: nn.Module, x: torch.Tensor, target=None, stage: str = "layer4"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(maps (N, H, W) in [0, 1] at the input size, softmax probabilities (N, C)), one forward pass.

    Works with frozen parameters; leaves the model's mode, weights and BatchNorm statistics as
    they were.
    """
    if stage not in CAM_STAGES:
        raise ValueError(f"stage must be one of {CAM_STAGES}, not {stage!r}")
    if x.ndim != 4:
        raise ValueError(f"x must be a batch (N, 3, H, W), got shape {tuple(x.shape)}")
    module = models.stage_modules(model)[stage]
    device = next(model.parameters()).device
    saved: dict[str, torch.Tensor] = {}

    def hook(_mod, _inp, out):
        # A leaf that requires grad: the gradient exists even when every parameter is frozen.
        leaf = out.detach().requires_grad_(True)
        saved["a"] = leaf
        return leaf.clone()  # later in-place operations must not touch the leaf

    handle = module.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            logits = model(x.to(device).float())
            t = _targets(target, logits)
            score = logits.gather(1, t[:, None]).sum()
            (grads,) = torch.autograd.grad(score, saved["a"])
    finally:
        handle.remove()
        model.train(was_training)
    acts = saved["a"].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    # Divide by the peak (not min-max): a flat map stays flat, and "no positive evidence" stays 0.
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
    return cam.clamp(0, 1).cpu(), torch.softmax(logits.detach().float(), 1).cpu()


def grad_cam(model: nn.Module, x: torch.Tensor, target=None, stage: str = "layer4") -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1], upsampled to ``x``'s size.

    ``target``: None (each image's predicted class), one class index, or one per image.
    ``stage``: conv1, layer1 .. layer4 (the same names on both backbones).
    """
    return grad_cam_and_probs(model, x, target, stage)[0]


@torch.no_grad()
def feature_map_sizes(model: nn.Module, image_size: int) -> dict[str, tuple[int, int]]:
    """Stage -> (H, W) of its output for a square input: how sharp a CAM from that stage can be."""
    from .probe import stage_shapes

    shapes = stage_shapes(model, image_size)
    return {name: (int(shapes[name][-2]), int(shapes[name][-1])) for name in models.STAGES[:-1]}
