"""A minimal prediction service (notebook 07): load a checkpoint once, answer ``POST /predict``.

    python -m tlcourse serve checkpoints/efficientnet_lite0-quick.pt      # http://127.0.0.1:8000/docs
    curl -F file=@cat.jpg 'http://127.0.0.1:8000/predict?top_k=3'

A teaching server: no authentication and no rate limiting, so it listens on loopback only. Its limits
(upload bytes, pixels, concurrent decodes, timeouts) are the constants below; the README lists them.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime, and
# they refer to a local (the number of classes).
import asyncio
import ipaddress
import math
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated

import torch
from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import JSONResponse
from PIL import Image

from . import images
from .classifier import ImageClassifier
from .errors import ImageError, ImageTooLargeError, TLCourseError

MAX_UPLOAD_BYTES = 10_000_000  # a 12 Mpx phone JPEG is 3-6 MB
MULTIPART_SLACK = 65_536  # the request body may exceed the file by its multipart headers and boundary
MAX_PIXELS = 50_000_000  # refuse before decoding: a small file can declare a huge image
MAX_DEEP_PIXELS = 25_000_000  # 16-bit and float images: 2-4 bytes per pixel while they are reduced to 8 bits
DECODE_SLOTS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
READ_TIMEOUT_S = 30.0  # an upload that sends nothing for this long gets 408
KEEP_ALIVE_S = 5  # uvicorn's timeout_keep_alive: an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 64  # uvicorn's limit_concurrency: more open connections than this are answered 503
LOOPBACK_NAMES = ("localhost",)


def create_app(
    checkpoint_path: str | Path,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    device: str = "cpu",
    max_deep_pixels: int = MAX_DEEP_PIXELS,
    decode_slots: int = DECODE_SLOTS,
    read_timeout_s: float = READ_TIMEOUT_S,
):
    """A FastAPI app serving the classifier in ``checkpoint_path`` (loaded here, once, not per request).

    A self-test prediction runs here too; ``app.state.problem`` holds why it failed (None when healthy).
    """
    clf = ImageClassifier.from_checkpoint(checkpoint_path, device=device)
    n_classes = len(clf.classes)
    app = FastAPI(
        title="tlcourse classifier",
        description=f"{clf.meta.backbone} fine-tuned on {n_classes} classes ({Path(checkpoint_path).name})",
    )
    app.add_middleware(UploadGuard, max_bytes=max_upload_bytes + MULTIPART_SLACK, read_timeout_s=read_timeout_s)
    app.state.classifier = clf
    app.state.problem = self_test(clf)
    slots = threading.BoundedSemaphore(max(1, decode_slots))  # each decode can briefly hold ~5 bytes per pixel

    @app.exception_handler(ImageError)
    def bad_image(request, exc: ImageError):  # a readable image was expected: 400 with the reason
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(ImageTooLargeError)
    def too_large(request, exc: ImageTooLargeError):
        return JSONResponse(status_code=413, content={"detail": str(exc)})

    @app.api_route("/health", methods=["GET", "HEAD"])
    def health():
        """Liveness, whether the model passed its start-up self-test (503 with the reason if not), what is served."""
        body = {
            "status": "unhealthy" if app.state.problem else "ok",
            "backbone": clf.meta.backbone,
            "classes": list(clf.classes),
            "image_size": clf.meta.image_size,
            "device": str(clf.device),
        }
        if app.state.problem:
            body["detail"] = app.state.problem
        return JSONResponse(status_code=503 if app.state.problem else 200, content=body)

    # A plain `def` (not async): FastAPI runs it in a worker thread, so inference does not block the server.
    @app.post("/predict", dependencies=[Depends(one_file_field)])
    def predict(
        file: Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, ...)")],
        top_k: Annotated[int, Query(ge=1, le=n_classes, description="how many classes to return")] = 3,
    ) -> dict:
        """Classify one uploaded image: the top class, its probability, and the ``top_k`` best classes."""
        if app.state.problem:
            raise HTTPException(503, f"the model failed its start-up self-test: {app.state.problem}")
        content = file.file.read(max_upload_bytes + 1)
        name = file.filename or "upload"
        if not content:
            raise HTTPException(400, f"{name}: the upload is empty (0 bytes); send an image file")
        if len(content) > max_upload_bytes:
            raise HTTPException(
                413, f"{name}: larger than the {max_upload_bytes / 1e6:.0f} MB limit; resize or re-compress the image"
            )
        with slots:
            image = images.load_image(content, name=name, max_pixels=max_pixels, max_deep_pixels=max_deep_pixels)
            with torch.inference_mode():
                pred = clf.predict(image, top_k=top_k)
        return {
            "label": pred.label,
            "probability": pred.probability,
            "top_k": [{"label": k, "probability": v} for k, v in pred.probabilities.items()],
        }

    return app


async def one_file_field(request: Request) -> None:
    """Refuse a form with several ``file`` fields (FastAPI would silently take the last)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        count = len((await request.form()).getlist("file"))  # the form FastAPI parsed, not a second parse
        if count > 1:
            raise HTTPException(400, f"{count} `file` fields in one request; send one image per request")


