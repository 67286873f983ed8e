"""Pictures of data and training: image grids, augmentation, features, training curves, bars.

Functions return the matplotlib Figure and never compute results. One colour per class across the
whole course (``CLASS_COLORS``) and one figure-size family (``SIZE``: width per panel 4.5 in, height
3.5 in); ``evalplots`` draws what a trained model gets right and wrong, with the same conventions.
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


def caption(classes: Sequence[str], label=None, pred=None, prob=None, sep: str = "\n") -> tuple[str, str]:
    """An image's caption (true class, then ``sep`` → predicted class and confidence) and its colour.

    Wrong predictions are red, right ones green, black when there is no label or no prediction.
    """
    text, color = (classes[int(label)] if label is not None else ""), "black"
    if pred is not None:
        conf = f" {float(prob):.0%}" if prob is not None else ""
        text = f"{text}{sep}→ {classes[int(pred)]}{conf}" if label is not None else f"{classes[int(pred)]}{conf}"
        if label is not None:
            color = "tab:green" if int(pred) == int(label) else "tab:red"
    return text, color


def show_images(
    images,
    labels: Sequence[int] | None = None,
    classes: Sequence[str] = CLASSES,
    preds: Sequence[int] | None = None,
    probs: Sequence[float] | None = None,
    ncols: int = 8,
    title: str | None = None,
    mean=None,
    std=None,
    size: float = 1.5,
):
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
        label, pred, prob = (None if s is None else s[i] for s in (labels, preds, probs))
        text, color = caption(classes, label, pred, prob)
        ax.set_title(text, fontsize=8, color=color, y=-0.02, va="top")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(histories: Mapping[str, object], title: str = "Training curves"):
    """Loss and accuracy per epoch for one or more ``train.History`` (train dashed, validation solid)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(2 * SIZE[0], SIZE[1]))
    for i, (name, h) in enumerate(histories.items()):
        color = sns.color_palette("deep")[i % 10]
        ax_loss.plot(h.epoch, h.train_loss, "--", color=color, label=f"{name} train")
        ax_loss.plot(h.epoch, h.val_loss, "-o", color=color, label=f"{name} val", ms=4)
        ax_acc.plot(h.epoch, np.array(h.train_acc) * 100, "--", color=color, label=f"{name} train")
        ax_acc.plot(h.epoch, np.array(h.val_acc) * 100, "-o", color=color, label=f"{name} val", ms=4)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax_acc.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_augmentation_gallery(
    rows: Mapping[str, object],
    labels: Sequence[int] | None = None,
    classes: Sequence[str] = CLASSES,
    title: str = "Augmentation gallery",
    size: float = 1.4,
):
    """One row per transform (name -> (N, 3, H, W) uint8 or [0, 1] images), one column per image.

    The same images in every row, so each row shows what one transform does (notebook 02).
    """
    arrays = {name: to_uint8(imgs) for name, imgs in rows.items()}
    n = max(len(a) for a in arrays.values())
    fig, axes = plt.subplots(len(arrays), n, figsize=(n * size + 1.2, len(arrays) * size + 0.6), squeeze=False)
    for r, (name, arr) in enumerate(arrays.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c < len(arr):
                ax.imshow(arr[c], interpolation="nearest")
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
            if r == 0 and labels is not None and c < len(labels):
                ax.set_title(classes[int(labels[c])], fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_projection(
    points: Mapping[str, np.ndarray],
    labels: Sequence[int],
    classes: Sequence[str] = CLASSES,
    title: str = "Features in 2-D",
    axis_label: str = "component",
):
    """One scatter panel per entry (name -> (N, 2) points), each point in its class colour (notebook 03)."""
    labels = np.asarray(labels)
    fig, axes = plt.subplots(1, len(points), figsize=(len(points) * SIZE[0] + 1.6, SIZE[1] + 0.5), squeeze=False)
    for ax, (name, xy) in zip(axes.flat, points.items()):
        for i, c in enumerate(classes):
            m = labels == i
            ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.6, color=CLASS_COLORS.get(c, "grey"), label=c)
        ax.set(title=name, xlabel=f"{axis_label} 1", ylabel=f"{axis_label} 2")
    axes.flat[-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=2, title="class")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_gradient_norms(norms: Mapping[str, Sequence[float]], title: str = "Gradient norm per block at initialization"):
    """Gradient norm (log scale) against block depth, one line per network (notebook 01)."""
    fig, ax = plt.subplots(figsize=(1.4 * SIZE[0], SIZE[1]))
    for name, values in norms.items():
        ax.plot(np.arange(1, len(values) + 1), values, "-o", ms=3, label=name)
    ax.set(yscale="log", xlabel="block (1 = nearest the input)", ylabel="‖∂loss/∂weights‖ (log scale)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curves(
    curves: Mapping[str, Sequence[float]],
    title: str = "Training loss",
    xlabel: str = "training step",
    ylabel: str = "cross-entropy loss",
    smooth: int = 1,
):
    """One line per run; ``smooth`` > 1 draws a running mean over that many steps (notebook 01)."""
    fig, ax = plt.subplots(figsize=(1.4 * SIZE[0], SIZE[1]))
    for name, values in curves.items():
        v = np.asarray(values, dtype=float)
        if smooth > 1 and len(v) >= smooth:
            v = np.convolve(v, np.ones(smooth) / smooth, mode="valid")
            x = np.arange(smooth, smooth + len(v))
        else:
            x = np.arange(1, len(v) + 1)
        ax.plot(x, v, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bars(
    values: Mapping[str, float],
    title: str,
    ylabel: str = "test accuracy (%)",
    xlabel: str = "",
    percent: bool = True,
    chance: float | None = None,
):
    """One labelled bar per setting (fractions shown as % when ``percent``); optional chance line."""
    fig, ax = plt.subplots(figsize=(1.4 * SIZE[0], SIZE[1]))
    names = list(values)
    heights = [values[k] * (100 if percent else 1) for k in names]
    bars = ax.bar(names, heights, color=sns.color_palette("deep")[: len(names)])
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_ylim(0, max(heights, default=1) * 1.15)  # room for the labels
    if chance is not None:
        ax.axhline(chance * (100 if percent else 1), color="grey", ls=":", label="chance")
        ax.legend(fontsize=8, loc="lower right")
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel)
    ax.tick_params(axis="x", rotation=15)
    fig.tight_layout()
    return fig


def plot_resolution_sweep(
    sizes: Sequence[int],
    accuracies: Sequence[float],
    seconds: Sequence[float],
    title: str = "Linear probe vs input resolution",
):
    """Accuracy (%) and time (s) against input size in px, side by side (notebook 03)."""
    fig, (ax_acc, ax_t) = plt.subplots(1, 2, figsize=(2 * SIZE[0], SIZE[1]))
    ax_acc.plot(sizes, np.asarray(accuracies) * 100, "-o")
    ax_t.plot(sizes, seconds, "-o", color=sns.color_palette("deep")[1])
    for ax in (ax_acc, ax_t):
        ax.set_xticks(list(sizes))
        ax.set_xlabel("input size (px per side)")
    ax_acc.set(ylabel="test accuracy (%)", title="Accuracy")
    ax_t.set(ylabel="seconds (features + fit)", title="Time")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_distributions(samples: Mapping[str, Sequence[float]], title: str, xlabel: str, bins: int = 30):
    """Overlaid histograms (as densities) of one measured quantity, one per method (notebook 02)."""
    fig, ax = plt.subplots(figsize=(1.4 * SIZE[0], SIZE[1]))
    values = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    lo, hi = min(v.min() for v in values.values()), max(v.max() for v in values.values())
    for name, v in values.items():
        ax.hist(v, bins=np.linspace(lo, hi, bins + 1), density=True, alpha=0.5, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel="density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lr_range_test(test, title: str = "Learning-rate range test"):
    """Smoothed training loss against the rate (log scale), with the minimum and the suggested rate marked."""
    fig, ax = plt.subplots(figsize=(1.4 * SIZE[0], SIZE[1]))
    ax.plot(test.lrs, test.losses, color="lightgrey", lw=1, label="loss per step")
    ax.plot(test.lrs, test.smoothed, label="smoothed loss")
    ax.axvline(test.min_lr, color="tab:red", ls=":", label=f"minimum at {test.min_lr:.1e}")
    ax.axvline(test.suggestion, color="tab:green", ls="--", label=f"suggested {test.suggestion:.1e} (minimum / 10)")
    top = max(test.smoothed[0], min(test.smoothed)) * 1.5  # keep the divergence from flattening the picture
    ax.set(xscale="log", ylim=(min(test.smoothed) * 0.9, top), title=title)
    ax.set(xlabel="learning rate (log scale)", ylabel="training loss (cross-entropy)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
