"""Frozen-prefix caching: run the frozen part of a network once, train the rest on its outputs.

Phase 1 (notebook 03) caches pooled features and trains only ``fc``; Phase 2 (notebook 04) caches
the output of conv1..layer3 and trains ``layer4`` + ``fc``. Without augmentation the cached path
computes exactly what the full model computes, at a fraction of the cost per epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, config, devices, distributed, models, train
from . import engine as engines  # the name ``engine`` is extract's option
from .augment import BatchTransform
from .config import Config, default_cache_dir
from .loaders import TensorLoader

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
    prefix: nn.Module,
    loader,
    views: int = 1,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    engine: str = "auto",
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = print,
) -> Features:
    """Run ``prefix`` in eval mode over ``loader`` ``views`` times (one pass per augmented view).

    ``engine`` (``"auto"``, ``"onnxruntime"``, ``"torch"``) picks what runs it (:func:`engine.load_engine`;
    exported engines are kept under ``<cache_dir>/engines``); ``log`` gets one line naming the engine that ran.
    Under torchrun each rank runs its shard of ``loader`` and every rank gets all rows, in order.
    """
    progress = progress and distributed.is_main_process()
    loader = in_order(loader)
    modes = {m: m.training for m in prefix.modules()}  # restored one by one: a fresh Sequential is in train mode
    prefix.eval()
    images = getattr(loader, "num_samples", None)
    if images is None and hasattr(loader, "dataset"):  # a torch DataLoader
        images = len(loader.dataset)
    sharded = distributed.count_shards(loader) > 1
    runner = None
    xs, y = [], None
    try:
        for v in range(views):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(v)
            outs, labels = [], []
            for xb, yb in devices.iterate_batches(loader, f"features (view {v + 1}/{views})", progress):
                if runner is None:
                    # Sharded under torchrun: rank 0 exports an engine file first; the others then load it.
                    with distributed.main_process_first() if sharded else contextlib.nullcontext():
                        runner = engines.load_engine(prefix, xb, engine, images and images * views, cache_dir)
                    if log and distributed.is_main_process():
                        log(f"features computed by {runner.describe()}")
                outs.append(runner(xb).to(dtype))
                labels.append(yb)
            # outside inference_mode: ordinary tensors that training can use
            x_view, y_view = distributed.gather_from_shards(loader, torch.cat(outs), torch.cat(labels))
            xs.append(x_view)
            y = y_view if y is None else y
    finally:
        for m, training in modes.items():
            m.training = training
    return Features(torch.stack(xs), y)


def in_order(loader):
    """An unshuffled copy of a shuffled TensorLoader, so that rows line up across views."""
    if isinstance(loader, TensorLoader) and loader.shuffle:
        return loader.replace(shuffle=False, drop_last=False)
    return loader


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
    engine: str = "auto",
    log: Callable[[str], None] | None = print,
) -> Features:
    """:func:`extract`, kept on disk under ``<cache_dir>/features`` and reused while weights and data match."""
    fp = engines.fingerprint(prefix)
    key = hashlib.sha1(repr((fp, data_key(loader), split, views, str(dtype))).encode()).hexdigest()[:20]
    cache_dir = Path(cfg.cache_dir if cfg else default_cache_dir())
    path = cache_dir / "features" / f"{split}-{key}.pt"
    if path.exists():
        try:
            obj = checkpoint.safe_load(path, FEATURES_FORMAT)
            return Features(obj["x"], obj["y"])
        except Exception:  # a damaged cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
    feats = extract(prefix, loader, views, dtype, progress, engine, cache_dir, log)
    if distributed.is_main_process():  # every rank holds the same features; one writes them
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
    train_feats: Features,
    *eval_feats: Features | None,
    batch_size: int = config.BATCH_SIZE,
    device="cpu",
    seed: int = 0,
) -> tuple[ViewLoader | None, ...]:
    """Loaders over cached features, shaped like the image loaders so :func:`train.fit` takes them.

    The first is shuffled (training); one in-order loader follows for each of ``eval_feats`` (None stays None).
    """
    kw = dict(batch_size=batch_size, device=device, seed=seed)
    return (
        ViewLoader(train_feats, shuffle=True, **kw),
        *(ViewLoader(f, shuffle=False, **kw) if f is not None else None for f in eval_feats),
    )


def without_augmentation(train_loader: TensorLoader, clean_loader: TensorLoader | None = None) -> TensorLoader:
    """The training images in order, through ``clean_loader``'s (non-augmenting) transform, or without one
    through the training transform with its augmentation turned off."""
    clean = clean_loader.transform if clean_loader is not None else train_loader.transform.without_augmentation()
    return train_loader.replace(shuffle=False, drop_last=False, transform=clean)


def fit_cached(
    model: nn.Module,
    at: str,
    train_loader,
    val_loader,
    epochs: int,
    lr: float,
    cfg: Config | None = None,
    augment_views: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    options: train.FitOptions | None = None,
    test_loader=None,
) -> train.History:
    """Freeze everything before ``at``, cache its outputs once, and train the rest on the cache.

    ``augment_views=0`` caches one clean pass of the training images; ``K`` > 0 caches K augmented
    passes and trains on view ``epoch % K`` each epoch. The trained weights end up in ``model``.
    ``cfg`` only says where the cache lives (default: the user cache folder); ``optimizer``, ``scheduler``,
    ``options`` and ``test_loader`` go to :func:`train.fit` (``options.progress`` also shows the extraction's).
    """
    options = options or train.FitOptions()
    models.freeze_until(model, at)
    prefix, suffix = models.split_model(model, at)
    clean = val_loader if val_loader is not None else test_loader  # None: the training transform, unaugmented
    size = next(iter(clean if clean is not None else train_loader))[0].shape[-1]
    dtype = torch.float16 if at != "fc" and size >= 96 else torch.float32  # halves a >1 GB cache
    unaugmentable = isinstance(clean, TensorLoader) or isinstance(
        getattr(train_loader, "transform", None), BatchTransform
    )
    if augment_views == 0 and isinstance(train_loader, TensorLoader) and unaugmentable:
        train_loader = without_augmentation(train_loader, clean)
    views = max(augment_views, 1)

    def extract_split(loader, split: str, n_views: int = 1) -> Features | None:
        if loader is None:
            return None
        f = cached_extract(cfg, prefix, loader, split, n_views, dtype, options.progress, log=options.log)
        return f if dtype == torch.float32 else Features(f.x.float(), f.y)

    ftr, fval, fte = feature_loaders(
        extract_split(train_loader, "train", views),
        extract_split(val_loader, "val"),
        extract_split(test_loader, "test"),
        batch_size=getattr(train_loader, "batch_size", config.BATCH_SIZE),
        device=str(next(model.parameters()).device),
        seed=getattr(train_loader, "seed", 0),
    )
    options = dataclasses.replace(options, whole_model=model)
    return train.fit(suffix, ftr, fval, epochs, lr, optimizer, scheduler, options=options, test_loader=fte)
