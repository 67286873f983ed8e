"""tlcourse.serve and the serve / bench commands: good uploads answered, bad ones refused with a 4xx."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image

from tlcourse import data, serve
from tlcourse.__main__ import main
from tlcourse.classifier import ImageClassifier
from tlcourse.errors import TLCourseError

with warnings.catch_warnings():  # starlette now suggests httpx2; FastAPI's documented client still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny checkpoint: random weights (pretrained=False) are enough to test the service."""
    path = tmp_path_factory.mktemp("serve") / "tiny.pt"
    ImageClassifier("efficientnet_lite0", pretrained=False, device="cpu").save_model(path)
    return path


@pytest.fixture(scope="module")
def client(checkpoint):
    return TestClient(serve.create_app(checkpoint, max_upload_bytes=200_000, max_pixels=2_000_000))


def _png(size=(48, 40), seed=0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _post(client, content: bytes, name="photo.png", **params):
    return client.post("/predict", files={"file": (name, content, "application/octet-stream")}, params=params)


def test_health_names_backbone_and_classes(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["backbone"] == "efficientnet_lite0"
    assert r.json()["classes"] == list(data.CLASSES)


def test_predict_returns_label_probability_and_top_k(client, checkpoint):
    content = _png()
    r = _post(client, content)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] in data.CLASSES and 0 < body["probability"] <= 1
    assert len(body["top_k"]) == 3 and body["top_k"][0] == {"label": body["label"], "probability": body["probability"]}
    probs = [t["probability"] for t in body["top_k"]]
    assert probs == sorted(probs, reverse=True)
    expected = ImageClassifier.from_checkpoint(checkpoint, device="cpu").predict(content)  # softmax: test_classifier
    assert [t["label"] for t in body["top_k"]] == list(expected.probabilities)
    assert probs == pytest.approx(list(expected.probabilities.values()), abs=1e-6)


def test_top_k_parameter(client):
    assert len(_post(client, _png(), top_k=10).json()["top_k"]) == 10
    for bad in (0, 11):
        r = _post(client, _png(), top_k=bad)
        assert r.status_code == 422 and "top_k" in r.text


def test_jpeg_with_alpha_and_odd_size_are_fine(client):
    buf = io.BytesIO()
    Image.new("RGBA", (301, 17), (10, 200, 30, 128)).save(buf, format="PNG")
    assert _post(client, buf.getvalue()).status_code == 200
    buf = io.BytesIO()
    Image.new("L", (640, 480), 128).save(buf, format="JPEG")
    assert _post(client, buf.getvalue(), name="grey.jpg").status_code == 200


@pytest.mark.parametrize(
    "content, status, words",
    [
        (b"", 400, "empty"),
        (b"hello, I am a text file\n", 400, "not an image"),
        (_png()[:200], 400, "truncated or corrupt"),
        (b"\x00" * 200_001, 413, "larger than"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(client, content, status, words):
    r = _post(client, content, name="upload.png")
    assert r.status_code == status
    assert words in r.json()["detail"] and "upload.png" in r.json()["detail"]


def test_huge_declared_image_is_refused_before_decoding(client):
    buf = io.BytesIO()
    Image.new("RGB", (2000, 1001)).save(buf, format="PNG")  # a few KB that decode to 2.002 Mpx
    r = _post(client, buf.getvalue())  # this app's limit: 2.0 Mpx
    assert r.status_code == 413 and "Mpx" in r.json()["detail"]


def test_missing_file_field_is_422(client):
    r = client.post("/predict", data={"nothing": "here"})
    assert r.status_code == 422


def test_only_loopback_hosts_are_accepted():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert serve.check_loopback(host) == host
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        with pytest.raises(TLCourseError, match="loopback"):
            serve.check_loopback(host)


def test_serve_command_refuses_public_host_in_one_line(checkpoint, capsys):
    assert main(["serve", str(checkpoint), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loopback" in err


@pytest.mark.slow
def test_serve_command_answers_over_http(checkpoint):
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlcourse", "serve", str(checkpoint), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.5)
        assert r.status_code == 200 and r.json()["backbone"] == "efficientnet_lite0"
        r = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", _png())}, timeout=30)
        assert r.status_code == 200 and r.json()["label"] in data.CLASSES
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_bench_command_prints_latency(checkpoint, capsys):
    rc = main(
        [
            "bench",
            str(checkpoint),
            "--sizes",
            "32",
            "--formats",
            "eager",
            "onnx",
            "--warmup",
            "1",
            "--repeats",
            "3",
            "--threads",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "1 threads" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.split() and ln.split()[0] in ("eager", "onnx")}
    assert set(lines) == {"eager", "onnx"} and all(" / " in ln for ln in lines.values())


def test_bench_command_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "missing.pt"), "--threads", "0"]) == 2
