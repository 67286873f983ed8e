"""CIFAR-10 in, batches out: finding the data, decoding it once, the seed's transforms, loaders.

Two loader families serve the course. ``make_loaders`` (notebooks 00-07) keeps the decoded
uint8 images in one tensor on the device and augments whole batches at once. ``make_torch_loaders``
is the seed's pipeline (a DataLoader applying PIL transforms image by image), kept as the
baseline that notebook 02 teaches from and ``benchmarks/`` measure against.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2
from tqdm.auto import tqdm

from . import checkpoint, images, models
from .config import Config, default_cache_dir
from .errors import DatasetNotFoundError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "test")
_MEMORY: dict[str, ImageArrays] = {}


@dataclass
class ImageArrays:
    """A decoded split: uint8 images (N, 3, H, W), int64 labels (N,), class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> ImageArrays:
        return ImageArrays(self.images[indices], self.labels[indices], self.classes)


# ---------------------------------------------------------------- finding the files


def search_dirs(root: str | Path | None = None, cfg: Config | None = None) -> list[Path]:
    """Folders searched for CIFAR-10, in order: ``root``, ``cfg.data_dir``, the cache."""
    cache = cfg.cache_dir if cfg else default_cache_dir()
    dirs = [Path(root).expanduser()] if root else []
    if cfg and cfg.data_dir:
        dirs.append(Path(cfg.data_dir))
    dirs.append(Path(cache) / "data")
    return dirs


def find_cifar10(dirs: list[Path]) -> tuple[str, Path] | None:
    """The first ``("folder", cifar10/)`` or ``("batches", cifar-10-batches-py/)`` found in ``dirs``."""
    for d in dirs:
        for cand in (d / "cifar10", d):
            if all((cand / s).is_dir() for s in SPLITS):
                return "folder", cand
        for cand in (d / "cifar-10-batches-py", d):
            if (cand / "data_batch_1").is_file() and (cand / "test_batch").is_file():
                return "batches", cand
    return None


def locate_cifar10(root=None, cfg: Config | None = None, download: bool = True) -> tuple[str, Path]:
    """Find CIFAR-10 or download it into the cache; raise one clear error when neither works."""
    dirs = search_dirs(root, cfg)
    # A folder the user named explicitly is never silently replaced by another copy (or a download).
    for d in dirs[:1] if root else dirs[:-1]:
        problem = _folder_problem(d, strict=bool(root))
        if problem:
            raise DatasetNotFoundError(
                f"{d}: {problem}; expected {d}/{{train,test}}/<class>/<image> "
                "(or cifar10/ or cifar-10-batches-py/ inside it)"
            )
    found = find_cifar10(dirs)
    if found:
        return found
    reason = "downloading was not attempted (download=False)"
    if download:
        try:
            return "batches", download_cifar10(dirs[-1])
        except Exception as e:  # urllib, ssl, socket, tarfile errors all mean the same to a learner
            reason = f"the download failed ({type(e).__name__}: {' '.join(str(e).split())})"
    searched = ", ".join(str(d) for d in dirs)
    raise DatasetNotFoundError(
        f"CIFAR-10 not found in {searched} and {reason}. Fix it one of three ways: "
        "set TLCOURSE_DATA_DIR to a folder holding cifar10/{train,test}/<class>/ images or "
        "cifar-10-batches-py/; pass root=... (or --data-dir); or connect to the internet once and run "
        "`python -m tlcourse prefetch`"
    )


def _folder_problem(d: Path, strict: bool) -> str | None:
    """Why ``d`` is not a usable dataset folder; with ``strict=False`` only a half-made ImageFolder counts."""
    if find_cifar10([d]):
        return None
    if not d.exists():
        return "no such folder" if strict else None
    if not d.is_dir():
        return "is a file, not a folder" if strict else None
    for cand in (d / "cifar10", d):
        present = [s for s in SPLITS if (cand / s).is_dir()]
        if len(present) == 1:
            missing = next(s for s in SPLITS if s not in present)
            return f"has {cand / present[0]}/ but no {missing}/ folder beside it"
    if not strict:
        return None
    entries = sorted(e.name for e in os.scandir(d) if not e.name.startswith("."))[:5]
    return f"holds no train/ and test/ folders (found {entries or 'nothing'})"


