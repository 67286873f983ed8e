"""tlcourse.formats: latency is measured as stated; the format table reports failures; ``bench`` uses it."""

from __future__ import annotations

import pytest
import torch

from tlcourse import data, export, formats, models, quantize
from tlcourse.__main__ import main
from tlcourse.checkpoint import ModelMeta
from tlcourse.classifier import ImageClassifier

EXPORT_TOL = 1e-4  # as in test_export.py


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _small_model() -> tuple[torch.nn.Module, ModelMeta]:
    """A small network: these tests are about the table, not the backbone."""
    meta = ModelMeta("resnet18", data.CLASSES, 32, models.IMAGENET_MEAN, models.IMAGENET_STD)
    return models.make_deep_net(blocks=2, width=8).eval(), meta


def test_measure_latency_counts_and_orders():
    calls = []
    lat = formats.measure_latency(lambda t: calls.append(t.shape), torch.zeros(1, 3, 8, 8), warmup=3, repeats=7)
    assert len(calls) == 10 and lat.repeats == 7 and lat.warmup == 3
    assert 0 <= lat.median_ms <= lat.p90_ms and lat.threads == torch.get_num_threads() == 1
    assert lat.shape == (1, 3, 8, 8) and "median" in str(lat)


@pytest.mark.slow
def test_table_reports_failures_instead_of_crashing(tmp_path, monkeypatch):
    model, meta = _small_model()
    x, y = torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,))

    def broken(*a, **k):
        raise export.ExportError("no quantized engine here")

    monkeypatch.setattr(quantize, "quantize_static_fx", broken)
    monkeypatch.setattr(quantize, "quantize_static_onnx", broken)
    rows = formats.compare_formats(
        model, meta, x, y, x[:8], tmp_path, sizes=(32, 48), warmup=1, repeats=2, progress=False
    )
    by_name = {r.name: r for r in rows}
    assert len(rows) == 6 and by_name["fp32 eager (PyTorch)"].agreement == 1.0
    assert by_name["ONNX Runtime fp32"].max_abs_diff < EXPORT_TOL and by_name["TorchScript fp32"].size_mb > 0
    assert set(by_name["INT8 dynamic (PyTorch)"].latency) == {32, 48}
    assert by_name["INT8 static FX (PyTorch)"].note == "failed: no quantized engine here"
    table = formats.to_markdown(rows)
    assert table.count("\n") == 7 and "48px p90 (ms)" in table and "failed: no quantized engine here" in table


def test_build_formats_builds_the_named_ones_in_order(tmp_path):
    model, meta = _small_model()
    got = formats.build_formats(model, meta, None, tmp_path, progress=False, names=["onnx", "eager", "int8-onnx"])
    assert [c.name for c in got] == [formats.FORMATS[k] for k in ("onnx", "eager", "int8-onnx")]
    assert got[0].path == tmp_path / "model.onnx" and got[1].path == tmp_path / "model.pt"
    assert got[2].fn is None and "needs calibration images" in got[2].note  # static INT8 without calibration


def test_markdown_table_rounds_numbers_and_escapes_pipes():
    table = formats.markdown_table([{"name": "a|b", "ms": 12.345, "acc": 0.5}, {"name": "c", "ms": float("nan")}])
    assert table.splitlines() == [
        "| name | ms | acc |",
        "|---|---|---|",
        "| a\\|b | 12.3 | 0.50 |",
        "| c | — |  |",
    ]


@pytest.mark.slow
def test_bench_command_times_each_format(tmp_path, capsys):
    ckpt = ImageClassifier("efficientnet_lite0", pretrained=False, image_size=32, device="cpu").save_model(
        tmp_path / "m.pt"
    )
    args = ["bench", str(ckpt), "--sizes", "32", "40", "--warmup", "0", "--repeats", "2", "--threads", "1"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "32 px median / p90 (ms)" in lines[1] and "40 px median / p90 (ms)" in lines[1]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:5]}
    assert list(rows) == ["eager", "torchscript", "onnx"]
    for cells in rows.values():  # "median / p90" per size, p90 never below the median
        medians, p90s = [float(v) for v in cells[0::3]], [float(v) for v in cells[2::3]]
        assert len(medians) == 2 and all(0 < m <= p for m, p in zip(medians, p90s))
    assert torch.get_num_threads() == 1  # restored after the command
