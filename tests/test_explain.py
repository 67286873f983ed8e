"""Grad-CAM: shapes and range on both backbones, the 1x1 layer4 at 32 px, a toy localization."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tlcourse import explain, models


class ToyNet(nn.Module):
    """Stage names as in models.STAGES; layer4 passes the image through, fc reads channel means."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Identity())
        self.layer1, self.layer2, self.layer3, self.layer4 = (nn.Identity() for _ in range(4))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():  # class 0 = "red" (channel 0), class 1 = "not red"
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def red_square() -> torch.Tensor:
    x = torch.zeros(1, 3, 16, 16)
    x[0, 0, :8, :8] = 1.0  # evidence for class 0 only in the top-left quadrant
    return x


def test_cam_points_at_the_evidence():
    cam = explain.grad_cam(ToyNet(), red_square(), target=0, stage="layer4")[0]
    assert cam.shape == (16, 16)
    assert cam[:8, :8].min() > 0.99
    assert cam[8:, :].max() == 0 and cam[:, 8:].max() == 0


def test_no_positive_evidence_gives_a_zero_map():
    cam = explain.grad_cam(ToyNet(), red_square(), target=1, stage="layer4")[0]
    assert cam.abs().max() == 0


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_both_backbones_frozen_model_unchanged(backbone):
    torch.manual_seed(0)
    model = models.freeze_until(models.build_model(backbone, pretrained=False), "fc")
    model.train()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(3, 3, 64, 64)
    cams, probs = explain.grad_cam_and_probs(model, x, stage="layer3")
    assert cams.shape == (3, 64, 64) and probs.shape == (3, 10)
    assert torch.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1
    assert torch.allclose(probs.sum(1), torch.ones(3))
    assert (cams.flatten(1).std(1) > 0).all()  # layer3 at 64 px is 4x4: the map varies
    assert model.training  # mode restored
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics untouched


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_layer4_is_one_pixel_at_32px(backbone):
    model = models.build_model(backbone, pretrained=False)
    sizes = explain.feature_map_sizes(model, 32)
    assert sizes["layer4"] == (1, 1) and sizes["layer3"] == (2, 2)
    assert explain.feature_map_sizes(model, 128)["layer4"] == (4, 4)
    cams = explain.grad_cam(model, torch.randn(2, 3, 32, 32), stage="layer4")
    assert torch.allclose(cams, cams[:, :1, :1].expand_as(cams), atol=1e-5)  # flat: one value per image


def test_targets_are_checked():
    model = ToyNet()
    x = red_square().repeat(2, 1, 1, 1)
    assert explain.grad_cam(model, x, target=torch.tensor([0, 1])).shape == (2, 16, 16)
    with pytest.raises(ValueError, match="one per image"):
        explain.grad_cam(model, x, target=[0, 1, 0])
    with pytest.raises(ValueError, match="must be in 0..1"):
        explain.grad_cam(model, x, target=5)
    with pytest.raises(ValueError, match="stage must be one of"):
        explain.grad_cam(model, x, stage="fc")


@pytest.mark.slow
def test_upload_and_explorer_widgets(displayed):
    import io

    import numpy as np
    from PIL import Image

    from tlcourse import augment, data, widgets
    from tlcourse.errors import ImageError

    buf = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(buf, format="PNG")
    img = widgets.upload_to_uint8(({"name": "a.png", "content": memoryview(buf.getvalue())},), 32)
    assert img.shape == (1, 3, 32, 32) and img.dtype == torch.uint8 and int(img.max()) == 200
    with pytest.raises(ImageError, match="bad.png"):
        widgets.upload_to_uint8(({"name": "bad.png", "content": memoryview(b"not an image")},), 32)

    model = ToyNet()
    arrays = data.ImageArrays(
        torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8),
        torch.tensor([0, 1, 0]),
        ("red", "other"),
    )
    tf = augment.BatchTransform(False, 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    fig = widgets.explain_prediction(
        model, arrays.images[:1], tf, classes=("red", "other"), true=0, stage="layer4", k=2
    )
    assert len(fig.axes) == 3
    box = widgets.prediction_explorer(
        model,
        arrays,
        tf,
        classes=("red", "other"),
        stage="layer4",
        k=2,
        stages=("layer3", "layer4"),
    )
    assert displayed[-1]._suptitle.get_text() == "test image 0"
    controls = box.children[0].children
    controls[0].value = 2  # another test image: redrawn, with its own true class
    assert len(displayed) == 2 and displayed[-1]._suptitle.get_text() == "test image 2"
    assert "true: red" in displayed[-1].axes[0].get_title()
    assert np.array_equal(displayed[-1].axes[0].images[0].get_array(), arrays.images[2].permute(1, 2, 0).numpy())
    controls[1].value = "layer3"
    assert len(displayed) == 3 and displayed[-1].axes[1].get_title() == "Grad-CAM at layer3"