def download_cifar10(dest: Path) -> Path:
    """Download the official release with torchvision into ``dest``; nothing is left half-written."""
    from torchvision.datasets import CIFAR10

    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
    try:
        CIFAR10(str(tmp), train=True, download=True)
        os.replace(tmp / "cifar-10-batches-py", dest / "cifar-10-batches-py")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created:
            shutil.rmtree(dest, ignore_errors=True)  # only what this call made: leave no empty folder behind
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return dest / "cifar-10-batches-py"


# ---------------------------------------------------------------- decoding once


def scan_folder(split_dir: Path) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """List an ImageFolder split: sorted class folders holding images, image files only.

    Hidden files, non-image files, subfolders and empty class folders are skipped with one warning
    that counts and names them.
    """
    files, labels, classes, skipped = _scan(Path(split_dir))
    _warn_skipped(Path(split_dir), skipped, stacklevel=3)
    return files, labels, classes


def _scan(split_dir: Path) -> tuple[list[Path], list[int], tuple[str, ...], dict[str, list[str]]]:
    skipped: dict[str, list[str]] = {
        "hidden": [],
        "not images": [],
        "subfolders, not searched": [],
        "files outside class folders": [],
        "empty class folders": [],
    }
    class_dirs = _class_dirs(split_dir, skipped)
    found: dict[str, list[Path]] = {}
    for name in class_dirs:
        try:
            entries = sorted(os.scandir(split_dir / name), key=lambda e: e.name)
        except OSError as e:
            raise DatasetNotFoundError(f"{split_dir / name}: cannot list the folder ({e.strerror or e})") from None
        for e in entries:
            rel = f"{name}/{e.name}"
            if e.name.startswith("."):
                skipped["hidden"].append(rel)
            elif _is_image_entry(e):
                found.setdefault(name, []).append(Path(e.path))
            elif e.is_dir():
                skipped["subfolders, not searched"].append(rel + "/")
            else:
                skipped["not images"].append(rel)
        if name not in found:
            skipped["empty class folders"].append(name + "/")
    classes = tuple(n for n in class_dirs if n in found)
    if not classes:
        raise DatasetNotFoundError(
            f"{split_dir}: none of the {len(class_dirs)} class folders holds an image "
            f"({', '.join(sorted(images.IMAGE_SUFFIXES))})"
        )
    files = [f for n in classes for f in found[n]]
    labels = [i for i, n in enumerate(classes) for _ in found[n]]
    return files, labels, classes, skipped


def _class_dirs(split_dir: Path, skipped: dict[str, list[str]] | None = None) -> list[str]:
    try:
        top = sorted(os.scandir(split_dir), key=lambda e: e.name)
    except OSError as e:
        raise DatasetNotFoundError(f"{split_dir}: cannot list the folder ({e.strerror or e})") from None
    if skipped is not None:
        skipped["hidden"] += [e.name for e in top if e.name.startswith(".")]
        skipped["files outside class folders"] += [e.name for e in top if not e.name.startswith(".") and not e.is_dir()]
    names = [e.name for e in top if not e.name.startswith(".") and e.is_dir()]
    if not names:
        raise DatasetNotFoundError(f"{split_dir}: no class folders; expected {split_dir}/<class>/<image>")
    return names


def _is_image_entry(e: os.DirEntry) -> bool:
    return os.path.splitext(e.name)[1].lower() in images.IMAGE_SUFFIXES and e.is_file()


def _scan_classes(split_dir: Path) -> tuple[str, ...]:
    """The class folders of a split that hold at least one image (stops at the first image found)."""

    def has_image(folder: Path) -> bool:
        with os.scandir(folder) as it:
            return any(not e.name.startswith(".") and _is_image_entry(e) for e in it)

    return tuple(n for n in _class_dirs(split_dir) if has_image(split_dir / n))


def _warn_skipped(split_dir: Path, skipped: dict[str, list[str]], stacklevel: int = 4) -> None:
    """One warning for everything skipped in a split, with counts and the first few names."""
    parts = [f"{len(v)} {k} [{', '.join(v[:3])}{', ...' if len(v) > 3 else ''}]" for k, v in skipped.items() if v]
    if parts:
        total = sum(len(v) for v in skipped.values())
        warnings.warn(f"{split_dir}: skipped {total} entries: {'; '.join(parts)}", UserWarning, stacklevel=stacklevel)


