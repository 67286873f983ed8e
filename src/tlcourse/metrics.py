"""Accuracy, confusion matrix, per-class accuracy, report and calibration (scikit-learn underneath)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn import metrics as skm


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def accuracy(logits, labels) -> float:
    """Top-1 accuracy from logits (N, C) or predicted indices (N,)."""
    logits, labels = _np(logits), _np(labels)
    preds = logits.argmax(1) if logits.ndim == 2 else logits
    return float(skm.accuracy_score(labels, preds))


def accuracy_margin(p: float | Sequence[float], n: int | Sequence[int], z: float = 2.0) -> float:
    """``z`` binomial standard errors of an accuracy ``p`` measured on ``n`` images; given several accuracies
    (each on its own ``n``), the margin of their sum or difference. Notebooks assert claims beyond it."""
    ps = [float(p)] if np.ndim(p) == 0 else [float(v) for v in p]
    ns = [int(n)] * len(ps) if np.ndim(n) == 0 else [int(v) for v in n]
    if len(ns) != len(ps) or min(ns) < 1:
        raise ValueError(f"accuracy_margin needs one positive image count per accuracy, got p={p!r}, n={n!r}")
    # an accuracy of exactly 0 or 1 still has an uncertainty: clip half an image away from the bounds
    clipped = [(min(max(q, 0.5 / m), 1 - 0.5 / m), m) for q, m in zip(ps, ns)]
    return z * float(np.sqrt(sum(q * (1 - q) / m for q, m in clipped)))


def topk_accuracy(logits, labels, k: int = 3) -> float:
    """Share of samples whose true class is among the ``k`` highest scores."""
    logits = _np(logits)
    return float(skm.top_k_accuracy_score(_np(labels), logits, k=k, labels=np.arange(logits.shape[1])))


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    return skm.confusion_matrix(_np(labels), _np(preds), labels=np.arange(num_classes))


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class: the diagonal over the row sums (NaN for a class with no samples)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(1)


def classification_report(labels, preds, classes: Sequence[str]) -> str:
    """scikit-learn's precision / recall / F1 table with class names."""
    return skm.classification_report(
        _np(labels), _np(preds), labels=np.arange(len(classes)), target_names=list(classes), digits=3, zero_division=0
    )


def most_confused(cm: np.ndarray, classes: Sequence[str], k: int = 5):
    """The ``k`` largest off-diagonal cells as a table: true, predicted, count, share of the true class."""
    import pandas as pd

    off = cm.astype(float).copy()
    np.fill_diagonal(off, -1)
    rows = []
    for flat in np.argsort(off, axis=None)[::-1][:k]:
        i, j = np.unravel_index(flat, cm.shape)
        rows.append(
            {
                "true": classes[i],
                "predicted": classes[j],
                "count": int(cm[i, j]),
                "share of true class": cm[i, j] / max(cm[i].sum(), 1),
            }
        )
    return pd.DataFrame(rows)


def calibration_bins(probs, labels, n_bins: int = 15):
    """Reliability table: per confidence bin, mean confidence, accuracy and count."""
    import pandas as pd

    probs, labels = _np(probs), _np(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        rows.append(
            {
                "low": edges[b],
                "high": edges[b + 1],
                "count": int(m.sum()),
                "confidence": float(conf[m].mean()) if m.any() else np.nan,
                "accuracy": float((pred[m] == labels[m]).mean()) if m.any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy over confidence bins."""
    t = calibration_bins(probs, labels, n_bins).dropna()
    return float((t["count"] * (t["confidence"] - t["accuracy"]).abs()).sum() / max(t["count"].sum(), 1))


@dataclass
class Evaluation:
    """What ``ImageClassifier.evaluate`` returns."""

    accuracy: float
    confusion_matrix: np.ndarray
    per_class_accuracy: dict[str, float]
    classes: tuple[str, ...]
    logits: torch.Tensor
    labels: torch.Tensor

    def __repr__(self) -> str:
        worst = min(self.per_class_accuracy, key=self.per_class_accuracy.get)
        return (
            f"Evaluation(accuracy={self.accuracy:.2%}, n={len(self.labels)}, "
            f"worst class={worst} {self.per_class_accuracy[worst]:.1%})"
        )


def summarize(logits: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> Evaluation:
    """Accuracy, confusion matrix and per-class accuracy from logits."""
    cm = confusion_matrix(labels, logits.argmax(1), len(classes))
    per = per_class_accuracy(cm)
    return Evaluation(accuracy(logits, labels), cm, dict(zip(classes, map(float, per))), tuple(classes), logits, labels)
