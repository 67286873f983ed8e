"""Probes: measurements of what a network computes, without training the network itself.

- :func:`linear_probe` freezes a model, extracts pooled features of clean (un-augmented) images
  once and fits a multinomial logistic regression on them (scikit-learn): test accuracy and seconds.
  Notebooks 02-04 and ``benchmarks/`` use it to compare backbones, normalizations and resolutions.
- :func:`project_2d` reduces features to two dimensions (PCA or t-SNE) for a scatter plot (notebook 03).
- :func:`block_gradient_norms` measures gradient norms per residual/plain block (notebooks 01, 06).
- :func:`stage_table` lists each stage's parameters and output shape per input size, found with
  forward hooks (the anatomy tables of notebooks 01 and 04).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from . import augment, data, features, loaders, models
from .config import Config


@dataclass
class ProbeResult:
    """What :func:`linear_probe` measured; ``seconds`` = feature extraction + fitting."""

    accuracy: float
    train_accuracy: float
    seconds: float
    extract_seconds: float
    fit_seconds: float
    image_size: int
    n_train: int
    n_test: int
    feature_dim: int

    def as_row(self) -> dict:
        """A flat dict, for ``pandas.DataFrame([r.as_row() for r in results])``."""
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"linear probe at {self.image_size} px: test {self.accuracy:.1%} (train {self.train_accuracy:.1%}), "
            f"{self.n_train:,} train / {self.n_test:,} test, {self.feature_dim} features, "
            f"{self.seconds:.1f} s ({self.extract_seconds:.1f} s features + {self.fit_seconds:.1f} s fit)"
        )


@dataclass
class LogisticFit:
    """A fitted scikit-learn pipeline (standardize, then logistic regression) and its accuracies."""

    accuracy: float
    train_accuracy: float
    seconds: float
    pipeline: object

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities (rows, classes) for features or a (rows, D) array."""
        return self.pipeline.predict_proba(_flat(x)[0])

    def score(self, feats: features.Features) -> float:
        """Accuracy on other features, e.g. of flipped test images (notebook 02)."""
        x, y = _flat(feats)
        return float(self.pipeline.score(x, y))