def _scan_split(path: Path, split: str) -> tuple[list[Path], list[int], tuple[str, ...], dict[str, list[str]]]:
    """Scan one split of an ImageFolder tree and check that the other split has the same classes."""
    files, labels, classes, skipped = _scan(path / split)
    other = "test" if split == "train" else "train"
    other_classes = _scan_classes(path / other)
    if other_classes != classes:
        only_here = sorted(set(classes) - set(other_classes))
        only_there = sorted(set(other_classes) - set(classes))
        raise DatasetNotFoundError(
            f"{path}: train and test have different classes (with images: only in {split}: {only_here}, "
            f"only in {other}: {only_there}); both splits need the same class folders, each holding images, "
            "so that label indices agree"
        )
    return files, labels, classes, skipped


def decode_files(files: list[Path], size: int = 32) -> tuple[np.ndarray, list[int]]:
    """Decode images to a uint8 (N, size, size, 3) array; returns it and the indices that failed."""

    def read(path: Path) -> np.ndarray | None:
        try:
            img = images.load_image(path)
        except images.ImageError:
            return None
        return np.asarray(img if img.size == (size, size) else images.fit_square(img, size))

    arrays = [
        read(f) for f in tqdm(files, desc="decoding images (once; cached afterwards)", leave=False, mininterval=2)
    ]
    bad = [i for i, a in enumerate(arrays) if a is None]
    good = [a for a in arrays if a is not None]
    return (np.stack(good) if good else np.zeros((0, size, size, 3), np.uint8)), bad


