"""The augmentation explorer of notebook 02: the preview is the package's transforms, the widget builds."""

from __future__ import annotations

import numpy as np
import torch

from tlcourse import augment, plots, widgets


def _images(n: int = 4) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_preview_identity_at_neutral_settings():
    imgs = _images()
    assert torch.allclose(widgets.augment_preview(imgs), imgs.float() / 255)


def test_preview_flip_and_brightness_match_data_functions():
    imgs = _images()
    x = imgs.float() / 255
    assert torch.allclose(widgets.augment_preview(imgs, flip=True), x.flip(-1))
    expected = augment.adjust(x.clone(), 0, torch.full((len(x),), 1.3))
    assert torch.allclose(widgets.augment_preview(imgs, brightness=1.3), expected)


def test_preview_padding_crops_with_black_border_and_is_reproducible():
    imgs = torch.full((16, 3, 32, 32), 200, dtype=torch.uint8)
    a = widgets.augment_preview(imgs, padding=8, seed=3)
    assert torch.equal(a, widgets.augment_preview(imgs, padding=8, seed=3))
    assert a.shape == imgs.shape and (a == 0).any()  # some offset exposes the zero padding


def test_explorer_redraws_what_the_controls_say(displayed):
    imgs = _images()
    box = widgets.augmentation_explorer(imgs, labels=[0, 1, 2, 3])
    sliders = {c.description: c for row in box.children[:2] for c in row.children}
    assert {"brightness", "contrast", "saturation", "padding"} <= set(sliders)
    first = displayed[-1].axes[0].images[0].get_array()
    assert np.array_equal(first, plots.to_uint8(widgets.augment_preview(imgs, padding=4))[0])  # the opening state
    sliders["mirror (flip)"].value = True
    assert len(displayed) == 2 and "flip=True" in displayed[-1]._suptitle.get_text()
    assert np.array_equal(displayed[-1].axes[0].images[0].get_array(), first[:, ::-1])
    sliders["brightness"].value = 1.5
    assert (
        "b=1.50" in displayed[-1]._suptitle.get_text()
        and "beyond the seed's ranges" in displayed[-1]._suptitle.get_text()
    )
    assert displayed[-1].axes[0].images[0].get_array().mean() > first.mean()
