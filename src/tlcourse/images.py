"""Reading one image from anything a learner might pass, or refusing it in one clear line."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
# Pillow warns above ~89 Mpx and refuses above ~179 Mpx (decompression-bomb guard). A photo from
# a phone is 12-50 Mpx; allow up to 250 Mpx so real scans still open.
Image.MAX_IMAGE_PIXELS = 250_000_000


def load_image(src, name: str | None = None) -> Image.Image:
    """Return an RGB PIL image from a path, bytes, file object, PIL image, ndarray or tensor.

    Raises :class:`ImageError` naming the input and the reason when it is not a usable image.
    """
    if isinstance(src, (str, Path)):
        return _open_path(Path(src))
    if isinstance(src, (bytes, bytearray)):
        return _decode(io.BytesIO(src), name or "uploaded bytes", size=len(src))
    if hasattr(src, "read"):
        data = src.read()
        return _decode(io.BytesIO(data), name or getattr(src, "name", "file object"), size=len(data))
    if isinstance(src, Image.Image):
        return to_rgb(src)
    if isinstance(src, torch.Tensor):
        return _from_tensor(src, name or "tensor")
    if isinstance(src, np.ndarray):
        return _from_array(src, name or "array")
    raise ImageError(
        f"{name or 'input'}: cannot read an image from a {type(src).__name__}; "
        "pass a file path, bytes, a PIL image, an HxWxC NumPy array or a CxHxW tensor"
    )


def _open_path(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageError(f"{path}: no such file; check the path (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image; pass an image file inside it")
    size = path.stat().st_size
    with open(path, "rb") as f:
        return _decode(io.BytesIO(f.read()), str(path), size=size)


def _decode(stream: io.BytesIO, name: str, size: int) -> Image.Image:
    if size == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes); re-copy or re-download it")
    try:
        img = Image.open(stream)
        img.seek(0)  # animated GIF/WebP: the first frame
        img.load()
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image Pillow can read (is it a text or other file with an image "
            "extension?); supported: JPEG, PNG, BMP, GIF, WebP, TIFF"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: truncated or corrupt image ({e}); re-save or replace the file") from None
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF rotation, flatten transparency onto white, scale 16-bit, and convert to RGB."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") and arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def _from_array(arr: np.ndarray, name: str) -> Image.Image:
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        raise ImageError(
            f"{name}: shape {arr.shape} looks channels-first; NumPy images are HxWxC "
            "(use arr.transpose(1, 2, 0)) or pass a torch tensor"
        )
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ImageError(f"{name}: shape {arr.shape} is not an image; expected HxW, HxWx3 or HxWx4")
    if min(arr.shape[:2]) == 0:
        raise ImageError(f"{name}: shape {arr.shape} has no pixels")
    return Image.fromarray(_to_uint8(arr, name)).convert("RGB")


def _from_tensor(t: torch.Tensor, name: str) -> Image.Image:
    t = t.detach().cpu()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ImageError(f"{name}: a batch of {t.shape[0]} images; pass one image (CxHxW) at a time")
        t = t[0]
    if t.ndim == 3 and t.shape[0] not in (1, 3, 4):
        raise ImageError(f"{name}: shape {tuple(t.shape)} is not CxHxW with C in 1, 3 or 4")
    if t.ndim not in (2, 3):
        raise ImageError(f"{name}: shape {tuple(t.shape)} is not an image; expected CxHxW or HxW")
    arr = t.numpy() if t.ndim == 2 else t.permute(1, 2, 0).numpy()
    return _from_array(arr, name)


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{name}: contains NaN or Inf values; clean the array before predicting")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ImageError(
                f"{name}: float values span [{lo:.3g}, {hi:.3g}]; float images must be in [0, 1] "
                "(un-normalize first, or pass uint8 0-255)"
            )
        return (np.clip(arr, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    raise ImageError(f"{name}: dtype {arr.dtype} is not supported; use uint8 (0-255) or float (0-1)")


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and centre-crop: how a photo becomes a CIFAR-like input."""
    w, h = img.size
    scale = size / min(w, h)
    new = (max(size, math.ceil(w * scale - 1e-6)), max(size, math.ceil(h * scale - 1e-6)))
    img = img.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return img.crop((left, top, left + size, top + size))
