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


# ---------------------------------------------------------------- notebooks 01-03


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


def plot_prediction(image, probabilities: Mapping[str, float], title: str = "Prediction", model_input=None):
    """The photo, optionally the low-resolution input the model saw, and top-k probabilities as bars."""
    panels = 3 if model_input is not None else 2
    fig, axes = plt.subplots(
        1, panels, figsize=(panels * SIZE[0] * 0.85, SIZE[1]), gridspec_kw={"width_ratios": [1] * (panels - 1) + [1.3]}
    )
    axes[0].imshow(np.asarray(image))
    axes[0].set_title("photo", fontsize=10)
    if model_input is not None:
        axes[1].imshow(to_uint8(model_input)[0], interpolation="nearest")
        axes[1].set_title(f"what the model sees ({to_uint8(model_input).shape[1]} px)", fontsize=10)
    for ax in axes[:-1]:
        ax.axis("off")
    names = list(probabilities)[::-1]
    ax = axes[-1]
    ax.barh(names, [probabilities[n] * 100 for n in names], color=[CLASS_COLORS.get(n, "grey") for n in names])
    ax.set(xlim=(0, 100), xlabel="probability (%)", title="top classes")
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


# ---------------------------------------------------------------- notebooks 04-06


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
    arr = to_uint8(images)
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
        text, color = "", "black"
        if labels is not None:
            text = classes[int(labels[i])]
        if preds is not None:
            conf = f" {float(probs[i]):.0%}" if probs is not None else ""
            text = (
                f"{text} → {classes[int(preds[i])]}{conf}" if labels is not None else f"{classes[int(preds[i])]}{conf}"
            )
            if labels is not None:
                color = "tab:green" if int(preds[i]) == int(labels[i]) else "tab:red"
        top.set_title(text, fontsize=7.5, color=color)
    if title:
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
    img = to_uint8(image[None] if np.ndim(image) == 3 else image)[0]
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


# ---------------------------------------------------------------- notebook 07


def plot_latency(table, title: str = "Batch-1 latency by format"):
    """Horizontal bars of median latency per format, one panel per input size, whiskers to the p90.

    ``table`` is ``export.rows_to_frame(rows)``: columns ``"<S>px median (ms)"`` and ``"<S>px p90 (ms)"``.
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
