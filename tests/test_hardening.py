"""Hostile inputs (issue 17): paths that are not files, memory bombs, huge or slow uploads, full disks,
checkpoint metadata that lies, and the serve command's port, health and form checks."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcourse import checkpoint, images, models, paths, serve
from tlcourse.__main__ import main
from tlcourse.checkpoint import ModelMeta
from tlcourse.classifier import ImageClassifier
from tlcourse.errors import CheckpointError, ImageError, TLCourseError

with warnings.catch_warnings():  # starlette now suggests httpx2; FastAPI's documented client still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX-only")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny servable checkpoint: random weights (pretrained=False) are enough here."""
    path = tmp_path_factory.mktemp("hard") / "tiny.pt"
    ImageClassifier("efficientnet_lite0", pretrained=False, device="cpu").save_model(path)
    return path


@pytest.fixture(scope="module")
def ok_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "ok.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m tlcourse ...`` in a subprocess: a hang fails the test (TimeoutExpired) instead of blocking it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tlcourse", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


# ---------------------------------------------------------------- 1. train --out and the atomic writer


@needs_fifo
def test_train_out_onto_a_fifo_or_folder_is_refused_before_training(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for out, words in ((fifo, "not a regular file (FIFO"), (tmp_path, "is a folder")):
        assert main(["train", "--profile", "smoke", "--no-progress", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {out}: ") and words in err, err
    assert paths.describe_mode(os.lstat(fifo).st_mode).endswith("(FIFO, a named pipe)")  # still a FIFO


def test_a_symlink_destination_replaces_its_target_and_keeps_the_link(tmp_path):
    real = checkpoint.atomic_save({"v": torch.zeros(2)}, tmp_path / "real.pt")
    link = tmp_path / "link.pt"
    link.symlink_to(real.name)
    checkpoint.atomic_save({"v": torch.ones(2)}, link)
    assert link.is_symlink() and os.readlink(link) == "real.pt"
    assert torch.load(real, weights_only=True)["v"].tolist() == [1.0, 1.0]
    dangling = tmp_path / "dangling.pt"
    dangling.symlink_to(tmp_path / "nowhere.pt")
    with pytest.raises(CheckpointError, match="a symlink to .*nowhere.pt, which does not exist"):
        checkpoint.atomic_save({}, dangling)
    to_dir = tmp_path / "to_dir.pt"
    to_dir.symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(CheckpointError, match="is a folder"):
        checkpoint.atomic_save({}, to_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.pt", "link.pt", "real.pt", "to_dir.pt"]


def test_destination_under_a_file_or_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        paths.check_destination(tmp_path / "plain" / "sub" / "m.pt", CheckpointError)
    assert (
        paths.check_destination(tmp_path / "new" / "sub" / "m.pt", CheckpointError).parent == tmp_path / "new" / "sub"
    )
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(CheckpointError, match="permission denied"):
            paths.check_destination(ro / "m.pt", CheckpointError)


# ---------------------------------------------------------------- 2. memory: 16-bit and float images

_PEAK_SCRIPT = """
import sys
from tlcourse import images
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024
base = hwm()
img = images.load_image(sys.argv[1])
assert img.mode == "RGB" and img.size == (7000, 7000)
print(hwm() - base)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc")
def test_16bit_and_float_images_decode_without_float64_copies(tmp_path):
    """49 Mpx: a full-size float64 copy alone is 392 MB; the old conversion peaked at +1.3-1.5 GB."""
    ramp = np.linspace(0, 1, 7000, dtype=np.float32)
    grey16 = Image.fromarray(np.tile((ramp * 65535).astype(np.uint16), (7000, 1)))
    assert grey16.mode == "I;16"
    grey16.save(tmp_path / "grey16.png")
    del grey16
    Image.fromarray(np.repeat(ramp[:, None], 7000, axis=1)).save(
        tmp_path / "float.tif", compression="tiff_adobe_deflate"
    )  # each row one value: small on disk
    for name in ("grey16.png", "float.tif"):
        assert (tmp_path / name).stat().st_size < 1_000_000
        r = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path / name)], capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, r.stderr
        assert int(r.stdout) < 400e6, f"{name}: peak resident size grew by {int(r.stdout) / 1e6:.0f} MB"


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "F-255", "RGBA", "LA", "P-transparent"])
def test_band_by_band_conversion_matches_the_whole_image_formula(mode, monkeypatch):
    """The chunked conversion gives exactly what the full-size arithmetic gave (bands of 7 rows here)."""
    rng = np.random.default_rng(1)
    h, w = 37, 23
    if mode in ("I;16", "I"):
        arr = rng.integers(0, 65536, (h, w)).astype(np.uint16 if mode == "I;16" else np.int32)
        img, top = Image.fromarray(arr), 65535.0
    elif mode.startswith("F"):
        arr = rng.random((h, w), dtype=np.float32) * (255 if mode == "F-255" else 1)
        arr[0, 0] = np.nan
        img, top = Image.fromarray(arr), 255.0 if mode == "F-255" else 1.0
    else:
        rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
        img = rgba.convert(mode) if mode == "LA" else rgba
        if mode == "P-transparent":
            img = rgba.convert("RGB").quantize(16)
            img.info["transparency"] = 3
    if mode in ("I;16", "I") or mode.startswith("F"):
        full = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0)
        expected = np.repeat(np.clip(full / top * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    else:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        expected = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    monkeypatch.setattr(images, "_CHUNK_PIXELS", 7 * w)
    assert np.array_equal(np.asarray(images.to_rgb(img)), expected)


def test_deep_images_have_a_lower_pixel_limit(tmp_path):
    buf = io.BytesIO()
    Image.new("I;16", (3000, 2000)).save(buf, format="PNG")  # 6 Mpx, 16-bit
    with pytest.raises(ImageError, match="more than the 5 Mpx limit for I;16 images"):
        images.load_image(buf.getvalue(), name="deep.png", max_pixels=10_000_000, max_deep_pixels=5_000_000)
    rgb = io.BytesIO()
    Image.new("RGB", (3000, 2000)).save(rgb, format="PNG")
    assert images.load_image(rgb.getvalue(), max_pixels=10_000_000, max_deep_pixels=5_000_000).size == (3000, 2000)


# ---------------------------------------------------------------- 3. uploads refused before they are stored


def _multipart(body_size: int) -> tuple[bytes, bytes]:
    boundary = b"tlcourse-boundary"
    head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
    return head + b"\0" * body_size + b"\r\n--" + boundary + b"--\r\n", b"multipart/form-data; boundary=" + boundary


def _call_asgi(app, method: str, path: str, headers: list, chunks, delay: float = 0.0):
    """Drive the ASGI app as uvicorn would, with the body in ``chunks``; (status, body, chunks read)."""
    sent, read = [], 0
    chunks = list(chunks)

    async def receive():
        nonlocal read
        if read < len(chunks):
            await asyncio.sleep(delay)
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        await asyncio.sleep(3600)  # wait for a disconnect that never comes

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, read


@pytest.mark.parametrize("with_length", [True, False])
def test_a_50mb_upload_never_reaches_the_spool(ckpt, tmp_path, monkeypatch, with_length):
    """Bytes written to the multipart parser's spool files (memory, then ``tempfile.tempdir``) stay under the limit."""
    import starlette.formparsers as formparsers

    spooled = []

    class CountingSpool(formparsers.SpooledTemporaryFile):
        def write(self, s):
            spooled.append(len(s))
            return super().write(s)

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", CountingSpool)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    limit = 1_000_000
    app = serve.create_app(ckpt, max_upload_bytes=limit)
    body, ctype = _multipart(50_000_000)
    headers = [(b"content-type", ctype)] + ([(b"content-length", str(len(body)).encode())] if with_length else [])
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    status, answer, read = _call_asgi(app, "POST", "/predict", headers, chunks)
    assert status == 413 and b"larger than the 1 MB request limit" in answer
    assert sum(spooled) <= limit + serve.MULTIPART_SLACK and list(tmp_path.iterdir()) == []
    assert read == 0 if with_length else read * 65536 <= limit + serve.MULTIPART_SLACK + 65536


def test_an_upload_that_stalls_gets_408(ckpt):
    app = serve.create_app(ckpt, read_timeout_s=0.2)
    body, ctype = _multipart(1000)
    status, answer, _ = _call_asgi(app, "POST", "/predict", [(b"content-type", ctype)], [body[:50], body[50:]], 0.5)
    assert status == 408 and b"timed out" in answer


# ---------------------------------------------------------------- 4. disk full


def test_disk_full_on_a_real_small_filesystem(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 1 MB tmpfs here ({r.stderr.strip() or 'not root'}); the mocked test covers it")
    try:
        path = checkpoint.atomic_save({"v": torch.ones(10)}, mnt / "m.pt")
        before = path.read_bytes()
        with pytest.raises(CheckpointError) as e:
            checkpoint.atomic_save({"v": torch.ones(1_000_000)}, path)  # 4 MB into 1 MB
        msg = str(e.value)
        assert msg.startswith(f"{path}: no space left on {mnt} (needs about 4.0 MB, ") and "\n" not in msg
        assert msg.endswith("the previous file is unchanged")
        assert path.read_bytes() == before and [p.name for p in mnt.iterdir()] == ["m.pt"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_torch_save_runtime_error_wrapping_enospc_is_one_line(tmp_path, monkeypatch):
    def save(obj, f, *a, **k):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(CheckpointError, match=r"no space left on .*nothing was written$"):
        checkpoint.atomic_save({"v": torch.ones(4)}, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 5 and 8. only regular files, clear lines


@pytest.mark.slow
@needs_fifo
def test_a_fifo_as_image_or_checkpoint_does_not_hang(tmp_path, ckpt, ok_png):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    r = _run("predict", str(ckpt), str(fifo), str(ok_png), timeout=120)
    assert r.returncode == 2 and "not a regular file (FIFO" in r.stderr and len(r.stderr.splitlines()) == 1
    assert r.stdout.startswith(f"{ok_png}: ")
    r = _run("predict", str(fifo), str(ok_png), timeout=120)
    assert (
        r.returncode == 2
        and r.stderr == f"error: {fifo}: not a regular file (FIFO, a named pipe); pass a checkpoint (a regular file)\n"
    )


@pytest.mark.slow
def test_dev_zero_is_refused_and_the_good_image_still_predicted(ckpt, ok_png):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    r = _run("predict", str(ckpt), "/dev/zero", str(ok_png), timeout=120)
    assert r.returncode == 2 and r.stdout.startswith(f"{ok_png}: ") and "Traceback" not in r.stderr
    assert r.stderr == "error: /dev/zero: not a regular file (character device); pass an image file (a regular file)\n"


@pytest.mark.parametrize(
    "path, words",
    [
        ("/dev/null", "not a regular file (character device)"),
        ("/proc/self/status", "not a regular file (a kernel pseudo-file under /proc or /sys)"),
    ],
)
def test_devices_and_proc_files_are_named(path, words):
    if not Path(path).exists():
        pytest.skip(f"no {path}")
    with pytest.raises(ImageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        images.load_image(path)
    with pytest.raises(CheckpointError, match=words.replace("(", r"\(").replace(")", r"\)")):
        checkpoint.read_model(path)


def test_symlink_loop_and_pdf_are_named(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop.name)
    with pytest.raises(ImageError, match="symlink loop"):
        images.load_image(loop)
    with pytest.raises(CheckpointError, match="symlink loop"):
        checkpoint.read_model(loop)
    pdf = tmp_path / "scan.jpg"
    pdf.write_bytes(b"%PDF-1.4\n%plain ascii header\n1 0 obj\n")
    with pytest.raises(ImageError, match="scan.jpg: a PDF document; not an image"):
        images.load_image(pdf)


def test_an_image_file_over_the_byte_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 2000)
    with pytest.raises(ImageError, match="larger than the 0 MB limit"):
        images.load_image(big)
    with pytest.raises(ImageError, match="larger than the 0 MB limit"), open(big, "rb") as f:
        images.load_image(f)


# ---------------------------------------------------------------- 6. checkpoint metadata that lies


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    meta = ModelMeta("resnet18", ("a", "b"), 32, *models.normalization("resnet18"))
    return checkpoint.save_model(tmp_path_factory.mktemp("meta") / "m.pt", models.make_deep_net(1, width=4), meta)


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_size", 0),
        ("image_size", -5),
        ("image_size", 3.7),
        ("image_size", "abc"),
        ("image_size", True),
        ("source_size", 0),
        ("mean", [0.5]),
        ("mean", [0.5, float("nan"), 0.5]),
        ("std", [0.5, 0.0, 0.5]),
        ("std", [0.5, float("inf"), 0.5]),
        ("classes", ["a", "a"]),
        ("classes", ["a", 2]),
        ("classes", []),
        ("backbone", None),
        ("version", "1"),
    ],
)
def test_edited_metadata_is_refused_naming_the_field(small_file, tmp_path, field, value):
    obj = torch.load(small_file, weights_only=True)
    if field == "version":
        obj["version"] = value
    else:
        obj["meta"][field] = value
    path = tmp_path / "edited.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as e:
        checkpoint.read_model(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and f"field {field!r} is " in msg and "\n" not in msg, msg


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused(small_file, tmp_path, bad, capsys):
    obj = torch.load(small_file, weights_only=True)
    name = next(k for k, v in obj["state_dict"].items() if v.is_floating_point())
    obj["state_dict"][name].view(-1)[0] = bad
    torch.save(obj, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=f"weights contain NaN or Inf \\(first in {name}\\)"):
        checkpoint.read_model(tmp_path / "nan.pt")
    assert main(["predict", str(tmp_path / "nan.pt"), "x.png"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_model_that_cannot_predict_is_unhealthy(ckpt, tmp_path):
    """Finite weights that overflow pass the load checks; the start-up self-test catches them."""
    clf = ImageClassifier.from_checkpoint(ckpt, device="cpu")
    last_bn = [m for m in clf.model.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    head = [m for m in clf.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # features of 6 times weights of 1e38, summed: every logit is +inf, softmax NaN
        last_bn.weight.zero_()
        last_bn.bias.fill_(6.0)
        head.weight.fill_(1e38)
    clf.save_model(tmp_path / "overflow.pt")
    client = TestClient(serve.create_app(tmp_path / "overflow.pt"))
    r = client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "unhealthy" and "NaN or Inf" in r.json()["detail"]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    r = client.post("/predict", files={"file": ("a.png", buf.getvalue())})
    assert r.status_code == 503 and "self-test" in r.json()["detail"]
    good = TestClient(serve.create_app(ckpt))
    assert good.get("/health").json()["status"] == "ok"


# ---------------------------------------------------------------- 7. serve: port, restart, forms, HEAD


@pytest.mark.parametrize("port", ["99999", "-1", "0", "65536"])
def test_port_out_of_range_is_one_line(ckpt, port, capsys):
    assert main(["serve", str(ckpt), "--port", port]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --port {port}: a port is a number from 1 to 65535 (the default is 8000)\n"


def test_port_in_time_wait_can_be_reused_like_uvicorn_does():
    """The server side closes first (as after Ctrl-C), leaving the port in TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's listening socket
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # active close on the server's port: TIME_WAIT there
        client.recv(1)
        client.close()
    with socket.socket() as plain, pytest.raises(OSError) as e:
        plain.bind(("127.0.0.1", port))  # the pre-check's old bind, without SO_REUSEADDR
    assert e.value.errno == errno.EADDRINUSE
    assert serve.check_port("127.0.0.1", port) == port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(TLCourseError, match="cannot listen on 127.0.0.1:.*pick another --port"):
            serve.check_port("127.0.0.1", busy.getsockname()[1])


def test_two_file_fields_are_refused_and_head_health_has_no_body(ckpt):
    client = TestClient(serve.create_app(ckpt))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    png = buf.getvalue()
    r = client.post("/predict", files=[("file", ("a.png", png)), ("file", ("b.png", png))])
    assert r.status_code == 400 and r.json()["detail"] == "2 `file` fields in one request; send one image per request"
    assert client.post("/predict", files={"file": ("a.png", png)}).status_code == 200
    r = client.head("/health")
    assert r.status_code == 200 and r.content == b""


def test_a_16bit_image_over_the_deep_limit_is_413(ckpt):
    buf = io.BytesIO()
    Image.new("I;16", (6000, 5000)).save(buf, format="PNG")  # 30 Mpx, a few kB
    r = TestClient(serve.create_app(ckpt)).post("/predict", files={"file": ("deep.png", buf.getvalue())})
    assert r.status_code == 413 and "limit for I;16 images (more than 8 bits per channel)" in r.json()["detail"]


def test_concurrent_decodes_are_bounded_by_the_slots(ckpt, monkeypatch):
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    running, peak, lock = 0, 0, threading.Lock()
    real = images.load_image

    def slow_load(*args, **kwargs):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.3)
        with lock:
            running -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "load_image", slow_load)
    client = TestClient(serve.create_app(ckpt, decode_slots=2))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    with ThreadPoolExecutor(6) as pool:
        codes = list(
            pool.map(lambda _: client.post("/predict", files={"file": ("a.png", buf.getvalue())}).status_code, range(6))
        )
    assert codes == [200] * 6 and peak == 2
