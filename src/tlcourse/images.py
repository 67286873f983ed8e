"""Reading one image from anything a learner might pass, or refusing it in one clear line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from . import paths
from .errors import ImageError, ImageTooLargeError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})
# A photo from a phone is 12-50 Mpx; allow up to 250 Mpx so real scans still open (Pillow's own
# decompression-bomb guard, which would warn from ~89 Mpx, is set to the same limit).
MAX_PIXELS = 250_000_000
# Modes over 8 bits per channel (16-bit, 32-bit integer, float) decode to 2-4 bytes per pixel before
# they are reduced to 8 bits, so they get a lower limit.
MAX_DEEP_PIXELS = 100_000_000
MAX_FILE_BYTES = 300_000_000  # read at most this much of one image file (a 250 Mpx TIFF, compressed)
DEEP_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_CHUNK_PIXELS = 1 << 20  # deep modes and transparency are converted this many pixels at a time
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def load_image(
    src, name: str | None = None, max_pixels: int = MAX_PIXELS, max_deep_pixels: int = MAX_DEEP_PIXELS
) -> Image.Image:
    """Return an RGB PIL image from a path, bytes, file object, PIL image, ndarray or tensor.

    Raises :class:`ImageError` naming the input and the reason when it is not a usable image
    (:class:`ImageTooLargeError` when an encoded image declares more pixels than the limits).
    """
    limits = (max_pixels, max_deep_pixels)
    if isinstance(src, (str, Path)):
        if not str(src).strip():
            raise ImageError(f"{name or 'input'}: the path is empty; pass the path of an image file")
        if str(src).startswith(("http://", "https://")):
            raise ImageError(f"{src}: a URL; tlcourse reads local files only, so download the image first")
        path = Path(src).expanduser()
        data = paths.read_regular(path, ImageError, "an image file", MAX_FILE_BYTES)
        return _decode(io.BytesIO(data), str(path), len(data), limits)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(src)), name or "uploaded bytes", len(src), limits)
    if hasattr(src, "read"):
        label = name or str(getattr(src, "name", "file object"))
        try:
            data = src.read(MAX_FILE_BYTES + 1)
        except (OSError, ValueError) as e:  # closed or unreadable file object
            raise ImageError(f"{label}: cannot read the file object ({e})") from None
        if isinstance(data, str):
            raise ImageError(f"{label}: opened in text mode; open image files with open(path, 'rb')")
        if len(data) > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"{label}: larger than the {MAX_FILE_BYTES / 1e6:,.0f} MB limit; shrink it first")
        return _decode(io.BytesIO(data), label, len(data), limits)
    if isinstance(src, Image.Image):
        return _convert(src, name or "PIL image")
    if isinstance(src, torch.Tensor):
        return _from_tensor(src, name or "tensor")
    if isinstance(src, np.ndarray):
        return _from_array(src, name or "array")
    raise ImageError(
        f"{name or 'input'}: cannot read an image from a {type(src).__name__}; "
        "pass a file path, bytes, a PIL image, an HxWxC NumPy array or a CxHxW tensor"
    )


def _decode(stream: io.BytesIO, name: str, size: int, limits: tuple[int, int]) -> Image.Image:
    if size == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes); re-copy or re-download it")
    try:
        img = Image.open(stream)
    except UnidentifiedImageError:
        what = _describe_unknown(stream.getvalue())
        fix = (
            "re-save or replace the file"
            if what.startswith("a damaged")
            else "not an image Pillow can read; supported: JPEG, PNG, BMP, GIF, WebP, TIFF"
        )
        raise ImageError(f"{name}: {what}; {fix}") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: too large to open safely ({_line(e)}); shrink it first") from None
    except Exception as e:  # Pillow's header parsers raise many types (SyntaxError, struct.error, ...)
        raise ImageError(
            f"{name}: corrupt image header ({type(e).__name__}: {_line(e)}); re-save or replace the file"
        ) from None
    _check_pixels(img, name, *limits)
    try:
        img.seek(0)  # animated GIF/WebP/TIFF: the first frame
        img.load()
    except Exception as e:  # OSError "image file is truncated", zlib/struct errors on damaged data
        raise ImageError(
            f"{name}: truncated or corrupt {img.format or 'image'} data ({_line(e)}); re-save or replace the file"
        ) from None
    return _convert(img, name, owned=True)


def is_deep(img: Image.Image) -> bool:
    """More than 8 bits per channel (16-bit, 32-bit integer or float), from the header alone."""
    return img.mode in DEEP_MODES or any(";16" in str(tile.args) for tile in getattr(img, "tile", ()))


def _check_pixels(img: Image.Image, name: str, max_pixels: int, max_deep_pixels: int) -> None:
    """Refuse before decoding: a small file can declare a huge image."""
    w, h = img.size
    deep = is_deep(img)
    limit = min(max_pixels, max_deep_pixels) if deep else max_pixels
    if w * h > limit:
        kind = f"{img.mode} images (more than 8 bits per channel)" if deep else "images"
        raise ImageTooLargeError(
            f"{name}: {w}x{h} is {w * h / 1e6:,.1f} Mpx, more than the {limit / 1e6:,.0f} Mpx limit for {kind}; "
            "resize the image"
        )


def _line(e: BaseException) -> str:
    """An exception's message on one line (the command line prints one line per bad input)."""
    return " ".join(str(e).split())


