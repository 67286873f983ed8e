"""CIFAR-10: find it, download it, decode it once to uint8 (scanning is in ``folders``), cache it; subsets.

Transforms live in ``augment``, and the loaders built on these arrays in ``loaders``.
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
from typing import NamedTuple

import numpy as np
import torch

from . import checkpoint, folders
from .config import Config, default_cache_dir
from .errors import DatasetNotFoundError

# 100 train + 40 test images per class (tools/make_sample.py): what the smoke profile uses when nothing else is found
SAMPLE_DIR = Path(__file__).resolve().parent / "sample" / "cifar10"
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
    if cfg is not None and cfg.sample_fallback and not (root or cfg.data_dir) and find_cifar10([SAMPLE_DIR]):
        return "folder", SAMPLE_DIR
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
        "`python -m tlcourse prefetch` (the 1,400-image sample shipped with tlcourse serves only the smoke profile)"
    )


def describe_source(cfg: Config) -> str:
    """For the banner: ``sample``, the folder CIFAR-10 was found in, or that it will be downloaded on first use."""
    try:
        _, path = locate_cifar10(cfg=cfg, download=False)
    except DatasetNotFoundError:
        if cfg.data_dir:  # named explicitly but unusable: loading will raise the full message
            return f"{cfg.data_dir} (unusable: see the error when loading)"
        return "not found yet (downloaded on first use)"
    return "sample" if path == SAMPLE_DIR else str(path)


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


# ---------------------------------------------------------------- decoding once (the scanning is in folders)


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
    files, labels, classes, skipped = folders.scan_split(path, split)
    arr, bad = folders.decode_files(files)
    if len(bad) == len(files):
        raise DatasetNotFoundError(
            f"{path / split}: none of its {len(files)} image files could be read "
            f"(e.g. {files[0]}: {folders.image_problem(files[0])})"
        )
    skipped["unreadable images"] = [f"{files[i].parent.name}/{files[i].name}" for i in bad]
    folders.warn_skipped(path / split, skipped)
    keep = np.setdiff1d(np.arange(len(files)), bad)
    return arr.transpose(0, 3, 1, 2), np.asarray(labels, np.int64)[keep], classes


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


def list_image_files(split: str, root=None, cfg: Config | None = None) -> tuple[list[Path], list[int]]:
    """A folder split's readable image files and their labels, for loaders that decode on every access.

    Everything skipped (hidden, not images, unreadable, ...) is named in one warning, as ``load_split`` does.
    """
    _, path = locate_cifar10(root, cfg)
    files, labels, _, skipped = folders.scan_split(path, split)
    with warnings.catch_warnings():  # decoded (and cached) once only to learn whether all files read
        warnings.simplefilter("ignore")
        n_readable = len(load_split(split, root, cfg))
    if n_readable < len(files):  # rare: find the unreadable files so no batch fails mid-epoch
        ok = {i for i, f in enumerate(files) if folders.image_problem(f) == "readable"}
        skipped["unreadable images"] = [f"{f.parent.name}/{f.name}" for i, f in enumerate(files) if i not in ok]
        files, labels = [files[i] for i in sorted(ok)], [labels[i] for i in sorted(ok)]
    folders.warn_skipped(path / split, skipped, stacklevel=4)
    return files, labels


def subset_indices(labels: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor:
    """``n`` indices balanced across classes, the same for the same seed; all when ``n`` is None."""
    if n is None or n >= len(labels):
        return torch.arange(len(labels))
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    classes = labels.unique()
    per, extra = divmod(n, len(classes))
    picked = [perm[labels[perm] == c][: per + (i < extra)] for i, c in enumerate(classes)]
    return torch.cat(picked).sort().values


def holdout_indices(labels: torch.Tensor, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into the training split: ``cfg.val_size`` images balanced across classes held out
    for validation (at most a fifth of a small split), and the profile's training subset drawn from the rest;
    disjoint, the same for the same seed."""
    val = subset_indices(labels, min(cfg.val_size, len(labels) // 5), cfg.seed + 1)
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[val] = False
    rest = rest.nonzero().squeeze(1)
    return rest[subset_indices(labels[rest], cfg.train_size, cfg.seed)], val


class Splits(NamedTuple):
    """Train, validation and test arrays: epochs are chosen on ``val``; ``test`` is for the final figure."""

    train: ImageArrays
    val: ImageArrays
    test: ImageArrays


def load_datasets(cfg: Config, root=None) -> Splits:
    """Train, validation and test arrays at the profile's sizes (the same images for the same seed).

    The validation images come out of CIFAR-10's training split (:func:`holdout_indices`), never the test split.
    """
    train, test = load_split("train", root, cfg), load_split("test", root, cfg)
    train_idx, val_idx = holdout_indices(train.labels, cfg)
    return Splits(
        train.subset(train_idx),
        train.subset(val_idx),
        test.subset(subset_indices(test.labels, cfg.test_size, cfg.seed)),
    )
