"""Images in: every common form converts to RGB; everything else is refused in one line naming the input.

The same inputs go through images.load_image, ImageClassifier.predict and `python -m tlcourse predict`.
All files are generated here; none are committed.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tlcourse import augment, data, images, loaders, models
from tlcourse.__main__ import main
from tlcourse.classifier import ImageClassifier
from tlcourse.errors import ImageError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
CLASSES = ("cat", "dog", "frog")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _halves(w: int, h: int, left=RED, right=BLUE) -> Image.Image:
    img = Image.new("RGB", (w, h), left)
    img.paste(right, (w // 2, 0, w, h))
    return img


def _close(pixel, colour, tol=40) -> bool:
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, colour, strict=True))


def make_good_images(d: Path) -> dict[str, tuple[Path, tuple[int, int], callable]]:
    """name -> (file, expected RGB size, check(array) on the converted pixels)."""
    d.mkdir(parents=True, exist_ok=True)
    out = {}

    def add(name, img_or_bytes, size, check=lambda a: True, **save):
        p = d / name
        if isinstance(img_or_bytes, bytes):
            p.write_bytes(img_or_bytes)
        else:
            img_or_bytes.save(p, **save)
        out[name] = (p, size, check)

    add("grayscale.png", Image.new("L", (20, 10), 77), (20, 10), lambda a: (a == 77).all())
    add("bilevel.png", Image.new("1", (8, 8), 1), (8, 8), lambda a: (a == 255).all())
    add("rgba_transparent.png", Image.new("RGBA", (12, 9), (255, 0, 0, 0)), (12, 9), lambda a: (a == 255).all())
    semi = Image.new("RGBA", (12, 9), (0, 0, 0, 128))
    add("rgba_half.png", semi, (12, 9), lambda a: (abs(a.astype(int) - 127) <= 1).all())
    add("la_transparent.png", Image.new("LA", (7, 7), (0, 0)), (7, 7), lambda a: (a == 255).all())
    pal = _halves(16, 8).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    add("palette.png", pal, (16, 8), lambda a: _close(a[4, 2], RED, 0) and _close(a[4, 12], BLUE, 0))
    transparent_index = pal.getpixel((0, 0))  # the red half becomes transparent -> white
    add(
        "palette_transparent.png",
        pal,
        (16, 8),
        lambda a: _close(a[4, 2], WHITE, 0) and _close(a[4, 12], BLUE, 0),
        transparency=transparent_index,
    )
    add("palette_transparent.gif", pal, (16, 8), lambda a: _close(a[4, 2], WHITE, 0), transparency=transparent_index)
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red in CMYK
    add("cmyk.jpg", cmyk, (16, 16), lambda a: _close(a[8, 8], RED, 60), quality=95)
    gray16 = Image.fromarray(np.array([[0, 32768, 65535]] * 2, np.uint16))
    add("gray16.png", gray16, (3, 2), lambda a: a[0, :, 0].tolist() == [0, 128, 255])
    rgb16 = np.zeros((2, 3, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1] = 65535, 32896
    add("rgb16.png", _png16_rgb(rgb16), (3, 2), lambda a: a[0, 0].tolist() == [255, 128, 0])
    # EXIF orientation 6 = "rotate 90 degrees clockwise to display": 40x20 stored -> 20x40 shown,
    # the stored left (red) half ends up on top.
    exif = Image.Exif()
    exif[0x0112] = 6
    add(
        "exif_rotated.jpg",
        _halves(40, 20),
        (20, 40),
        lambda a: _close(a[5, 10], RED) and _close(a[35, 10], BLUE),
        exif=exif,
        quality=95,
    )
    add(
        "photo.webp",
        _halves(30, 20),
        (30, 20),
        lambda a: _close(a[10, 3], RED) and _close(a[10, 27], BLUE),
        lossless=True,
    )
    add("photo.bmp", _halves(30, 20), (30, 20), lambda a: _close(a[10, 3], RED, 0))
    add("photo.tiff", _halves(30, 20), (30, 20), lambda a: _close(a[10, 27], BLUE, 0))
    add("float.tiff", Image.fromarray(np.full((5, 6), 0.5, np.float32)), (6, 5), lambda a: (a == 128).all())
    frames = [Image.new("RGB", (10, 10), RED), Image.new("RGB", (10, 10), BLUE)]
    anim = io.BytesIO()
    frames[0].save(anim, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated.gif", anim.getvalue(), (10, 10), lambda a: _close(a[5, 5], RED, 0))
    add("tiny.png", Image.new("RGB", (1, 1), (1, 2, 3)), (1, 1), lambda a: a[0, 0].tolist() == [1, 2, 3])
    add("UPPER.JPG", _halves(30, 20), (30, 20))
    return out


def make_bad_files(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the one-line refusal must contain)."""
    d.mkdir(parents=True, exist_ok=True)
    photo = io.BytesIO()
    _halves(300, 200).save(photo, "JPEG")
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(png, "PNG")
    files = {
        "empty.jpg": (b"", "empty (0 bytes)"),
        "truncated.jpg": (photo.getvalue()[: len(photo.getvalue()) // 2], "truncated"),
        "truncated.png": (png.getvalue()[: len(png.getvalue()) // 2], "truncated"),
        "corrupt.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "damaged PNG"),
        "notes.jpg": (b"shopping list: milk, eggs\n", "a text file"),
    }
    out = {}
    for name, (content, phrase) in files.items():
        (d / name).write_bytes(content)
        out[name] = (d / name, phrase)
    (d / "folder.png").mkdir()
    out["folder.png"] = (d / "folder.png", "is a folder")
    out["missing.png"] = (d / "missing.png", "no such image file")
    return out


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_good_images(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return make_bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A 3-class ResNet-18 model file with random weights (pretrained=False: no download, fast)."""
    torch.manual_seed(0)
    clf = ImageClassifier("resnet18", 3, classes=CLASSES, pretrained=False, device="cpu")
    return clf.save_model(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def clf(tiny_ckpt):
    return ImageClassifier.from_checkpoint(tiny_ckpt, device="cpu")


def _one_line_naming(err: Exception, name: str) -> str:
    msg = str(err)
    assert "\n" not in msg and msg.startswith(name), msg
    return msg


# ---------------------------------------------------------------- accepted forms


GOOD_NAMES = [
    "grayscale.png",
    "bilevel.png",
    "rgba_transparent.png",
    "rgba_half.png",
    "la_transparent.png",
    "palette.png",
    "palette_transparent.png",
    "palette_transparent.gif",
    "cmyk.jpg",
    "gray16.png",
    "rgb16.png",
    "exif_rotated.jpg",
    "photo.webp",
    "photo.bmp",
    "photo.tiff",
    "float.tiff",
    "animated.gif",
    "tiny.png",
    "UPPER.JPG",
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_common_forms_are_converted(good, clf, name):
    path, size, check = good[name]
    img = images.load_image(path)
    assert img.mode == "RGB" and img.size == size
    assert check(np.asarray(img)), np.asarray(img)[:2, :2]
    pred = clf.predict(path)  # the same file through the classifier: as if given the decoded image
    assert pred.label in CLASSES and pred.probabilities == pytest.approx(clf.predict(img).probabilities, abs=1e-6)


def test_source_forms_agree(good):
    """A path, its bytes, an open file and the PIL image all give the same pixels."""
    path = good["exif_rotated.jpg"][0]
    ref = np.asarray(images.load_image(path))
    with open(path, "rb") as f:
        from_file = images.load_image(f)
    for other in (
        images.load_image(path.read_bytes()),
        from_file,
        images.load_image(Image.open(path)),
        images.load_image(str(path)),
    ):
        assert np.array_equal(np.asarray(other), ref)


def test_very_large_photo(tmp_path, clf):
    path = tmp_path / "huge.jpg"
    _halves(6000, 4000).save(path, quality=80)
    img = images.load_image(path)
    assert img.size == (6000, 4000)
    small = images.fit_square(img, 32)
    a = np.asarray(small)
    assert small.size == (32, 32) and _close(a[16, 2], RED) and _close(a[16, 29], BLUE)
    assert clf.predict(path).label in CLASSES


def test_decompression_bomb_is_refused(tmp_path):
    """A PNG header claiming 30000 x 30000 pixels is refused before any memory is spent."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    p = tmp_path / "bomb.png"
    p.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageError) as e:
        images.load_image(p)
    assert "too large" in _one_line_naming(e.value, str(p))


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((5, 7), np.uint8),
        np.zeros((5, 7, 1), np.uint8),
        np.zeros((5, 7, 3), np.uint8),
        np.zeros((5, 7, 4), np.uint8),
        np.full((5, 7, 3), 65535, np.uint16),
        np.ones((5, 7, 3), np.float64),
        np.full((5, 7, 3), 200, np.int64),
        np.ones((5, 7, 3), np.float16),
    ],
)
def test_arrays_in_every_supported_dtype(arr):
    img = images.load_image(arr)
    assert img.mode == "RGB" and img.size == (7, 5)


@pytest.mark.parametrize(
    "t",
    [
        torch.rand(3, 5, 7),
        torch.rand(1, 5, 7),
        torch.rand(1, 3, 5, 7),
        torch.rand(5, 7),
        torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8),
        torch.randint(0, 256, (3, 5, 7)),  # int64
        torch.rand(3, 5, 7, dtype=torch.bfloat16),
        torch.rand(4, 5, 7),
    ],
)
def test_tensors_in_every_supported_dtype(t):
    img = images.load_image(t)
    assert img.mode == "RGB" and img.size == (7, 5)


def test_transparent_array_becomes_white_like_a_file():
    rgba = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent
    assert (np.asarray(images.load_image(rgba)) == 255).all()


def test_loaders_convert_every_form(good, tmp_path, monkeypatch):
    """The same files in an ImageFolder tree: all decoded by load_split and by the seed's DataLoader."""
    import shutil
    import warnings

    from tlcourse import config

    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "forms"
    for split in data.SPLITS:
        for i, name in enumerate(GOOD_NAMES):
            d = root / split / ("even" if i % 2 == 0 else "odd")
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(good[name][0], d / name)
    cfg = config.get_config("smoke", device="cpu", data_dir=root, cache_dir=tmp_path / "cache", batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped, nothing to warn about
        arrays = data.load_split("train", cfg=cfg)
        _, test_loader = loaders.make_torch_loaders(cfg)  # the test split: no validation slice held out
    assert len(arrays) == len(GOOD_NAMES) and arrays.images.shape[1:] == (3, 32, 32)
    x, y = next(iter(test_loader))
    assert x.shape == (len(GOOD_NAMES), 3, 32, 32) and torch.isfinite(x).all()


# ---------------------------------------------------------------- refused inputs


@pytest.mark.parametrize(
    "name", ["empty.jpg", "truncated.jpg", "truncated.png", "corrupt.png", "notes.jpg", "folder.png", "missing.png"]
)
def test_bad_files_are_refused_in_one_line(bad, clf, name):
    path, phrase = bad[name]
    for call in (images.load_image, clf.predict):
        with pytest.raises(ImageError) as e:
            call(path)
        assert phrase in _one_line_naming(e.value, str(path))


@pytest.mark.parametrize(
    "value, phrase",
    [
        (np.zeros((3, 32, 32), np.uint8), "channels-first"),
        (np.zeros((32, 32, 2), np.uint8), "not an image"),
        (np.zeros(32, np.uint8), "not an image"),
        (np.zeros((0, 32, 3), np.uint8), "no pixels"),
        (np.zeros((8, 8, 3), bool), "dtype bool"),
        (np.zeros((8, 8, 3), np.complex64), "dtype complex64"),
        (np.full((8, 8, 3), 255.0), "float values span [255, 255]"),
        (np.full((8, 8, 3), 300, np.int32), "values span [300, 300]"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN or Inf"),
        (torch.zeros(2, 3, 8, 8), "a batch of 2 images"),
        (torch.zeros(32, 32, 3), "permute(2, 0, 1)"),
        (torch.zeros(3, 4, 4, 4, 4), "not an image"),
        (torch.zeros(3, 8, 8, dtype=torch.bool), "dtype torch.bool"),
        (torch.randn(3, 8, 8) * 2 - 1, "un-normalize first"),
        (torch.full((3, 8, 8), float("inf")), "NaN or Inf"),
        (None, "cannot read an image from a NoneType"),
        ([[0, 1], [2, 3]], "cannot read an image from a list"),
        ("", "the path is empty"),
        ("https://example.com/cat.jpg", "download the image first"),
    ],
)
def test_bad_values_are_refused_in_one_line(clf, value, phrase):
    for call in (images.load_image, clf.predict):
        with pytest.raises(ImageError) as e:
            call(value)
        msg = str(e.value)
        assert "\n" not in msg and phrase in msg, msg


def test_unreadable_file_is_refused(tmp_path):
    p = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(p)
    p.chmod(0)
    try:
        if p.stat().st_mode & 0o777 == 0 and not _can_read(p):
            with pytest.raises(ImageError, match="cannot be read"):
                images.load_image(p)
        else:
            pytest.skip("running as root: permissions do not stop reading")
    finally:
        p.chmod(0o644)


def _can_read(p: Path) -> bool:
    try:
        p.read_bytes()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- the command line


def test_cli_predict_reports_each_bad_file_in_one_line(tiny_ckpt, good, bad, capsys):
    ok = [str(good[n][0]) for n in ("cmyk.jpg", "animated.gif", "gray16.png")]
    refused = [str(bad[n][0]) for n in ("empty.jpg", "notes.jpg", "truncated.png", "folder.png", "missing.png")]
    rc = main(["predict", str(tiny_ckpt), *ok, *refused])
    out, err = capsys.readouterr()
    assert rc == 2  # some inputs failed
    assert [line.split(": ")[0] for line in out.splitlines()] == ok
    lines = err.splitlines()
    assert len(lines) == len(refused) and all(
        line.startswith(f"error: {p}: ") for line, p in zip(lines, refused, strict=True)
    )
    assert main(["predict", str(tiny_ckpt), *ok]) == 0


@pytest.mark.slow
def test_cli_predict_in_a_subprocess_has_no_traceback(tiny_ckpt, good, bad):
    args = [str(good["exif_rotated.jpg"][0]), str(bad["truncated.jpg"][0]), str(bad["missing.png"][0])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "tlcourse", "predict", str(tiny_ckpt), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.startswith(args[0] + ": ") and r.stdout.count("\n") == 1
    assert r.stderr.splitlines() == [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(r.stderr.splitlines()) == 2 and "truncated" in r.stderr and "no such image file" in r.stderr


# ---------------------------------------------------------------- invariants over random inputs


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F"]


@st.composite
def pil_images(draw):
    w, h = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    mode = draw(st.sampled_from(MODES))
    seed = draw(st.integers(0, 2**16))
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if mode == "I;16":
        return Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    if mode == "F":
        return Image.fromarray(rgb[..., 0].astype(np.float32) / 255)
    if mode == "I":
        return Image.fromarray(rgb[..., 0].astype(np.int32) * 200)
    return Image.fromarray(rgb).convert(mode)


@given(img=pil_images(), size=st.integers(1, 96))
@settings(max_examples=60, deadline=None)
def test_load_and_fit_square_give_rgb_uint8_squares(img, size):
    rgb = images.load_image(img)
    assert rgb.mode == "RGB" and rgb.size == img.size
    sq = images.fit_square(rgb, size)
    a = np.asarray(sq)
    assert sq.size == (size, size) and a.shape == (size, size, 3) and a.dtype == np.uint8


@given(img=pil_images(), fmt=st.sampled_from(["PNG", "TIFF", "BMP", "GIF", "WEBP", "JPEG"]))
@settings(max_examples=40, deadline=None)
def test_files_in_any_mode_load_as_rgb(img, fmt):
    buf = io.BytesIO()
    try:
        img.save(buf, fmt)
    except (OSError, ValueError, KeyError):  # this format cannot store this mode: nothing to read back
        return
    rgb = images.load_image(buf.getvalue(), name=f"test.{fmt.lower()}")
    assert rgb.mode == "RGB" and rgb.size == img.size


def _bounds(mean, std):
    lo = torch.tensor([(0 - m) / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
    hi = torch.tensor([(1 - m) / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)
    return lo - 1e-4, hi + 1e-4


@given(
    n=st.integers(1, 4),
    h=st.integers(1, 48),
    w=st.integers(1, 48),
    out=st.integers(4, 72),
    train=st.booleans(),
    backbone=st.sampled_from(list(models.BACKBONES)),
    seed=st.integers(0, 1000),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_batch_transform_shape_dtype_range(n, h, w, out, train, backbone, seed):
    mean, std = models.normalization(backbone)
    x = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    y = augment.BatchTransform(train, out, mean, std)(x, generator=torch.Generator().manual_seed(seed))
    lo, hi = _bounds(mean, std)
    assert y.shape == (n, 3, out, out) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and (y >= lo).all() and (y <= hi).all()


@given(img=pil_images(), out=st.integers(8, 72), train=st.booleans(), seed=st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_reference_transform_shape_dtype_range(img, out, train, seed):
    mean, std = models.normalization("resnet18")
    x = images.fit_square(images.load_image(img), 32)  # what FileDataset hands the reference transform
    torch.manual_seed(seed)
    y = augment.reference_transform(train, out, mean, std)(x)
    lo, hi = _bounds(mean, std)
    assert y.shape == (3, out, out) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and (y >= lo[0]).all() and (y <= hi[0]).all()