_MAGIC = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\0", "TIFF"),
    (b"MM\0*", "TIFF"),
    (b"RIFF", "WebP"),
)


def _describe_unknown(head: bytes) -> str:
    """A few words on what an unreadable file holds, so 'notes.jpg' says it is text."""
    head = head[:512]
    if head.startswith(b"%PDF"):  # before the text test: a PDF's first lines are often plain ASCII
        return "a PDF document"
    if b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:  # perhaps a multi-byte character cut at the end of the sample
            try:
                text = head[:-3].decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is not None and text.strip():
            first = text.strip().splitlines()[0][:40]
            return f"a text file (starts {first!r})"
        if text is not None:
            return "a file of blank text"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return f"a damaged {fmt} file (its signature is right but its header is not)"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "a zip archive"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "a HEIC/AVIF photo (convert it to JPEG or PNG first)"
    return f"unrecognised data (starts {head[:8].hex(' ')})"


def _convert(img: Image.Image, name: str, owned: bool = False) -> Image.Image:
    try:
        img.load()
        return _to_rgb(img, owned)
    except ImageError:
        raise
    except Exception as e:  # a lazily opened PIL image whose data is damaged, or an exotic mode
        raise ImageError(
            f"{name}: cannot convert this {img.mode} image to RGB ({type(e).__name__}: {_line(e)})"
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Apply EXIF rotation, flatten transparency onto white, scale 16-bit and float, convert to RGB."""
    return _to_rgb(img, owned=False)


def _to_rgb(img: Image.Image, owned: bool) -> Image.Image:
    """:func:`to_rgb`; ``owned``: ``img`` is ours, closed (its memory freed) once a smaller copy replaces it.

    Deep modes are reduced to 8 bits and transparency flattened a band of rows at a time, so a
    large image never gets a full-size float64 (8 bytes per pixel) or extra RGBA copy.
    """
    try:
        if img.getexif().get(0x0112, 1) in range(2, 9):  # EXIF orientation; exif_transpose copies even without it
            img, owned = _replace(img, ImageOps.exif_transpose(img), owned), True
    except Exception:  # damaged EXIF block: keep the pixels as stored rather than refuse the photo
        pass
    if img.mode in DEEP_MODES:
        img, owned = _replace(img, _deep_to_l(img), owned), True
    if img.mode == "P" and "transparency" in img.info:
        img, owned = _replace(img, img.convert("RGBA"), owned), True
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _replace(img, _flatten(img), owned)
    return img.convert("RGB") if img.mode != "RGB" else img


def _replace(old: Image.Image, new: Image.Image, owned: bool) -> Image.Image:
    if owned and new is not old:
        old.close()  # frees the pixel memory now, not when the last reference goes
    return new


def _bands(img: Image.Image):
    """(top, bottom) row ranges of about ``_CHUNK_PIXELS`` pixels each."""
    w, h = img.size
    step = max(1, _CHUNK_PIXELS // max(w, 1))
    return ((y, min(h, y + step)) for y in range(0, h, step))


def _deep_to_l(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float image as 8-bit greyscale: 0-65535, 0-255 or 0-1 mapped to 0-255."""
    w = img.size[0]
    if img.mode.startswith("I;16"):
        top = 65535.0
    elif img.mode == "I":  # 32-bit integers: 16-bit data (old Pillow's 16-bit PNGs) or 8-bit data
        top = 65535.0 if (img.getextrema()[1] or 0) > 255 else 255.0
    else:  # float: 0-1 or 0-255 data
        peak = max((np.nanmax(np.asarray(img.crop((0, a, w, b))), initial=0) for a, b in _bands(img)), default=0)
        top = 1.0 if peak <= 1.0 else 255.0
    out = np.empty((img.size[1], w), np.uint8)
    for a, b in _bands(img):
        band = np.nan_to_num(np.asarray(img.crop((0, a, w, b)), dtype=np.float64), nan=0.0)
        out[a:b] = np.clip(band / top * 255.0 + 0.5, 0, 255)
    return Image.fromarray(out)


def _flatten(img: Image.Image) -> Image.Image:
    """Transparent pixels onto white, as RGB."""
    w = img.size[0]
    out = Image.new("RGB", img.size, (255, 255, 255))
    for a, b in _bands(img):
        band = img.crop((0, a, w, b)).convert("RGBA")
        background = Image.new("RGBA", band.size, (255, 255, 255, 255))
        out.paste(Image.alpha_composite(background, band).convert("RGB"), (0, a))
    return out


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
    arr = np.ascontiguousarray(_to_uint8(arr, name))
    # RGBA goes through to_rgb like an RGBA file: transparent pixels become white, not black.
    return to_rgb(Image.fromarray(arr))  # uint8 HxW, HxWx3, HxWx4 -> L, RGB, RGBA


def _from_tensor(t: torch.Tensor, name: str) -> Image.Image:
    t = t.detach().cpu()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ImageError(f"{name}: a batch of {t.shape[0]} images; pass one image (CxHxW) at a time")
        t = t[0]
    if t.ndim == 3 and t.shape[0] not in (1, 3, 4):
        hint = "; it looks HxWxC, use t.permute(2, 0, 1)" if t.shape[-1] in (1, 3, 4) else ""
        raise ImageError(f"{name}: shape {tuple(t.shape)} is not CxHxW with C in 1, 3 or 4{hint}")
    if t.ndim not in (2, 3):
        raise ImageError(f"{name}: shape {tuple(t.shape)} is not an image; expected CxHxW or HxW")
    if t.numel() == 0:
        raise ImageError(f"{name}: shape {tuple(t.shape)} has no pixels")
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()  # NumPy has no bfloat16
    if t.is_complex() or t.dtype == torch.bool:
        raise ImageError(f"{name}: dtype {t.dtype} is not supported; use uint8 (0-255) or float (0-1)")
    arr = t.numpy() if t.ndim == 2 else t.permute(1, 2, 0).numpy()
    return _from_array(arr, name)


def _to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)  # round(arr / 257), no float copy
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ImageError(
                f"{name}: {arr.dtype} values span [{lo}, {hi}]; integer images must be in 0-255 (or uint16 0-65535)"
            )
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ImageError(
                f"{name}: contains NaN or Inf values ({bad:,} of {arr.size:,}); clean the array before predicting"
            )
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ImageError(
                f"{name}: float values span [{lo:.3g}, {hi:.3g}]; float images must be in [0, 1] "
                "(un-normalize first, or pass uint8 0-255)"
            )
        return (np.clip(arr, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    raise ImageError(f"{name}: dtype {arr.dtype} is not supported; use uint8 (0-255) or float (0-1)")


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and centre-crop: how a photo becomes a CIFAR-like input.

    The crop is taken before resampling (``box=``), so a very large or very long image never
    makes a large intermediate copy.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, not {size}")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return img.resize(
        (size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side), reducing_gap=3.0
    )