def _read_batches(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for n in names:
        with open(path / n, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # noqa: S301 - the official CIFAR-10 format
        xs.append(np.asarray(entry["data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry["labels"], np.int64))
    return np.concatenate(xs), np.concatenate(ys), CLASSES


def _decode_split(kind: str, path: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if kind == "batches":
        return _read_batches(path, split)
    files, labels, classes, skipped = _scan_split(path, split)
    arr, bad = decode_files(files)
    if len(bad) == len(files):
        raise DatasetNotFoundError(
            f"{path / split}: none of its {len(files)} image files could be read "
            f"(e.g. {files[0]}: {_image_problem(files[0])})"
        )
    skipped["unreadable images"] = [f"{files[i].parent.name}/{files[i].name}" for i in bad]
    _warn_skipped(path / split, skipped)
    keep = np.setdiff1d(np.arange(len(files)), bad)
    return arr.transpose(0, 3, 1, 2), np.asarray(labels, np.int64)[keep], classes


def _image_problem(path: Path) -> str:
    try:
        images.load_image(path)
    except images.ImageError as e:
        return str(e).removeprefix(f"{path}: ")
    return "readable"


def _cache_key(kind: str, path: Path, split: str) -> str:
    if kind == "folder":
        # A folder's mtime changes when files are added, removed or replaced by rename.
        counts = [
            (e.name, len(os.listdir(e.path)), e.stat().st_mtime_ns)
            for e in sorted(os.scandir(path / split), key=lambda e: e.name)
            if e.is_dir()
        ]
    else:
        counts = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.iterdir())]
    return hashlib.sha1(repr((str(path.resolve()), split, counts, 1)).encode()).hexdigest()[:16]


def load_split(split: str, root=None, cfg: Config | None = None, download: bool = True) -> ImageArrays:
    """Decode a split once; later calls read a cached array (about 0.1 s) or memory (instant)."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    kind, path = locate_cifar10(root, cfg, download)
    key = _cache_key(kind, path, split)
    if key in _MEMORY:
        return _MEMORY[key]
    stem = Path(cfg.cache_dir if cfg else default_cache_dir()) / "arrays" / f"{split}-{key}"
    files = {name: stem.with_name(f"{stem.name}.{name}.npy") for name in ("labels", "classes", "images")}
    try:
        # Copy-on-write memory map: opening is instant, pages are read as they are first used.
        x = np.load(files["images"], mmap_mode="c")
        y = np.load(files["labels"])
        classes = tuple(str(c) for c in np.load(files["classes"]))
    except (OSError, ValueError, EOFError):
        x, y, classes = _decode_split(kind, path, split)
        for name, arr in (("labels", y), ("classes", np.array(classes)), ("images", x)):
            _save_npy(files[name], arr)  # images last: its presence marks a complete cache
    out = ImageArrays(torch.from_numpy(x), torch.from_numpy(y), classes)
    _MEMORY[key] = out
    return out


def _save_npy(path: Path, arr: np.ndarray) -> None:
    checkpoint.atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(arr)))


def subset_indices(labels: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor:
    """``n`` indices balanced across classes, the same for the same seed; all when ``n`` is None."""
    if n is None or n >= len(labels):
        return torch.arange(len(labels))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    classes = labels.unique()
    per, extra = divmod(n, len(classes))
    picked = [perm[labels[perm] == c][: per + (i < extra)] for i, c in enumerate(classes)]
    return torch.cat(picked).sort().values


def load_datasets(cfg: Config, root=None) -> tuple[ImageArrays, ImageArrays]:
    """Train and test arrays, subset to the profile's sizes (the same images for the same seed)."""
    train, test = load_split("train", root, cfg), load_split("test", root, cfg)
    return (
        train.subset(subset_indices(train.labels, cfg.train_size, cfg.seed)),
        test.subset(subset_indices(test.labels, cfg.test_size, cfg.seed)),
    )


# ---------------------------------------------------------------- the seed's transforms


def seed_transform(train: bool, image_size: int = 32, mean=models.IMAGENET_MEAN, std=models.IMAGENET_STD) -> v2.Compose:
    """The seed's per-image transforms (PIL or tensor in), plus an optional upsampling resize."""
    steps = []
    if train:  # on a PIL image these run in PIL, exactly as in the seed
        steps += [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ColorJitter(0.2, 0.2, 0.2)]
    if image_size != 32:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class BatchTransform(torch.nn.Module):
    """The seed's transforms on a whole uint8 batch at once, with per-sample randomness.

    Same distribution as :func:`seed_transform`: crop offsets uniform in 0..2*padding, flip with
    p=0.5, brightness/contrast/saturation factors uniform in [1-j, 1+j] applied in a random order.
    """

    def __init__(
        self,
        train: bool,
        image_size: int = 32,
        mean=models.IMAGENET_MEAN,
        std=models.IMAGENET_STD,
        padding: int = 4,
        jitter: float = 0.2,
    ):
        super().__init__()
        self.train_mode, self.image_size, self.padding, self.jitter = train, image_size, padding, jitter
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"train={self.train_mode}, image_size={self.image_size}, padding={self.padding}, "
            f"jitter={self.jitter}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
        )

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.float().div_(255)
        if self.train_mode:
            x = random_crop(x, self.padding, generator)
            x = random_flip(x, generator)
            x = color_jitter(x, self.jitter, generator)
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):  # non-square inputs too
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def random_crop(x: torch.Tensor, padding: int, generator=None) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and cut it back at its own random offset."""
    n, _, h, w = x.shape
    xp = F.pad(x, (padding,) * 4)
    oy, ox = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return xp[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(x.shape[1], device=x.device)[None, :, None, None],
        rows,
        cols,
    ]


def random_flip(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Mirror each image left-right with probability 0.5."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    return 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def adjust(x: torch.Tensor, op: int, factor: torch.Tensor) -> torch.Tensor:
    """Brightness (op 0), contrast (1) or saturation (2) by a per-sample factor, as torchvision does."""
    f = factor[:, None, None, None]
    if op == 0:
        other = torch.zeros_like(x)
    elif op == 1:
        other = _grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    else:
        other = _grayscale(x)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def color_jitter(x: torch.Tensor, strength: float, generator=None) -> torch.Tensor:
    """Brightness, contrast and saturation jitter in a random order per sample.

    Each step rounds down to 8 bits as Pillow (and torchvision on uint8) do: three truncations darken
    the seed's images by about 1.5/255 on average, and the batched path keeps that distribution.
    """
    n = len(x)
    factors = torch.empty(3, n, device=x.device).uniform_(1 - strength, 1 + strength, generator=generator)
    order = torch.rand(n, 3, generator=generator, device=x.device).argsort(dim=1)
    for pos in range(3):
        for op in range(3):
            sel = (order[:, pos] == op)[:, None, None, None]
            x = torch.where(sel, adjust(x, op, factors[op]), x)
        x = torch.floor(x * 255 + 1e-3).div_(255)
    return x


# ---------------------------------------------------------------- loaders


class TensorLoader:
    """Batches drawn from tensors already in memory (on the device), transformed a batch at a time.

    Iterating twice gives two different shuffles; ``set_epoch(e)`` fixes the shuffle and the
    augmentation of epoch ``e`` from the seed, which makes resumed training exact.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int = 128,
        shuffle: bool = False,
        transform=None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.transform = batch_size, shuffle, transform
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0
        if transform is not None and isinstance(transform, torch.nn.Module):
            transform.to(self.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def __iter__(self):
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        n = len(self.y)
        order = torch.randperm(n, generator=gen, device=self.device) if self.shuffle else None
        for b in range(len(self)):
            idx = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if order is not None:
                idx = order[idx]
            xb = self.x[idx]
            yield (self.transform(xb, generator=gen) if self.transform is not None else xb), self.y[idx]


def make_loaders(cfg: Config, augment: bool = True, root=None) -> tuple[TensorLoader, TensorLoader]:
    """The course's fast loaders: decoded images on ``cfg.device``, the seed's augmentation batched."""
    train, test = load_datasets(cfg, root)
    mean, std = models.normalization(cfg.backbone)
    kw = dict(batch_size=cfg.batch_size, device=cfg.device, seed=cfg.seed)
    return (
        TensorLoader(
            train.images, train.labels, shuffle=True, **kw, transform=BatchTransform(augment, cfg.image_size, mean, std)
        ),
        TensorLoader(
            test.images, test.labels, shuffle=False, **kw, transform=BatchTransform(False, cfg.image_size, mean, std)
        ),
    )


class ArrayDataset(Dataset):
    """Images from a uint8 array, one PIL image per item, then a per-image transform."""

    def __init__(self, arrays: ImageArrays, transform=None):
        self.arrays, self.transform = arrays, transform

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.arrays.images[i].permute(1, 2, 0).numpy())
        return (self.transform(img) if self.transform else img), int(self.arrays.labels[i])


class FileDataset(Dataset):
    """Decode an image file on every access, as the seed's ImageFolder does."""

    def __init__(self, files: list[Path], labels: list[int], transform=None):
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        img = images.load_image(self.files[i])
        if img.size != (32, 32):  # any photo becomes a CIFAR-sized input, as decode_files does
            img = images.fit_square(img, 32)
        return (self.transform(img) if self.transform else img), self.labels[i]


def make_torch_loaders(cfg: Config, root=None, augment: bool = True) -> tuple[DataLoader, DataLoader]:
    """The seed's pipeline: a DataLoader decoding files (or arrays) and transforming per image."""
    mean, std = models.normalization(cfg.backbone)
    kind, path = locate_cifar10(root, cfg)
    loaders = []
    for split, n, train in (("train", cfg.train_size, True), ("test", cfg.test_size, False)):
        tf = seed_transform(train and augment, cfg.image_size, mean, std)
        if kind == "folder":
            files, labels, _, skipped = _scan_split(path, split)
            with warnings.catch_warnings():  # decoded (and cached) once only to learn whether all files read
                warnings.simplefilter("ignore")
                n_readable = len(load_split(split, root, cfg))
            if n_readable < len(files):  # rare: find the unreadable files so no batch fails mid-epoch
                ok = {i for i, f in enumerate(files) if _image_problem(f) == "readable"}
                skipped["unreadable images"] = [f"{f.parent.name}/{f.name}" for i, f in enumerate(files) if i not in ok]
                files, labels = [files[i] for i in sorted(ok)], [labels[i] for i in sorted(ok)]
            _warn_skipped(path / split, skipped, stacklevel=3)
            idx = subset_indices(torch.tensor(labels), n, cfg.seed).tolist()
            ds = FileDataset([files[i] for i in idx], [labels[i] for i in idx], tf)
        else:
            arr = load_split(split, root, cfg)
            ds = ArrayDataset(arr.subset(subset_indices(arr.labels, n, cfg.seed)), tf)
        loaders.append(
            DataLoader(
                ds,
                batch_size=cfg.batch_size,
                shuffle=train,
                num_workers=cfg.num_workers,
                pin_memory=cfg.device == "cuda",
                persistent_workers=cfg.num_workers > 0,
                generator=torch.Generator().manual_seed(cfg.seed) if train else None,
            )
        )
    return loaders[0], loaders[1]
