"""Frozen-prefix caching: run the frozen part of a network once, train the rest on its outputs.

Phase 1 (notebook 03) caches pooled features and trains only ``fc``; Phase 2 (notebook 04) caches
the output of conv1..layer3 and trains ``layer4`` + ``fc``. Without augmentation the cached path
computes exactly what the full model computes, at a fraction of the cost per epoch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint, models, train
from .config import Config, default_cache_dir
from .data import TensorLoader

FEATURES_FORMAT = "tlcourse-features"


@dataclass
class Features:
    """Cached activations ``x`` (views, N, ...) and labels ``y`` (N,); one view without augmentation."""

    x: torch.Tensor
    y: torch.Tensor

    @property
    def views(self) -> int:
        return self.x.shape[0]

    def __len__(self) -> int:
        return len(self.y)


@torch.no_grad()
def extract(
    prefix: nn.Module, loader, views: int = 1, dtype: torch.dtype = torch.float32, progress: bool = True
) -> Features:
    """Run ``prefix`` in eval mode over ``loader`` ``views`` times (one pass per augmented view)."""
    device = next(prefix.parameters()).device
    if device.type != "mps":
        prefix.to(memory_format=torch.channels_last)  # matches train._to's batches; faster on CPU and GPU
    loader = in_order(loader)
    was_training = prefix.training
    prefix.eval()
    xs, y = [], None
    for v in range(views):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(v)
        outs, labels = [], []
        for xb, yb in tqdm(
            train._batches(loader),
            total=len(loader),
            desc=f"features (view {v + 1}/{views})",
            leave=False,
            disable=not progress,
        ):
            with train._autocast(device, True):
                outs.append(prefix(train._to(xb, device)).to(dtype))
            labels.append(yb)
        xs.append(torch.cat(outs))
        y = torch.cat(labels) if y is None else y
    prefix.train(was_training)
    return Features(torch.stack(xs), y)


def in_order(loader):
    """An unshuffled copy of a shuffled TensorLoader, so that rows line up across views."""
    if isinstance(loader, TensorLoader) and loader.shuffle:
        return TensorLoader(loader.x, loader.y, loader.batch_size, False, loader.transform, loader.device, loader.seed)
    return loader


def fingerprint(module: nn.Module) -> str:
    """A short hash of a module's weights and buffers: changes whenever the cached values would."""
    h = hashlib.sha1()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def data_key(loader) -> str:
    """What a loader yields, as a short hash: its images (TensorLoader), size and transform."""
    h = hashlib.sha1(
        repr(
            (
                type(loader).__name__,
                getattr(loader, "num_samples", None),
                repr(getattr(loader, "transform", None)),
                getattr(loader, "seed", None),
            )
        ).encode()
    )
    if isinstance(loader, TensorLoader):
        h.update(loader.x.detach().cpu().contiguous().numpy().tobytes())
        h.update(loader.y.detach().cpu().numpy().tobytes())
    else:
        ds = getattr(loader, "dataset", None)
        h.update(repr((len(ds) if ds is not None else None, repr(getattr(ds, "transform", None)))).encode())
    return h.hexdigest()[:16]


def cached_extract(
    cfg: Config | None,
    prefix: nn.Module,
    loader,
    split: str,
    views: int = 1,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> Features:
    """:func:`extract`, kept on disk under ``<cache_dir>/features`` and reused while weights and data match."""
    key = hashlib.sha1(repr((fingerprint(prefix), data_key(loader), split, views, str(dtype))).encode()).hexdigest()[
        :20
    ]
    path = Path(cfg.cache_dir if cfg else default_cache_dir()) / "features" / f"{split}-{key}.pt"
    if path.exists():
        try:
            obj = checkpoint.safe_load(path, FEATURES_FORMAT)
            return Features(obj["x"], obj["y"])
        except Exception:  # a damaged cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
    feats = extract(prefix, loader, views, dtype, progress)
    checkpoint.atomic_save({"format": FEATURES_FORMAT, "version": 1, "x": feats.x.cpu(), "y": feats.y.cpu()}, path)
    return feats


class ViewLoader(TensorLoader):
    """Shuffled batches of cached features, using view ``epoch % views`` in each epoch."""

    def __init__(self, feats: Features, **kw):
        super().__init__(feats.x, feats.y, **kw)
        self.all_views = self.x

    def __iter__(self):
        self.x = self.all_views[self.epoch % self.all_views.shape[0]]
        return super().__iter__()


def feature_loaders(
    train_feats: Features, test_feats: Features, batch_size: int = 128, device: str = "cpu", seed: int = 0
) -> tuple[ViewLoader, ViewLoader]:
    """Loaders over cached features, shaped like the image loaders so :func:`train.fit` takes them."""
    return (
        ViewLoader(train_feats, batch_size=batch_size, shuffle=True, device=device, seed=seed),
        ViewLoader(test_feats, batch_size=batch_size, shuffle=False, device=device, seed=seed),
    )


def without_augmentation(train_loader: TensorLoader, test_loader: TensorLoader) -> TensorLoader:
    """The training images in order, through the test loader's (non-augmenting) transform."""
    return TensorLoader(
        train_loader.x,
        train_loader.y,
        train_loader.batch_size,
        False,
        test_loader.transform,
        train_loader.device,
        train_loader.seed,
    )


def fit_cached(
    model: nn.Module,
    at: str,
    train_loader,
    test_loader,
    epochs: int,
    lr: float,
    cfg: Config | None = None,
    augment_views: int = 0,
    progress: bool = True,
    **fit_kw,
) -> train.History:
    """Freeze everything before ``at``, cache its outputs once, and train the rest on the cache.

    ``augment_views=0`` caches one clean pass of the training images; ``K`` > 0 caches K augmented
    passes and trains on view ``epoch % K`` each epoch. The trained weights end up in ``model``.
    ``cfg`` only says where the cache lives (default: the user cache folder).
    """
    models.freeze_until(model, at)
    prefix, suffix = models.split_model(model, at)
    size = next(iter(test_loader))[0].shape[-1]
    dtype = torch.float16 if at != "fc" and size >= 96 else torch.float32  # halves a >1 GB cache
    if augment_views == 0 and isinstance(train_loader, TensorLoader) and isinstance(test_loader, TensorLoader):
        train_loader = without_augmentation(train_loader, test_loader)
    tr = cached_extract(cfg, prefix, train_loader, "train", max(augment_views, 1), dtype, progress)
    te = cached_extract(cfg, prefix, test_loader, "test", 1, dtype, progress)
    if dtype != torch.float32:
        tr, te = Features(tr.x.float(), tr.y), Features(te.x.float(), te.y)
    ftr, fte = feature_loaders(
        tr,
        te,
        getattr(train_loader, "batch_size", 128),
        str(next(model.parameters()).device),
        getattr(train_loader, "seed", 0),
    )
    return train.fit(suffix, ftr, fte, epochs, lr=lr, progress=progress, whole_model=model, **fit_kw)