def self_test(clf: ImageClassifier) -> str | None:
    """Predict a plain grey image; why the model cannot predict (an error, or NaN/Inf probabilities), or None."""
    try:
        with torch.inference_mode():
            pred = clf.predict(Image.new("RGB", (64, 64), (128, 128, 128)), top_k=len(clf.classes))
    except Exception as e:  # whatever the model raises, /health reports it instead of every /predict failing
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    if not all(math.isfinite(p) for p in pred.probabilities.values()):
        return "the model outputs NaN or Inf on a plain grey image; its weights are unusable, load another checkpoint"
    return None


class UploadGuard:
    """ASGI middleware: refuse a request body over ``max_bytes`` before it is stored anywhere.

    A ``Content-Length`` over the limit is answered 413 before the body is read; a body without one
    (chunked) is counted as it arrives and refused once it passes the limit, so the multipart parser,
    which spools uploads to temporary files, never receives more than ``max_bytes``. A client that
    stops sending the body for ``read_timeout_s`` gets 408.
    """

    def __init__(self, app, max_bytes: int, read_timeout_s: float):
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = f"the {self.max_bytes / 1e6:.0f} MB request limit; resize or re-compress the image"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            response = JSONResponse(status_code=413, content={"detail": f"the upload is larger than {limit}"})
            return await response(scope, receive, send)
        received, done = 0, False

        async def counted_receive():
            nonlocal received, done
            if done:  # the body is in: later calls wait for a disconnect, which has no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"no data for {self.read_timeout_s:.0f} s; the upload timed out") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                done = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise HTTPException(413, f"the upload is larger than {limit}")
            return message

        await self.app(scope, counted_receive, send)


def check_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address (127.0.0.0/8, ::1, localhost), else refuse it."""
    try:
        ok = host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise TLCourseError(
            f"--host {host}: this teaching server has no authentication, so it only listens on "
            "loopback (127.0.0.1, ::1 or localhost); put a real server in front to expose it"
        )
    return host


def check_port(host: str, port: int) -> int:
    """Return ``port`` if it is in 1-65535 and free on ``host``, else refuse it in one line."""
    if not 1 <= port <= 65535:
        raise TLCourseError(f"--port {port}: a port is a number from 1 to 65535 (the default is 8000)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As uvicorn binds: a port whose last connections are still in TIME_WAIT (a restart right
        # after Ctrl-C) is free to listen on again.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise TLCourseError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
    return port


def run(checkpoint_path: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu") -> None:
    """Load the checkpoint and serve it with uvicorn until Ctrl-C."""
    import uvicorn

    app = create_app(checkpoint_path, device=device)
    if app.state.problem:
        print(f"warning: the model failed its self-test ({app.state.problem}); /health answers 503", file=sys.stderr)
    uvicorn.run(
        app,
        host=check_loopback(host),
        port=check_port(host, port),
        log_level="info",
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONNECTIONS,
    )
