"""Transforms: the reference per-image pipeline, the same augmentation on whole batches, and ``preprocess``.

``reference_transform`` is the original design's torchvision pipeline (PIL in, one image at a time).
``BatchTransform`` draws from the same distribution on a uint8 batch already on the device. ``preprocess``
turns any single image into the normalized batch a trained model expects; every predictor calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from . import config, images, models

if TYPE_CHECKING:
    from .checkpoint import ModelMeta


def reference_transform(
    train: bool,
    image_size: int = config.IMAGE_SIZE,
    mean=models.IMAGENET_MEAN,
    std=models.IMAGENET_STD,
    padding: int = config.CROP_PADDING,
    jitter: float = config.JITTER,
) -> v2.Compose:
    """The reference per-image transforms (PIL or tensor in), plus an optional upsampling resize."""
    steps = []
    if train:  # on a PIL image these run in PIL, exactly as in the original design
        crop = v2.RandomCrop(config.IMAGE_SIZE, padding=padding)
        steps += [crop, v2.RandomHorizontalFlip(), v2.ColorJitter(jitter, jitter, jitter)]
    if image_size != config.IMAGE_SIZE:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class BatchTransform(torch.nn.Module):
    """The reference transforms on a whole uint8 batch at once, with per-sample randomness.

    Same distribution as :func:`reference_transform`: crop offsets uniform in 0..2*padding, flip with
    p=0.5, brightness/contrast/saturation factors uniform in [1-j, 1+j] applied in a random order.
    """

    def __init__(
        self,
        augment: bool,
        image_size: int = config.IMAGE_SIZE,
        mean=models.IMAGENET_MEAN,
        std=models.IMAGENET_STD,
        padding: int = config.CROP_PADDING,
        jitter: float = config.JITTER,
    ):
        super().__init__()
        self.augment, self.image_size, self.padding, self.jitter = augment, image_size, padding, jitter
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def without_augmentation(self) -> BatchTransform:
        """The same resize and normalization, no augmentation: what evaluation applies."""
        mean, std = self.mean.flatten().tolist(), self.std.flatten().tolist()
        return BatchTransform(False, self.image_size, mean, std, self.padding, self.jitter).to(self.mean.device)

    def extra_repr(self) -> str:
        return (
            f"augment={self.augment}, image_size={self.image_size}, padding={self.padding}, "
            f"jitter={self.jitter}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
        )

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.float().div_(255)
        if self.augment:
            x = random_crop(x, self.padding, generator)
            x = random_flip(x, generator)
            x = color_jitter(x, self.jitter, generator)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):  # non-square inputs too
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def random_crop(x: torch.Tensor, padding: int, generator=None) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and cut it back at its own random offset."""
    n, _, h, w = x.shape
    xp = F.pad(x, (padding,) * 4)
    oy, ox = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return xp[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(x.shape[1], device=x.device)[None, :, None, None],
        rows,
        cols,
    ]


def random_flip(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Mirror each image left-right with probability 0.5."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def adjust(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    """Brightness (op 0), contrast (1) or saturation (2) by a per-sample factor, as torchvision does."""
    f = factor[:, None, None, None]
    if op == 0:
        other = torch.zeros_like(x)
    elif op == 1:
        other = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    else:
        other = _grayscale(x)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def color_jitter(x: torch.Tensor, strength: float, generator=None) -> torch.Tensor:
    """Brightness, contrast and saturation jitter in a random order per sample.

    Each step rounds down to 8 bits as Pillow (and torchvision on uint8) do: three truncations darken
    the reference images by about 1.5/255 on average, and the batched path keeps that distribution.
    """
    n = len(x)
    factors = torch.empty(3, n, device=x.device).uniform_(1 - strength, 1 + strength, generator=generator)
    order = torch.rand(n, 3, generator=generator, device=x.device).argsort(dim=1)
    for pos in range(3):
        for op in range(3):
            sel = (order[:, pos] == op)[:, None, None, None]
            x = torch.where(sel, adjust(x, op, factors[op]), x)
        x = torch.floor(x * 255 + 1e-3).div_(255)
    return x


# ---------------------------------------------------------------- one image in, a model's input out


def load_uint8(image, size: int, name: str | None = None) -> torch.Tensor:
    """Any image -> a (1, 3, size, size) uint8 batch, resized and centre-cropped as CIFAR-10 test images are made."""
    img = images.fit_square(images.load_image(image, name=name), size)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]


def preprocess(image, meta: ModelMeta) -> torch.Tensor:
    """Any image ``images.load_image`` accepts -> the normalized float (1, 3, S, S) batch the model takes.

    Uses ``meta``'s source size (the training images' resolution), input size, mean and std.
    """
    transform = BatchTransform(False, meta.image_size, meta.mean, meta.std)
    return transform(load_uint8(image, meta.source_size))
