import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from tlcourse import models


@pytest.fixture(scope="module")
def lite0():
    return models.build_model("efficientnet_lite0", num_classes=10)


def test_resnet18_anatomy():
    m = models.build_model("resnet18", num_classes=1000, pretrained=False)
    assert models.count_parameters(m).total == 11_689_512
    assert models.count_by_stage(m)["fc"].total == 512 * 1000 + 1000


@pytest.mark.slow
def test_pretrained_lite0_recognises_a_photo():
    from skimage import data as skdata
    from torchvision.models import ResNet18_Weights

    m = models.build_model("efficientnet_lite0", num_classes=1000).eval()
    mean, std = models.normalization("efficientnet_lite0")
    x = torch.from_numpy(skdata.chelsea()).permute(2, 0, 1)[None].float() / 255
    x = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        top = m(x).softmax(1)[0].topk(3).indices.tolist()
    names = [ResNet18_Weights.IMAGENET1K_V1.meta["categories"][i] for i in top]
    assert any("cat" in n for n in names), names


@pytest.mark.parametrize("backbone, dim", [("resnet18", 512), ("efficientnet_lite0", 1280)])
def test_phases_freeze_everything_below_the_named_stage(backbone, dim):
    m = models.build_model(backbone, num_classes=10, pretrained=False)
    models.freeze_until(m, "fc")
    assert models.count_parameters(m).trainable == dim * 10 + 10
    models.freeze_until(m, "layer4")
    by_stage = models.count_by_stage(m)
    assert all(by_stage[s].trainable == 0 for s in ("conv1", "layer1", "layer2", "layer3"))
    assert by_stage["layer4"].frozen == 0 and by_stage["fc"].frozen == 0
    models.freeze_until(m, "conv1")
    assert models.count_parameters(m).frozen == 0


@pytest.mark.slow
def test_train_mode_keeps_frozen_batchnorm_statistics(lite0):
    models.freeze_until(lite0, "layer4")
    frozen_bn = lite0.layer3[0]._bn1
    before = frozen_bn.running_mean.clone()
    models.train_mode(lite0)
    with torch.no_grad():
        lite0(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert torch.equal(frozen_bn.running_mean, before)
    assert lite0.layer4.training and not frozen_bn.training
    lite0.train()  # the pitfall: plain train mode lets "frozen" statistics drift
    with torch.no_grad():
        lite0(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert not torch.equal(frozen_bn.running_mean, before)


@pytest.mark.slow
@pytest.mark.parametrize("at", ["layer2", "layer4", "fc"])
@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_split_model_composes_to_the_model(backbone, at):
    m = models.build_model(backbone, pretrained=False).eval()
    prefix, suffix = models.split_model(m, at)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(suffix(prefix(x)), m(x))
    if at == "fc":
        assert prefix(x).shape == (4, models.get_spec(backbone).feature_dim)


@pytest.mark.parametrize("stride, cin, cout", [(1, 16, 16), (2, 16, 32)])
def test_residual_block_matches_torchvision(stride, cin, cout):
    ours = models.ResidualBlock(cin, cout, stride)
    downsample = ours.downsample and nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    ref = BasicBlock(cin, cout, stride, downsample)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, cin, 16, 16)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x))


def test_deep_nets_differ_only_by_the_skip():
    plain, res = models.make_deep_net(6, skip=False), models.make_deep_net(6, skip=True)
    assert models.count_parameters(plain) == models.count_parameters(res)
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain.eval()(x), res.eval()(x))


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(Exception, match="use one of: resnet18, efficientnet_lite0"):
        models.build_model("vgg16")


def test_weights_path_round_trip(tmp_path):
    m = models.build_model("resnet18", num_classes=1000, pretrained=False)
    torch.save(m.state_dict(), tmp_path / "w.pth")
    m2 = models.build_model("resnet18", num_classes=10, weights_path=tmp_path / "w.pth")
    assert np.allclose(m2.conv1.weight.detach(), m.conv1.weight.detach())
