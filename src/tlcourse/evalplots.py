"""Pictures of a trained model's results: confusion, per-class accuracy, predictions and top-k,
calibration, Grad-CAM overlays, strategy comparison and latency (notebooks 00, 04, 05, 07).

Same conventions as ``plots``: functions return the Figure, class colours and sizes come from there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from . import plots
from .data import CLASSES
from .plots import CLASS_COLORS, SIZE


def plot_confusion(
    cm: np.ndarray, classes: Sequence[str] = CLASSES, normalize: bool = True, title: str = "Confusion matrix"
):
    """Seaborn heatmap, rows = true class; normalized rows show each class's recall on the diagonal."""
    values = cm / np.maximum(cm.sum(1, keepdims=True), 1) * 100 if normalize else cm
    fig, ax = plt.subplots(figsize=(7, 5.8))
    sns.heatmap(
        values,
        annot=True,
        fmt=".0f",
        cmap="Blues",
        xticklabels=classes,
        yticklabels=classes,
        cbar_kws={"label": "% of true class" if normalize else "images"},
        ax=ax,
    )
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.tight_layout()
    return fig


def plot_per_class(values: Mapping[str, float], title: str = "Per-class accuracy", ylabel: str = "accuracy (%)"):
    """One bar per class in its course colour, values given as fractions."""
    fig, ax = plt.subplots(figsize=(1.6 * SIZE[0], SIZE[1]))
    names = list(values)
    ax.bar(names, [values[c] * 100 for c in names], color=[CLASS_COLORS.get(c, "grey") for c in names])
    ax.set(xlabel="class", ylabel=ylabel, title=title, ylim=(0, 100))
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def plot_prediction(image, probabilities: Mapping[str, float], title: str = "Prediction", model_input=None):
    """The photo, optionally the low-resolution input the model saw, and top-k probabilities as bars."""
    panels = 3 if model_input is not None else 2
    fig, axes = plt.subplots(
        1, panels, figsize=(panels * SIZE[0] * 0.85, SIZE[1]), gridspec_kw={"width_ratios": [1] * (panels - 1) + [1.3]}
    )
    axes[0].imshow(np.asarray(image))
    axes[0].set_title("photo", fontsize=10)
    if model_input is not None:
        axes[1].imshow(plots.to_uint8(model_input)[0], interpolation="nearest")
        axes[1].set_title(f"what the model sees ({plots.to_uint8(model_input).shape[1]} px)", fontsize=10)
    for ax in axes[:-1]:
        ax.axis("off")
    names = list(probabilities)[::-1]
    ax = axes[-1]
    ax.barh(names, [probabilities[n] * 100 for n in names], color=[CLASS_COLORS.get(n, "grey") for n in names])
    ax.set(xlim=(0, 100), xlabel="probability (%)", title="top classes")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_topk(
    probs, classes: Sequence[str] = CLASSES, k: int = 5, true: int | None = None, ax=None, title: str = "Top classes"
):
    """Horizontal bars of the ``k`` most probable classes in their course colours; the true class marked."""
    p = probs.detach().cpu().float().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs, float)
    order = np.argsort(p)[::-1][:k]
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(SIZE[0], 0.45 * k + 1.2))
    names = [classes[i] + (" (true)" if true is not None and i == int(true) else "") for i in order]
    bars = ax.barh(names[::-1], p[order][::-1] * 100, color=[CLASS_COLORS.get(classes[i], "grey") for i in order[::-1]])
    ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set(xlim=(0, 105), xlabel="probability (%)", title=title)
    if own:
        fig.tight_layout()
        return fig
    return ax.figure


