"""Pictures of a trained model's results (``evalplots``): what each draws follows from its input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tlcourse import data, evalplots, metrics, plots


def test_confusion_rows_are_percent_of_the_true_class():
    cm = np.array([[8, 2], [1, 3]])
    ax = evalplots.plot_confusion(cm, ("cat", "dog")).axes[0]
    assert [t.get_text() for t in ax.texts] == ["80", "20", "25", "75"]
    ax = evalplots.plot_confusion(cm, ("cat", "dog"), normalize=False).axes[0]
    assert [t.get_text() for t in ax.texts] == ["8", "2", "1", "3"]


def test_per_class_bars_in_class_colours():
    ax = evalplots.plot_per_class({"cat": 0.5, "ship": 0.9}).axes[0]
    assert [p.get_height() for p in ax.patches] == pytest.approx([50, 90])
    assert np.allclose(ax.patches[1].get_facecolor()[:3], plots.CLASS_COLORS["ship"])


def test_prediction_panels_and_bar_lengths():
    img = np.zeros((40, 60, 3), dtype=np.uint8)
    fig = evalplots.plot_prediction(img, {"cat": 0.7, "dog": 0.2, "frog": 0.05}, model_input=torch.zeros(1, 3, 32, 32))
    assert len(fig.axes) == 3 and "32 px" in fig.axes[1].get_title()
    bars = fig.axes[-1].patches
    assert [b.get_width() for b in bars] == pytest.approx([5, 20, 70])  # top class drawn last (at the top)
    assert len(evalplots.plot_prediction(img, {"cat": 1.0}).axes) == 2


def test_topk_orders_classes_and_marks_the_true_one():
    probs = torch.tensor([0.1, 0.6, 0.3] + [0.0] * 7)
    ax = evalplots.plot_topk(probs, data.CLASSES, k=3, true=2).axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == ["airplane", "bird (true)", "automobile"]  # bottom to top: the most probable on top
    assert [p.get_width() for p in ax.patches] == pytest.approx([10, 30, 60])


def test_reliability_bars_follow_the_calibration_table():
    probs = torch.tensor([[0.95, 0.05]] * 4 + [[0.55, 0.45]] * 4)
    labels = torch.tensor([0, 0, 0, 1, 0, 1, 1, 1])
    bins = metrics.calibration_bins(probs, labels, n_bins=10)
    ece = metrics.expected_calibration_error(probs, labels, n_bins=10)
    fig = evalplots.plot_reliability(bins, ece)
    ax, ax_n = fig.axes
    assert f"ECE {ece:.1%}" in ax.get_title()
    counts = sorted(p.get_height() for p in ax_n.patches)
    assert counts == [4, 4]
    accuracy = sorted(p.get_height() for p in ax.patches[:2])
    assert accuracy == pytest.approx([25, 75])


def test_show_cams_puts_each_overlay_under_its_image():
    imgs = torch.zeros(3, 3, 16, 16, dtype=torch.uint8)
    cams = torch.rand(3, 4, 4)
    fig = evalplots.show_cams(imgs, cams, labels=[3, 5, 1], preds=[3, 3, 1], ncols=3)
    top, bottom = fig.axes[:3], fig.axes[3:6]
    assert [a.get_title() for a in top] == ["cat → cat", "dog → cat", "automobile → automobile"]
    assert [a.title.get_color() for a in top] == ["tab:green", "tab:red", "tab:green"]
    assert all(len(a.images) == 2 for a in bottom)  # image, then the map over it
    assert np.allclose(bottom[1].images[1].get_array(), cams[1].numpy())


def test_explained_prediction_has_image_cam_and_topk():
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    probs = torch.softmax(torch.arange(10.0), 0)
    fig = evalplots.plot_explained_prediction(img, torch.rand(2, 2), probs, true=9, k=3, stage="layer3")
    assert len(fig.axes) == 3 and "true: truck" in fig.axes[0].get_title()
    assert fig.axes[1].get_title() == "Grad-CAM at layer3"
    assert [t.get_text() for t in fig.axes[2].get_yticklabels()][-1] == "truck (true)"  # the top bar


def test_latency_panel_per_size_and_failed_rows_labelled():
    table = pd.DataFrame(
        {
            "32px median (ms)": [2.0, np.nan],
            "32px p90 (ms)": [3.0, np.nan],
            "224px median (ms)": [20.0, 9.0],
            "224px p90 (ms)": [25.0, 10.0],
        },
        index=["eager", "onnx"],
    )
    fig = evalplots.plot_latency(table)
    assert [a.get_title() for a in fig.axes] == ["32x32 px input", "224x224 px input"]
    assert [t.get_text() for t in fig.axes[0].texts] == ["2.0", "failed"]
    assert [p.get_width() for p in fig.axes[1].patches] == pytest.approx([20, 9])


def test_strategy_comparison_draws_accuracy_and_cost():
    table = pd.DataFrame({"test acc": [0.4, 0.6], "s/epoch (end to end, est.)": [10.0, 60.0]}, index=["fc", "all"])
    acc, cost = evalplots.plot_strategy_comparison(table).axes
    assert [p.get_width() for p in acc.patches] == pytest.approx([40, 60])
    assert [p.get_width() for p in cost.patches] == pytest.approx([10, 60])
