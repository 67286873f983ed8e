"""tlcourse.export: exports agree with the eager model; INT8 keeps the predictions; latency is measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tlcourse import data, export, features, models
from tlcourse.checkpoint import ModelMeta
from tlcourse.classifier import ImageClassifier

EXPORT_TOL = 1e-4  # float32 logits; exports re-order a few float operations, nothing more
# INT8 on the smoke subset (200 test images, a head trained on 500): top-1 must agree with fp32 on
# at least 75% of images and accuracy may drop by at most 5 points (10 images). Measured here:
# ONNX Runtime 83-91% agreement, 1-2 points; FX 75-81%, up to 3 points; dynamic (head only) 99%+.
MIN_AGREEMENT, MAX_ACC_DROP = 0.75, 0.05


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def trained(cfg, one_thread):
    """EfficientNet-Lite0 (ImageNet) with a head trained on cached features of the smoke subset."""
    cfg = cfg.replace(backbone="efficientnet_lite0")
    train_loader, test_loader = data.make_loaders(cfg, augment=False)
    model = models.build_model(cfg.backbone, pretrained=True)
    features.fit_cached(model, "fc", train_loader, test_loader, epochs=10, lr=1e-3, cfg=cfg, progress=False, log=None)
    model.eval()
    meta = ModelMeta(cfg.backbone, data.CLASSES, cfg.image_size, *models.normalization(cfg.backbone))
    x = torch.cat([xb for xb, _ in test_loader])
    y = torch.cat([yb for _, yb in test_loader])
    with torch.no_grad():
        ref = model(x)
    return model, meta, x, y, ref, export.calibration_images(cfg, meta, 128)


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    model, meta, *_ = trained
    return export.export_onnx(model, tmp_path_factory.mktemp("onnx") / "m.onnx", meta)


def _acc(logits, y) -> float:
    return float((logits.argmax(1) == y).float().mean())


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_for_export_computes_the_same_function(backbone):
    model = models.build_model(backbone, pretrained=False).eval()
    x = torch.randn(2, 3, 32, 32)
    plain = export.for_export(model)
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))
    assert not plain.training and all(not m.training for m in plain.modules())


def test_torchscript_matches_eager(trained, tmp_path):
    model, meta, x, *_ = trained
    r = export.export_torchscript(model, tmp_path / "m.ts.pt", meta)
    assert r.path.exists() and r.max_abs_diff < EXPORT_TOL
    loaded = export.load_torchscript(r.path)
    with torch.no_grad():  # traced on a batch of 2 at 32 px: another batch size and input size still work
        assert export.max_abs_diff(model, loaded, torch.randn(3, 3, 64, 64)) < EXPORT_TOL
    spec = export.read_sidecar(r.path)
    assert spec["classes"] == list(data.CLASSES) and spec["image_size"] == meta.image_size
    assert spec["mean"] == list(meta.mean) and spec["kind"] == "torchscript"


def test_onnx_matches_eager_with_dynamic_batch_and_size(trained, onnx_file):
    model, meta, x, *_ = trained
    r = onnx_file
    assert r.max_abs_diff < EXPORT_TOL
    session = export.OnnxModel(r.path, threads=1)
    inp = session.session.get_inputs()[0]
    assert inp.name == "image" and inp.shape == ["batch", 3, "height", "width"]
    for batch in (x[:1], x[:13], torch.randn(2, 3, 96, 96)):
        assert export.max_abs_diff(model, session, batch) < EXPORT_TOL
    spec = json.loads(r.sidecar.read_text())
    assert spec["input"] == {"name": "image", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW, RGB"}
    assert spec["source_size"] == 32 and spec["std"] == list(meta.std)


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


def test_dynamic_int8_quantizes_only_the_head(trained):
    model, _, x, y, ref, _ = trained
    q = export.quantize_dynamic(model)
    assert type(q.fc).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert type(q.layer4[-3]) is type(model.layer4[-3])  # convolutions stay float
    with torch.no_grad():
        out = q(x)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.95


def test_static_int8_onnx_runtime_keeps_accuracy(trained, onnx_file, tmp_path):
    model, meta, x, y, ref, calib = trained
    fp32 = onnx_file
    q_path = export.quantize_static_onnx(fp32.path, tmp_path / "m.int8.onnx", calib, meta=meta)
    assert export.file_size_mb(q_path) < 0.4 * export.file_size_mb(fp32.path)  # int8 weights: ~4x smaller
    out = export.predict_logits(export.OnnxModel(q_path), x)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= MIN_AGREEMENT
    assert _acc(out, y) >= _acc(ref, y) - MAX_ACC_DROP
    assert export.read_sidecar(q_path)["calibration_images"] == len(calib)


def test_static_int8_fx_keeps_accuracy(trained):
    model, _, x, y, ref, calib = trained
    q = export.quantize_static_fx(model, calib[:64], observer="minmax")
    assert any("quantized" in type(m).__module__ for m in q.modules())
    out = export.predict_logits(q, x)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= MIN_AGREEMENT
    assert _acc(out, y) >= _acc(ref, y) - MAX_ACC_DROP


def test_fx_handles_resnet_skip_connections():
    model = models.build_model("resnet18", pretrained=False).eval()
    x = torch.randn(8, 3, 32, 32)
    q = export.quantize_static_fx(model, x, observer="minmax")
    with torch.no_grad():
        out, ref = q(x), model(x)
    assert out.shape == (8, 10) and torch.isfinite(out).all()
    assert "quantized.add" in q.code or "quantized.add_relu" in q.code  # the skip adds run in INT8
    assert torch.corrcoef(torch.stack([out.flatten(), ref.flatten()]))[0, 1] > 0.9


def test_measure_latency_counts_and_orders():
    calls = []
    lat = export.measure_latency(lambda t: calls.append(t.shape), torch.zeros(1, 3, 8, 8), warmup=3, repeats=7)
    assert len(calls) == 10 and lat.repeats == 7 and lat.warmup == 3
    assert 0 <= lat.median_ms <= lat.p90_ms and lat.threads == torch.get_num_threads() == 1
    assert lat.shape == (1, 3, 8, 8) and "median" in str(lat)


def test_table_reports_failures_instead_of_crashing(tmp_path, monkeypatch):
    model = models.make_deep_net(blocks=2, width=8).eval()  # small: this test is about the table
    meta = ModelMeta("resnet18", data.CLASSES, 32, models.IMAGENET_MEAN, models.IMAGENET_STD)
    x, y = torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,))

    def broken(*a, **k):
        raise export.ExportError("no quantized engine here")

    monkeypatch.setattr(export, "quantize_static_fx", broken)
    monkeypatch.setattr(export, "quantize_static_onnx", broken)
    rows = export.compare_formats(
        model, meta, x, y, x[:8], tmp_path, sizes=(32, 48), warmup=1, repeats=2, progress=False
    )
    by_name = {r.name: r for r in rows}
    assert len(rows) == 6 and by_name["fp32 eager (PyTorch)"].agreement == 1.0
    assert by_name["ONNX Runtime fp32"].max_abs_diff < EXPORT_TOL and by_name["TorchScript fp32"].size_mb > 0
    assert set(by_name["INT8 dynamic (PyTorch)"].latency) == {32, 48}
    assert by_name["INT8 static FX (PyTorch)"].note == "failed: no quantized engine here"
    table = export.to_markdown(rows)
    assert table.count("\n") == 7 and "48px p90 (ms)" in table and "failed: no quantized engine here" in table
