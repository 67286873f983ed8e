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
    epochs: int  # Phase 1: only the new head trains
    finetune_epochs: int  # Phase 2: layer4 and the head train
    description: str


PROFILES: dict[str, Profile] = {
    "full": Profile("full", None, None, 10, 10, "all 50k/10k images, the seed's schedule"),
    "quick": Profile("quick", 10_000, 2_000, 3, 2, "10k/2k images, minutes on a laptop CPU"),
    "smoke": Profile("smoke", 500, 200, 1, 1, "500/200 images, one epoch: CI"),
}

BACKBONE_NAMES = ("resnet18", "efficientnet_lite0")


def pick_device() -> str:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_cache_dir() -> Path:
    """Where decoded arrays, features and downloads are kept between runs."""
    return Path(os.environ.get("TLCOURSE_CACHE_DIR") or user_cache_dir("tlcourse"))


@dataclass
class Config:
    """Everything a run needs to know; build it with :func:`get_config`."""

    profile: str = "quick"
    backbone: str = "resnet18"
    data_dir: Path | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    device: str = "cpu"
    seed: int = 0
    image_size: int = 32
    batch_size: int = 128
    num_workers: int = 0
    train_size: int | None = 10_000
    test_size: int | None = 2_000
    epochs: int = 3
    finetune_epochs: int = 2
    lr_head: float = 1e-3
    lr_finetune: float = 1e-4
    step_size: int = 10
    gamma: float = 0.1

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
    backbone = overrides.pop("backbone", None) or os.environ.get("TLCOURSE_BACKBONE") or "resnet18"
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
        epochs=p.epochs,
        finetune_epochs=p.finetune_epochs,
    )
    unknown = set(overrides) - set(Config.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(unknown)}; known: {list(Config.__dataclass_fields__)}")
    return cfg.replace(**{k: v for k, v in overrides.items() if v is not None})
