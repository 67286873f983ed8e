"""Pictures of data and training (``plots``): each returns a Figure with titles and labelled axes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlcourse import data, plots


def test_augmentation_gallery_rows_and_columns():
    imgs = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    fig = plots.plot_augmentation_gallery(
        {"original": imgs, "flip": imgs.flip(-1), "float": imgs / 255.0}, labels=[0, 1, 2, 3, 4]
    )
    axes = np.array(fig.axes).reshape(3, 5)
    assert [a.get_ylabel() for a in axes[:, 0]] == ["original", "flip", "float"]
    assert axes[0, 3].get_title() == data.CLASSES[3]
    assert np.array_equal(axes[1, 0].images[0].get_array(), imgs[0].flip(-1).permute(1, 2, 0).numpy())


def test_projection_uses_class_colours_and_names():
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    fig = plots.plot_projection({"pretrained": rng.normal(size=(40, 2)), "random": rng.normal(size=(40, 2))}, labels)
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "pretrained"
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(data.CLASSES)
    cat = fig.axes[0].collections[data.CLASSES.index("cat")]
    assert np.allclose(cat.get_facecolor()[0][:3], plots.CLASS_COLORS["cat"])


def test_gradient_norms_log_axis_and_lines():
    fig = plots.plot_gradient_norms({"plain": [1e-6, 1e-3, 1.0], "residual": [0.5, 0.7, 1.0]})
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.lines) == 2 and ax.get_xlabel()
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]


def test_loss_curves_smoothing_shortens_line():
    fig = plots.plot_loss_curves({"a": np.arange(10.0)}, smooth=4)
    x, y = fig.axes[0].lines[0].get_data()
    assert len(y) == 7 and y[0] == pytest.approx(1.5) and x[0] == 4


def test_bars_show_percent_and_chance():
    fig = plots.plot_bars({"ImageNet": 0.5, "none": 0.25}, "Normalization", chance=0.1)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [50.0, 25.0]
    assert ax.get_title() == "Normalization" and ax.lines[0].get_ydata()[0] == pytest.approx(10)


def test_resolution_sweep_two_panels():
    fig = plots.plot_resolution_sweep([32, 64, 128], [0.4, 0.5, 0.7], [1.0, 3.0, 9.0])
    acc, secs = fig.axes
    assert list(acc.lines[0].get_ydata()) == pytest.approx([40, 50, 70])
    assert list(secs.lines[0].get_ydata()) == [1.0, 3.0, 9.0] and "px" in acc.get_xlabel()


def test_distributions_share_bins():
    fig = plots.plot_distributions({"a": [0, 1, 2], "b": [1, 2, 3]}, "t", "x", bins=3)
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and ax.get_xlabel() == "x" and ax.get_ylabel() == "density"


def test_caption_names_the_prediction_and_colours_it_by_correctness():
    assert plots.caption(data.CLASSES, 3) == ("cat", "black")
    assert plots.caption(data.CLASSES, 3, 3, 0.9) == ("cat\n→ cat 90%", "tab:green")
    assert plots.caption(data.CLASSES, 3, 5, sep=" ") == ("cat → dog", "tab:red")
    assert plots.caption(data.CLASSES, None, 5, 0.25) == ("dog 25%", "black")


def test_show_images_captions_each_image():
    imgs = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    fig = plots.show_images(imgs, labels=[0, 1, 2], preds=[0, 2, 2], ncols=2)
    titled = [(a.get_title(), a.title.get_color()) for a in fig.axes if a.get_title()]
    assert titled == [
        ("airplane\n→ airplane", "tab:green"),
        ("automobile\n→ bird", "tab:red"),
        ("bird\n→ bird", "tab:green"),
    ]
