"""tlcourse.export: TorchScript and ONNX exports agree with the eager model; the sidecar carries the preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tlcourse import data, export, models
from tlcourse.checkpoint import ModelMeta
from tlcourse.classifier import ImageClassifier

EXPORT_TOL = 1e-4  # float32 logits; exports re-order a few float operations, nothing more


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_for_export_computes_the_same_function(backbone):
    model = models.build_model(backbone, pretrained=False).eval()
    x = torch.randn(2, 3, 32, 32)
    plain = export.for_export(model)
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))
    assert not plain.training and all(not m.training for m in plain.modules())


@pytest.mark.slow
def test_torchscript_matches_eager(trained_lite0, tmp_path):
    model, meta, x, *_ = trained_lite0
    r = export.export_torchscript(model, tmp_path / "m.ts.pt", meta)
    assert r.path.exists() and r.max_abs_diff < EXPORT_TOL
    loaded = export.load_torchscript(r.path)
    with torch.no_grad():  # traced on a batch of 2 at 32 px: another batch size and input size still work
        assert export.max_abs_diff(model, loaded, torch.randn(3, 3, 64, 64)) < EXPORT_TOL
    spec = export.read_sidecar(r.path)
    assert spec["classes"] == list(data.CLASSES) and spec["image_size"] == meta.image_size
    assert spec["mean"] == list(meta.mean) and spec["kind"] == "torchscript"


@pytest.mark.slow
def test_onnx_matches_eager_with_dynamic_batch_and_size(trained_lite0, onnx_lite0):
    model, meta, x, *_ = trained_lite0
    r = onnx_lite0
    assert r.max_abs_diff < EXPORT_TOL
    session = export.OnnxModel(r.path, threads=1)
    inp = session.session.get_inputs()[0]
    assert inp.name == "image" and inp.shape == ["batch", 3, "height", "width"]
    for batch in (x[:1], x[:13], torch.randn(2, 3, 96, 96)):
        assert export.max_abs_diff(model, session, batch) < EXPORT_TOL
    spec = json.loads(r.sidecar.read_text())
    assert spec["input"] == {"name": "image", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW, RGB"}
    assert spec["source_size"] == 32 and spec["std"] == list(meta.std)


@pytest.mark.slow
def test_resnet18_exports_match_eager(tmp_path):
    model = models.build_model("resnet18", pretrained=False).eval()
    meta = ModelMeta("resnet18", data.CLASSES, 32, models.IMAGENET_MEAN, models.IMAGENET_STD)
    assert export.export_torchscript(model, tmp_path / "r.ts.pt", meta).max_abs_diff < EXPORT_TOL
    onnx_file = export.export_onnx(model, tmp_path / "r.onnx", meta)
    assert onnx_file.max_abs_diff < EXPORT_TOL
    assert export.max_abs_diff(model, export.OnnxModel(onnx_file.path), torch.randn(3, 3, 64, 64)) < EXPORT_TOL


def test_sidecar_preprocessing_matches_the_classifier(tmp_path):
    clf = ImageClassifier("efficientnet_lite0", pretrained=False, image_size=64, device="cpu")
    export.write_sidecar(tmp_path / "m.onnx", clf.meta, "onnx")
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8))
    got = export.preprocess_image(photo, export.read_sidecar(tmp_path / "m.onnx"))
    assert got.shape == (1, 3, 64, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, clf.preprocess(photo).numpy(), atol=1e-6)


def test_missing_sidecar_is_a_clear_error(tmp_path):
    with pytest.raises(export.ExportError, match="no preprocessing record"):
        export.read_sidecar(tmp_path / "m.onnx")
