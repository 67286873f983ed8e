"""A bounded load test of ``python -m tlcourse serve``: requests per second, latency, errors, server memory.

    python benchmarks/serve_load.py [--clients 1 8 32] [--requests 300] [--checkpoint CKPT]

Starts the server on a free loopback port (127.0.0.1 only), sends ``--requests`` uploads of one photo-sized
JPEG at each client count (at most 3,000 requests in all), stops the server and writes results/serve_load.md.
Without ``--checkpoint`` it serves EfficientNet-Lite0 with random weights: the same work per request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import write_table
from PIL import Image

from tlcourse.classifier import ImageClassifier

MAX_TOTAL_REQUESTS = 3_000


def photo_jpeg(width: int, height: int) -> bytes:
    """A smooth random photo-like JPEG (noise compresses unlike a photo, so it is blurred by upsampling)."""
    small = np.random.default_rng(0).integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident size so far (Linux /proc), in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return None


def start_server(checkpoint: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tlcourse", "serve", str(checkpoint), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the server did not start (run `python -m tlcourse serve CKPT` to see why)")
        time.sleep(0.5)


async def load(url: str, image: bytes, clients: int, requests: int) -> tuple[list[float], int, set[str], float]:
    """Send ``requests`` uploads from ``clients`` concurrent connections: latencies (s), errors, labels, seconds."""
    latencies: list[float] = []
    labels: set[str] = set()
    errors = 0
    todo = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in todo:
            t0 = time.perf_counter()
            try:
                r = await http.post(f"{url}/predict", files={"file": ("photo.jpg", image, "image/jpeg")})
                ok = r.status_code == 200
                if ok:
                    labels.add(r.json()["label"])
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, errors, labels, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="a model file (default: Lite0 with random weights)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=300, help="requests per client count")
    p.add_argument("--image", default="1024x768", help="upload size, WIDTHxHEIGHT (a JPEG)")
    p.add_argument("--name", default="serve_load", help="results/<name>.md")
    a = p.parse_args()
    if a.requests * len(a.clients) > MAX_TOTAL_REQUESTS or min(a.clients) < 1 or a.requests < 1:
        raise SystemExit(f"at most {MAX_TOTAL_REQUESTS:,} requests in all, and at least 1 client and 1 request")
    width, height = (int(v) for v in a.image.lower().split("x"))
    image = photo_jpeg(width, height)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = a.checkpoint
        if checkpoint is None:
            checkpoint = Path(tmp) / "lite0-random.pt"
            ImageClassifier("efficientnet_lite0", pretrained=False, device="cpu").save_model(checkpoint)
        t0 = time.perf_counter()
        proc, url = start_server(checkpoint)
        rows, all_labels = [], set()
        try:
            start_rss = peak_rss_mb(proc.pid)
            asyncio.run(load(url, image, 1, 5))  # warm-up, not counted
            for clients in a.clients:
                latencies, errors, labels, seconds = asyncio.run(load(url, image, clients, a.requests))
                all_labels |= labels
                ms = sorted(x * 1000 for x in latencies)
                rss = peak_rss_mb(proc.pid)
                rows.append(
                    {
                        "clients": clients,
                        "requests": len(ms),
                        "req/s": f"{len(ms) / seconds:.1f}",
                        "p50 (ms)": f"{statistics.median(ms):.0f}",
                        "p99 (ms)": f"{ms[min(len(ms) - 1, int(len(ms) * 0.99))]:.0f}",
                        "errors": errors,
                        "server peak RSS (MB)": f"{rss:.0f}" if rss else "n/a",
                    }
                )
                print(rows[-1], flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    notes = [
        f"Server: `python -m tlcourse serve` on 127.0.0.1 (uvicorn, one process), checkpoint "
        f"{a.checkpoint or 'EfficientNet-Lite0 with random weights (the same work per request)'}; its defaults: "
        "10 MB uploads, 50 Mpx (25 Mpx over 8 bits per channel), one decode per core at a time.",
        f"Client: httpx on the same machine, each request one {width}x{height} JPEG ({len(image) / 1e3:.0f} kB) "
        "POSTed to /predict; 5 warm-up requests first. Latency is per request, client side.",
        f"Server peak RSS: VmHWM of the server process after each row (cumulative; {start_rss or 0:.0f} MB after "
        f"start-up). Answers: {len(all_labels)} distinct label(s) for the one image (1 = identical under load).",
        f"Command: python benchmarks/serve_load.py --clients {' '.join(map(str, a.clients))} --requests {a.requests}; "
        f"total time {time.perf_counter() - t0:.0f} s.",
    ]
    write_table(a.name, "Prediction service under load (loopback)", rows, notes)


if __name__ == "__main__":
    main()
