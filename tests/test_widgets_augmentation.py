"""The augmentation explorer of notebook 02: the preview is the package's transforms, the widget builds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from tlcourse import data, widgets  # noqa: E402


def _images(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_preview_identity_at_neutral_settings():
    imgs = _images()
    assert torch.allclose(widgets.augment_preview(imgs), imgs.float() / 255)


def test_preview_flip_and_brightness_match_data_functions():
    imgs = _images()
    x = imgs.float() / 255
    assert torch.allclose(widgets.augment_preview(imgs, flip=True), x.flip(-1))
    expected = data.adjust(x.clone(), 0, torch.full((len(x),), 1.3))
    assert torch.allclose(widgets.augment_preview(imgs, brightness=1.3), expected)


def test_preview_padding_crops_with_black_border_and_is_reproducible():
    imgs = torch.full((16, 3, 32, 32), 200, dtype=torch.uint8)
    a = widgets.augment_preview(imgs, padding=8, seed=3)
    assert torch.equal(a, widgets.augment_preview(imgs, padding=8, seed=3))
    assert a.shape == imgs.shape and (a == 0).any()  # some offset exposes the zero padding


def test_explorer_builds_and_draws():
    pytest.importorskip("ipywidgets")
    box = widgets.augmentation_explorer(_images(), labels=[0, 1, 2, 3])
    sliders = [c for row in box.children[:2] for c in row.children]
    assert {s.description for s in sliders} >= {"brightness", "contrast", "saturation", "padding"}
    flip = next(s for s in sliders if "flip" in s.description)
    flip.value = True  # triggers a redraw; must not raise