def plot_explained_prediction(
    image,
    cam,
    probs,
    classes: Sequence[str] = CLASSES,
    true: int | None = None,
    k: int = 5,
    title: str = "Prediction",
    stage: str = "",
    alpha: float = 0.45,
):
    """The image, its Grad-CAM overlay and the top-k probabilities in one row (the explorer of notebook 05)."""
    img = plots.to_uint8(image[None] if np.ndim(image) == 3 else image)[0]
    fig, axes = plt.subplots(1, 3, figsize=(2.6 * SIZE[0], SIZE[1]), gridspec_kw={"width_ratios": [1, 1, 1.5]})
    axes[0].imshow(img, interpolation="nearest")
    axes[0].set_title(
        f"input ({img.shape[0]} px)" + (f", true: {classes[int(true)]}" if true is not None else ""), fontsize=9
    )
    axes[0].axis("off")
    overlay_cam(img, cam, alpha, axes[1])
    axes[1].set_title(f"Grad-CAM{' at ' + stage if stage else ''}", fontsize=9)
    plot_topk(probs, classes, k, true, ax=axes[2], title=f"top {k}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reliability(bins, ece: float | None = None, title: str = "Reliability diagram"):
    """Accuracy against confidence per bin (a calibrated model sits on the diagonal), counts below.

    ``bins``: the table from ``metrics.calibration_bins`` (notebook 05).
    """
    t = bins.dropna()
    width = float((bins["high"] - bins["low"]).iloc[0])
    centers = ((t["low"] + t["high"]) / 2).to_numpy()
    fig, (ax, ax_n) = plt.subplots(
        2, 1, figsize=(SIZE[0] + 0.5, SIZE[1] + 1.8), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.bar(
        centers,
        t["accuracy"] * 100,
        width=width * 0.95,
        color=sns.color_palette("deep")[0],
        edgecolor="white",
        label="accuracy in bin",
    )
    ax.bar(
        centers,
        (t["confidence"] - t["accuracy"]) * 100,
        bottom=t["accuracy"] * 100,
        width=width * 0.95,
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 100], "--", color="grey", label="perfect calibration")  # x: 0..1, y: %
    ax.plot(t["confidence"], t["accuracy"] * 100, "o", color="black", ms=3, label="(mean confidence, accuracy)")
    ax.set(
        ylabel="accuracy (%)",
        ylim=(0, 100),
        xlim=(0, 1),
        title=title + (f" (ECE {ece:.1%})" if ece is not None else ""),
    )
    ax.legend(fontsize=8, loc="upper left")
    ax_n.bar(centers, t["count"], width=width * 0.95, color="grey")
    ax_n.set(xlabel="confidence (max softmax probability)", ylabel="images")
    ax_n.set_xticks(np.linspace(0, 1, 6), [f"{v:.0%}" for v in np.linspace(0, 1, 6)])
    fig.tight_layout()
    return fig


def overlay_cam(image, cam, alpha: float = 0.45, ax=None, cmap: str = "jet"):
    """Draw one image (H, W, 3 uint8) and a CAM (h, w in [0, 1]) stretched over the same extent."""
    ax = ax or plt.gca()
    extent = (0, 1, 1, 0)
    ax.imshow(np.asarray(image), extent=extent, interpolation="nearest")
    ax.imshow(np.asarray(cam), extent=extent, cmap=cmap, alpha=alpha, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return ax


def show_cams(
    images,
    cams,
    labels: Sequence[int] | None = None,
    preds: Sequence[int] | None = None,
    probs: Sequence[float] | None = None,
    classes: Sequence[str] = CLASSES,
    ncols: int = 8,
    title: str | None = None,
    size: float = 1.6,
    alpha: float = 0.45,
):
    """Each image above its Grad-CAM overlay, captioned true -> predicted (confidence) (notebook 05).

    ``images``: (N, 3, H, W) uint8 or [0, 1]; ``cams``: (N, h, w) in [0, 1] (any h, w).
    Captions of wrong predictions are red, right ones green.
    """
    arr = plots.to_uint8(images)
    cams = cams.detach().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)
    n = len(arr)
    ncols = min(ncols, n)
    blocks = -(-n // ncols)
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=(ncols * size, blocks * (2 * size + 0.45)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, ncols)
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        top.imshow(arr[i], interpolation="nearest")
        overlay_cam(arr[i], cams[i], alpha, bottom)
        bottom.axis("off")
        label, pred, prob = (None if s is None else s[i] for s in (labels, preds, probs))
        text, color = plots.caption(classes, label, pred, prob, sep=" ")
        top.set_title(text, fontsize=7.5, color=color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_strategy_comparison(
    table,
    title: str = "How much of the network to train",
    acc_col: str = "test acc",
    time_col: str = "s/epoch (end to end, est.)",
):
    """Test accuracy (%) and seconds per epoch per strategy, side by side (notebook 04).

    ``table``: a DataFrame indexed by strategy name, e.g. from ``finetune.compare_strategies``.
    """
    names = [str(i) for i in table.index]
    colors = sns.color_palette("deep")[: len(names)]
    fig, (ax_acc, ax_t) = plt.subplots(1, 2, figsize=(2.2 * SIZE[0], SIZE[1] + 0.3))
    bars = ax_acc.barh(names, table[acc_col].to_numpy() * 100, color=colors)
    ax_acc.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax_acc.axvline(100 / len(CLASSES), color="grey", ls=":", label="chance")
    ax_acc.set(xlabel="test accuracy (%)", title="Accuracy", xlim=(0, 100))
    ax_acc.legend(fontsize=8, loc="lower right")
    ax_acc.invert_yaxis()
    bars = ax_t.barh(names, table[time_col].to_numpy(), color=colors)
    ax_t.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    ax_t.set(xlabel="seconds per epoch (end to end)", title="Cost", yticklabels=[])
    ax_t.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_latency(table, title: str = "Batch-1 latency by format"):
    """Horizontal bars of median latency per format, one panel per input size, whiskers to the p90.

    ``table`` is ``formats.rows_to_frame(rows)``: columns ``"<S>px median (ms)"`` and ``"<S>px p90 (ms)"``.
    """
    sizes = [c.split("px")[0] for c in table.columns if c.endswith("px median (ms)")]
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(SIZE[0] * len(sizes), 0.45 * len(table) + 1.6), sharey=True, squeeze=False
    )
    names = list(table.index)
    for ax, s, color in zip(axes[0], sizes, sns.color_palette("deep")):
        med, p90 = table[f"{s}px median (ms)"].to_numpy(float), table[f"{s}px p90 (ms)"].to_numpy(float)
        ax.barh(names, np.nan_to_num(med), xerr=[np.zeros_like(med), np.nan_to_num(p90 - med)], color=color, capsize=3)
        right = np.nanmax(p90) if np.isfinite(p90).any() else 1.0
        for y, (m, hi) in enumerate(zip(med, p90)):
            label = f"{m:.1f}" if m >= 1 else f"{m:.2f}" if np.isfinite(m) else "failed"
            ax.text((hi if np.isfinite(hi) else 0) + 0.02 * right, y, label, va="center", fontsize=8)
        ax.set(xlim=(0, right * 1.2), xlabel="ms per image (whisker: p90)", title=f"{s}x{s} px input")
    axes[0][0].invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout()
    return fig
