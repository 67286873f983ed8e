"""``setup_notebook()``: the one call every notebook's first cell makes."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from . import config


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def describe(cfg: config.Config) -> str:
    """One banner line: profile, device, backbone, sizes, threads."""
    n_train = "all" if cfg.train_size is None else f"{cfg.train_size:,}"
    n_test = "all" if cfg.test_size is None else f"{cfg.test_size:,}"
    return (
        f"tlcourse | profile={cfg.profile} ({n_train} train / {n_test} test, "
        f"{cfg.epochs}+{cfg.finetune_epochs} epochs) | device={cfg.device} | "
        f"backbone={cfg.backbone} | torch {torch.__version__}, {torch.get_num_threads()} threads | "
        f"seed={cfg.seed}"
    )


def setup_notebook(profile: str | None = None, seed: int = 0, **overrides) -> config.Config:
    """Seed everything, pick the device and profile, set plot defaults, print one banner line."""
    cfg = config.get_config(profile, seed=seed, **overrides)
    seed_everything(cfg.seed)
    os.environ.setdefault("TQDM_MININTERVAL", "1")
    try:
        from . import plots

        plots.set_style()
    except ImportError:  # plotting libraries are optional outside notebooks
        pass
    print(describe(cfg))
    return cfg
