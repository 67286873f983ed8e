"""Every picture the course draws; functions return the matplotlib Figure and never compute results.

One colour per class across the whole course (``CLASS_COLORS``) and one figure-size family
(``SIZE``: width per panel 4.5 in, height 3.5 in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .data import CLASSES

CLASS_COLORS = dict(zip(CLASSES, sns.color_palette("tab10", len(CLASSES))))
SIZE = (4.5, 3.5)


def set_style() -> None:
    """The course's plot defaults (called by ``setup_notebook``)."""
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.figsize": SIZE, "figure.dpi": 90, "axes.titleweight": "bold"})


def to_uint8(images, mean=None, std=None) -> np.ndarray:
    """(N, 3, H, W) uint8 or normalized float -> (N, H, W, 3) uint8 for display."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.dtype != torch.uint8:
        if mean is not None:
            x = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def show_images(images, labels: Sequence[int] | None = None, classes: Sequence[str] = CLASSES,
                preds: Sequence[int] | None = None, probs: Sequence[float] | None = None,
                ncols: int = 8, title: str | None = None, mean=None, std=None, size: float = 1.5):
    """A grid of images, each with its label (and prediction and confidence) underneath.

    Captions of wrong predictions are red, right ones green.
    """
    arr = to_uint8(images, mean, std)
    n = len(arr)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.35)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(arr[i], interpolation="nearest")
        text, color = "", "black"
        if labels is not None:
            text = classes[int(labels[i])]
        if preds is not None:
            p = classes[int(preds[i])]
            conf = f" {float(probs[i]):.0%}" if probs is not None else ""
            text = f"{text}\n→ {p}{conf}" if labels is not None else f"{p}{conf}"
            if labels is not None:
                color = "tab:green" if int(preds[i]) == int(labels[i]) else "tab:red"
        ax.set_title(text, fontsize=8, color=color, y=-0.02, va="top")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(histories: Mapping[str, object], title: str = "Training curves"):
    """Loss and accuracy per epoch for one or more ``train.History`` (train dashed, test solid)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(2 * SIZE[0], SIZE[1]))
    for i, (name, h) in enumerate(histories.items()):
        color = sns.color_palette("deep")[i % 10]
        ax_loss.plot(h.epoch, h.train_loss, "--", color=color, label=f"{name} train")
        ax_loss.plot(h.epoch, h.test_loss, "-o", color=color, label=f"{name} test", ms=4)
        ax_acc.plot(h.epoch, np.array(h.train_acc) * 100, "--", color=color, label=f"{name} train")
        ax_acc.plot(h.epoch, np.array(h.test_acc) * 100, "-o", color=color, label=f"{name} test", ms=4)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax_acc.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(cm: np.ndarray, classes: Sequence[str] = CLASSES, normalize: bool = True,
                   title: str = "Confusion matrix"):
    """Seaborn heatmap, rows = true class; normalized rows show each class's recall on the diagonal."""
    values = cm / np.maximum(cm.sum(1, keepdims=True), 1) * 100 if normalize else cm
    fig, ax = plt.subplots(figsize=(7, 5.8))
    sns.heatmap(values, annot=True, fmt=".0f", cmap="Blues", xticklabels=classes, yticklabels=classes,
                cbar_kws={"label": "% of true class" if normalize else "images"}, ax=ax)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.tight_layout()
    return fig


def plot_per_class(values: Mapping[str, float], title: str = "Per-class accuracy",
                   ylabel: str = "accuracy (%)"):
    """One bar per class in its course colour, values given as fractions."""
    fig, ax = plt.subplots(figsize=(1.6 * SIZE[0], SIZE[1]))
    names = list(values)
    ax.bar(names, [values[c] * 100 for c in names], color=[CLASS_COLORS.get(c, "grey") for c in names])
    ax.set(xlabel="class", ylabel=ylabel, title=title, ylim=(0, 100))
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig
