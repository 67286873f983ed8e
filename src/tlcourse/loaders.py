"""Loaders: batches of decoded images for training and evaluation, in two families.

``make_loaders`` (notebooks 00-07) keeps the decoded uint8 images in one tensor on the device and
augments whole batches at once (``TensorLoader``). ``make_torch_loaders`` is the reference pipeline (a
DataLoader applying PIL transforms image by image), kept as the baseline that notebook 02 teaches from
and ``benchmarks/`` measure against.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from . import config, data, distributed, images, models
from .augment import BatchTransform, reference_transform
from .config import Config


class TensorLoader:
    """Batches drawn from tensors already in memory (on the device), transformed a batch at a time.

    Iterating twice gives two different shuffles; ``set_epoch(e)`` fixes the shuffle and the
    augmentation of epoch ``e`` from the seed, which makes resumed training exact. Under torchrun
    (``rank``/``world_size``, default: the process group's) every rank draws the same shuffle and takes
    its shard of it (:func:`distributed.shard_indices`); ranks other than 0 augment from their own stream.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = config.BATCH_SIZE,
        shuffle: bool = False,
        transform=None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.rank = distributed.get_rank() if rank is None else rank
        self.world_size = distributed.get_world_size() if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not one of the {self.world_size} ranks (0..{self.world_size - 1})")
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.transform = batch_size, shuffle, transform
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        if transform is not None and isinstance(transform, torch.nn.Module):
            transform.to(self.device)

    def replace(self, **changes) -> TensorLoader:
        """A new loader (at epoch 0) with some fields changed, e.g. ``loader.replace(shuffle=False)``."""
        fields = ("x", "y", "batch_size", "shuffle", "transform", "device", "seed", "drop_last", "rank", "world_size")
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"TensorLoader.replace: unknown field(s) {sorted(unknown)}; known: {list(fields)}")
        return TensorLoader(**({f: getattr(self, f) for f in fields} | changes))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = -(-len(self.y) // self.world_size)  # this rank's samples (shards are padded to equal sizes)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def __iter__(self):
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = self._order(gen)
        # Rank 0 keeps one process's stream (its results do not change); other ranks augment from their own.
        if self.rank:
            gen = torch.Generator(device=self.device).manual_seed(gen.initial_seed() * 8191 + self.rank)
        for b in range(len(self)):
            idx = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if order is not None:
                idx = order[idx]
            xb = self.x[idx]
            yield (self.transform(xb, generator=gen) if self.transform is not None else xb), self.y[idx]

    def _order(self, gen: torch.Generator) -> torch.Tensor | None:
        """This rank's sample indices for the epoch; None means all samples in order (one process, no shuffle)."""
        n = len(self.y)
        if not self.shuffle and self.world_size == 1:
            return None
        order = (
            torch.randperm(n, generator=gen, device=self.device)
            if self.shuffle
            else torch.arange(n, device=self.device)
        )
        return distributed.shard_indices(order, self.rank, self.world_size)


def set_epoch(loader, epoch: int) -> None:
    """Fix the epoch's shuffle from (seed, epoch): a TensorLoader's own, a DistributedSampler's under torchrun."""
    for obj in (loader, getattr(loader, "sampler", None)):
        if hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


class LoaderSet(NamedTuple):
    """The three loaders of a run: ``train`` (shuffled, augmented), ``val`` (chooses epochs; None when
    ``cfg.val_size`` is 0) and ``test`` (the final figure)."""

    train: TensorLoader
    val: TensorLoader | None
    test: TensorLoader


def make_loaders(cfg: Config, augment: bool = True, root=None) -> LoaderSet:
    """The course's fast loaders: decoded images on ``cfg.device``, the reference augmentation batched."""
    splits = data.load_datasets(cfg, root)
    mean, std = models.normalization(cfg.backbone)
    kw = dict(batch_size=cfg.batch_size, device=cfg.device, seed=cfg.seed)
    tf = dict(image_size=cfg.image_size, mean=mean, std=std, padding=cfg.crop_padding, jitter=cfg.jitter)
    clean = BatchTransform(False, **tf)
    return LoaderSet(
        TensorLoader(
            splits.train.images, splits.train.labels, shuffle=True, **kw, transform=BatchTransform(augment, **tf)
        ),
        TensorLoader(splits.val.images, splits.val.labels, **kw, transform=clean) if len(splits.val) else None,
        TensorLoader(splits.test.images, splits.test.labels, **kw, transform=clean),
    )


class ArrayDataset(Dataset):
    """Images from a uint8 array, one PIL image per item, then a per-image transform."""

    def __init__(self, arrays: data.ImageArrays, transform=None):
        self.arrays, self.transform = arrays, transform

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.arrays.images[i].permute(1, 2, 0).numpy())
        return (self.transform(img) if self.transform else img), int(self.arrays.labels[i])


class FileDataset(Dataset):
    """Decode an image file on every access, as the seed's ImageFolder does."""

    def __init__(self, files: list[Path], labels: list[int], transform=None):
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        img = images.load_image(self.files[i])
        if img.size != (config.IMAGE_SIZE,) * 2:  # any photo becomes a CIFAR-sized input, as decode_files does
            img = images.fit_square(img, config.IMAGE_SIZE)
        return (self.transform(img) if self.transform else img), self.labels[i]


def _profile_indices(split: str, labels: torch.Tensor, cfg: Config) -> torch.Tensor:
    """The images :func:`make_loaders` trains or tests on (the validation slice is never trained on)."""
    return (
        data.holdout_indices(labels, cfg)[0]
        if split == "train"
        else data.subset_indices(labels, cfg.test_size, cfg.seed)
    )


def make_torch_loaders(cfg: Config, root=None, augment: bool = True) -> tuple[DataLoader, DataLoader]:
    """The reference pipeline: a DataLoader decoding files (or arrays) and transforming per image."""
    mean, std = models.normalization(cfg.backbone)
    kind, _ = data.locate_cifar10(root, cfg)
    loaders = []
    for split, train in (("train", True), ("test", False)):
        tf = reference_transform(train and augment, cfg.image_size, mean, std, cfg.crop_padding, cfg.jitter)
        if kind == "folder":
            files, labels = data.list_image_files(split, root, cfg)
            idx = _profile_indices(split, torch.tensor(labels), cfg).tolist()
            ds = FileDataset([files[i] for i in idx], [labels[i] for i in idx], tf)
        else:
            arr = data.load_split(split, root, cfg)
            ds = ArrayDataset(arr.subset(_profile_indices(split, arr.labels, cfg)), tf)
        # Under torchrun each rank reads its shard; fit calls the sampler's set_epoch for each epoch's shuffle.
        sampler = DistributedSampler(ds, shuffle=train, seed=cfg.seed) if distributed.get_world_size() > 1 else None
        loaders.append(
            DataLoader(
                ds,
                batch_size=cfg.batch_size,
                shuffle=train and sampler is None,
                sampler=sampler,
                num_workers=cfg.num_workers,
                pin_memory=torch.device(cfg.device).type == "cuda",
                persistent_workers=cfg.num_workers > 0,
                generator=torch.Generator().manual_seed(cfg.seed) if train and sampler is None else None,
            )
        )
    return loaders[0], loaders[1]