def clean_loaders(
    cfg: Config, image_size: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> tuple[loaders.TensorLoader, loaders.TensorLoader]:
    """The profile's train and test images in order, without augmentation, at ``image_size`` px.

    ``mean``/``std`` default to the backbone's own normalization (:func:`models.normalization`).
    """
    splits = data.load_datasets(cfg)
    train, test = splits.train, splits.test
    default_mean, default_std = models.normalization(cfg.backbone)
    tf = augment.BatchTransform(
        False, image_size or cfg.image_size, default_mean if mean is None else mean, default_std if std is None else std
    )
    kw = dict(batch_size=cfg.batch_size, shuffle=False, transform=tf, device=cfg.device, seed=cfg.seed)
    return loaders.TensorLoader(train.images, train.labels, **kw), loaders.TensorLoader(test.images, test.labels, **kw)


def extract_features(
    cfg: Config,
    model: nn.Module,
    image_size: int | None = None,
    mean=None,
    std=None,
    cache: bool = False,
    progress: bool = True,
    engine: str = "auto",
) -> tuple[features.Features, features.Features]:
    """Pooled features (what ``fc`` sees) of the clean train and test images; the model is not changed.

    ``cache=True`` keeps them on disk under ``cfg.cache_dir`` (reused while the weights are the same);
    ``engine`` runs the body (:func:`engine.load_engine`), named in one line when ``progress``.
    """
    prefix, _ = models.split_model(model, "fc")
    train_loader, test_loader = clean_loaders(cfg, image_size, mean, std)
    kw = dict(progress=progress, engine=engine, log=print if progress else None)
    if not cache:
        return (
            features.extract(prefix, train_loader, cache_dir=cfg.cache_dir, **kw),
            features.extract(prefix, test_loader, cache_dir=cfg.cache_dir, **kw),
        )
    c = cfg.replace(image_size=image_size or cfg.image_size)
    return (
        features.cached_extract(c, prefix, train_loader, "train", **kw),
        features.cached_extract(c, prefix, test_loader, "test", **kw),
    )


def _flat(f) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (views, N, D) / tensor / array -> (rows, D) float array and labels (views stacked)."""
    if isinstance(f, features.Features):
        x = f.x.float().reshape(-1, f.x.shape[-1])
        return x.cpu().numpy(), f.y.repeat(f.views).cpu().numpy()
    x = f.detach().float().cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f, dtype=np.float32)
    return x.reshape(len(x), -1), None


def logistic_regression(
    train: features.Features, test: features.Features, C: float = 0.003, max_iter: int = 300, seed: int = 0
) -> LogisticFit:
    """Standardize the features, fit scikit-learn's multinomial LogisticRegression, score on ``test``.

    ``C`` is the inverse L2 strength. 0.003 was the best of 0.001-0.03 on a validation split (8k/2k of
    the quick profile's training images; EfficientNet-Lite0 at 32 and 64 px), never on the test set.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    xtr, ytr = _flat(train)
    xte, yte = _flat(test)
    t0 = time.perf_counter()
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    # One BLAS/OpenMP thread: next to PyTorch's thread pool, more threads made the fit 5-30x slower
    # (measured on a 2-core CPU), and these matrices are small.
    with threadpool_limits(limits=1):
        pipe.fit(xtr, ytr)
    seconds = time.perf_counter() - t0
    return LogisticFit(float(pipe.score(xte, yte)), float(pipe.score(xtr, ytr)), seconds, pipe)


def linear_probe(
    cfg: Config,
    model: nn.Module,
    image_size: int | None = None,
    mean=None,
    std=None,
    C: float = 0.003,
    cache: bool = False,
    progress: bool = True,
) -> ProbeResult:
    """How linearly separable a frozen model's features are: extract once, fit a logistic regression.

    Clean images (no augmentation) at ``image_size`` px (default ``cfg.image_size``), normalized with
    ``mean``/``std`` (default: the backbone's own). Timing includes extraction unless ``cache`` hits.
    """
    size = image_size or cfg.image_size
    t0 = time.perf_counter()
    train, test = extract_features(cfg, model, size, mean, std, cache=cache, progress=progress)
    extract_seconds = time.perf_counter() - t0
    fit = logistic_regression(train, test, C=C, seed=cfg.seed)
    return ProbeResult(
        fit.accuracy,
        fit.train_accuracy,
        extract_seconds + fit.seconds,
        extract_seconds,
        fit.seconds,
        size,
        len(train),
        len(test),
        int(train.x.shape[-1]),
    )


def project_2d(x, method: str = "pca", seed: int = 0, unit_rows: bool = True) -> np.ndarray:
    """(N, D) features -> (N, 2) points: PCA (linear, instant) or t-SNE (neighbourhoods, slower).

    ``unit_rows`` scales each feature vector to length 1 first: a few images with very large
    activations would otherwise dominate the two components (seen with pretrained CNN features).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    arr = _flat(x)[0]
    if unit_rows:
        arr = arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', not {method!r}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # see logistic_regression
        if method == "pca":
            return PCA(n_components=2, random_state=seed).fit_transform(arr)
        return TSNE(
            n_components=2, init="pca", perplexity=min(30.0, (len(arr) - 1) / 3), random_state=seed
        ).fit_transform(arr)


def block_gradient_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, block_types: tuple[type, ...] = (models.ResidualBlock,)
) -> list[float]:
    """L2 norm of the loss gradient over each block's parameters, in forward order (one batch).

    Used at initialization to show vanishing gradients (notebook 01); gradients are cleared afterwards.
    """
    blocks = [m for m in model.modules() if isinstance(m, block_types)]
    if not blocks:
        raise ValueError(f"the model has no {', '.join(t.__name__ for t in block_types)} modules")
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    norms = []
    for b in blocks:
        grads = [p.grad.flatten() for p in b.parameters() if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()) if grads else 0.0)
    model.zero_grad(set_to_none=True)
    return norms


@torch.no_grad()
def stage_shapes(model: nn.Module, image_size: int) -> dict[str, tuple[int, ...]]:
    """Output shape (C, H, W) of each stage for one ``image_size`` input, recorded with forward hooks."""
    watched = dict(models.stage_modules(model))
    # ResNet's stem is a Sequential built on the fly and never called: watch its last module instead.
    watched["conv1"] = models.stem(model)[-1]
    watched["avgpool"] = model.avgpool
    shapes, handles = {}, []
    for name, mod in watched.items():
        handles.append(
            mod.register_forward_hook(lambda m, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
        )
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        model(torch.zeros(1, 3, image_size, image_size, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    order = [*models.STAGES[:-1], "avgpool", "fc"]
    return {name: shapes[name] for name in order}


def stage_table(model: nn.Module, image_sizes: Sequence[int] = (32, 224)):
    """A table (pandas) of stages: parameters, share of the total, output shape at each input size."""
    import pandas as pd

    counts = models.count_by_stage(model)
    total = models.count_parameters(model).total
    shapes = {s: stage_shapes(model, s) for s in image_sizes}
    rows = []
    for name in [*models.STAGES[:-1], "avgpool", "fc"]:
        n = counts[name].total if name in counts else 0
        row = {"stage": name, "parameters": n, "% of total": 100 * n / total}
        row.update({f"output at {s} px": "x".join(map(str, shapes[s][name])) for s in image_sizes})
        rows.append(row)
    return pd.DataFrame(rows).set_index("stage")
