"""A minimal prediction service (notebook 07): load a checkpoint once, answer ``POST /predict``.

    python -m tlcourse serve checkpoints/efficientnet_lite0-quick.pt      # http://127.0.0.1:8000/docs
    curl -F file=@cat.jpg 'http://127.0.0.1:8000/predict?top_k=3'

A teaching server: no authentication and no rate limiting, so it listens on loopback only.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime, and
# they refer to a local (the number of classes).
import io
import ipaddress
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import JSONResponse
from PIL import Image

from . import images
from .classifier import ImageClassifier
from .errors import ImageError, TLCourseError

MAX_UPLOAD_BYTES = 10_000_000  # a 12 Mpx phone JPEG is 3-6 MB
MAX_PIXELS = 50_000_000  # refuse before decoding: a small file can declare a huge image
LOOPBACK_NAMES = ("localhost",)


def create_app(
    checkpoint_path: str | Path,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_PIXELS,
    device: str = "cpu",
):
    """A FastAPI app serving the classifier in ``checkpoint_path`` (loaded here, once, not per request)."""
    clf = ImageClassifier.from_checkpoint(checkpoint_path, device=device)
    n_classes = len(clf.classes)
    app = FastAPI(
        title="tlcourse classifier",
        description=f"{clf.meta.backbone} fine-tuned on {n_classes} classes ({Path(checkpoint_path).name})",
    )
    app.state.classifier = clf

    @app.exception_handler(ImageError)
    def bad_image(request, exc: ImageError):  # a readable image was expected: 400 with the reason
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> dict:
        """Liveness plus what is being served."""
        return {
            "status": "ok",
            "backbone": clf.meta.backbone,
            "classes": list(clf.classes),
            "image_size": clf.meta.image_size,
            "device": str(clf.device),
        }

    # A plain `def` (not async): FastAPI runs it in a worker thread, so inference does not block the server.
    @app.post("/predict")
    def predict(
        file: Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, ...)")],
        top_k: Annotated[int, Query(ge=1, le=n_classes, description="how many classes to return")] = 3,
    ) -> dict:
        """Classify one uploaded image: the top class, its probability, and the ``top_k`` best classes."""
        content = file.file.read(max_upload_bytes + 1)
        name = file.filename or "upload"
        if not content:
            raise HTTPException(400, f"{name}: the upload is empty (0 bytes); send an image file")
        if len(content) > max_upload_bytes:
            raise HTTPException(
                413, f"{name}: larger than the {max_upload_bytes / 1e6:.0f} MB limit; resize or re-compress the image"
            )
        pixels = declared_pixels(content)
        if pixels > max_pixels:
            raise HTTPException(
                413,
                f"{name}: {pixels / 1e6:.0f} Mpx is more than the {max_pixels / 1e6:.0f} Mpx limit; resize the image",
            )
        image = images.load_image(content, name=name)
        with torch.inference_mode():
            pred = clf.predict(image, top_k=top_k)
        return {
            "label": pred.label,
            "probability": pred.probability,
            "top_k": [{"label": k, "probability": v} for k, v in pred.probabilities.items()],
        }

    return app


def declared_pixels(content: bytes) -> int:
    """Width x height from the image header, without decoding; 0 when the header is unreadable."""
    try:
        with Image.open(io.BytesIO(content)) as img:
            return img.size[0] * img.size[1]
    except Exception:  # not an image: images.load_image says why
        return 0


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


def run(checkpoint_path: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "cpu") -> None:
    """Load the checkpoint and serve it with uvicorn until Ctrl-C."""
    import uvicorn

    app = create_app(checkpoint_path, device=device)
    uvicorn.run(app, host=check_loopback(host), port=port, log_level="info")
