"""Fixtures: the real CIFAR-10 copy (when present) and small generated image folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcourse import config, data


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: the same results, and on a busy 2-core machine two threads
    can run 10-100x slower (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cfg() -> config.Config:
    """The smoke configuration on the real CIFAR-10 copy; skipped (locally) or failed (CI) without it."""
    c = config.get_config("smoke", device="cpu")
    if data.find_cifar10(data.search_dirs(None, c)) is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs CIFAR-10: set TLCOURSE_DATA_DIR (see .ci/run)")
        pytest.skip("CIFAR-10 not found: set TLCOURSE_DATA_DIR to run the tests that need it")
    return c


def write_folder(root: Path, classes=("cat", "dog", "frog"), per_class: int = 4, size: int = 32, seed: int = 0) -> Path:
    """A tiny ImageFolder dataset ``root/{train,test}/<class>/*.png`` of random images."""
    rng = np.random.default_rng(seed)
    for split in data.SPLITS:
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "tiny")
