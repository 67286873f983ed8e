"""Fixtures: the real CIFAR-10 copy (when present) and small generated image folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are drawn, never shown, in every test

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from tlcourse import config, data, export, features, loaders, models, quantize, train  # noqa: E402
from tlcourse.checkpoint import ModelMeta  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every figure a test drew, so none piles up across the session."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


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


@pytest.fixture(scope="module")
def trained_lite0(cfg, one_thread):
    """EfficientNet-Lite0 (ImageNet) with a head trained on cached features of the smoke subset:
    (model, meta, test images, test labels, test logits, 128 calibration images)."""
    cfg = cfg.replace(backbone="efficientnet_lite0")
    train_loader, val_loader, test_loader = loaders.make_loaders(cfg, augment=False)
    model = models.build_model(cfg.backbone, pretrained=True)
    quiet = train.FitOptions(progress=False, log=None)
    features.fit_cached(model, "fc", train_loader, val_loader, epochs=10, lr=1e-3, cfg=cfg, options=quiet)
    model.eval()
    meta = ModelMeta(cfg.backbone, data.CLASSES, cfg.image_size, *models.normalization(cfg.backbone))
    x = torch.cat([xb for xb, _ in test_loader])
    y = torch.cat([yb for _, yb in test_loader])
    with torch.no_grad():
        ref = model(x)
    return model, meta, x, y, ref, quantize.calibration_images(cfg, meta, 128)


@pytest.fixture(scope="module")
def onnx_lite0(trained_lite0, tmp_path_factory) -> export.ExportResult:
    """``trained_lite0``'s model exported to ONNX."""
    model, meta, *_ = trained_lite0
    return export.export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx", meta)


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


@pytest.fixture
def displayed(monkeypatch) -> list:
    """What the widgets pass to ``IPython.display.display``, in order (figures, mostly)."""
    pytest.importorskip("ipywidgets")
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    return shown
