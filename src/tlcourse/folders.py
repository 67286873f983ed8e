"""Class folders on disk: list a split's images (skipping clutter, with one warning), check splits agree, decode.

Used by ``data`` (CIFAR-10 as an ImageFolder tree) and ``photos`` (a learner's own folders).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import config, images
from .errors import DatasetNotFoundError


def scan_split_dir(split_dir: Path) -> tuple[list[Path], list[int], tuple[str, ...], dict[str, list[str]]]:
    """List an ImageFolder split (sorted class folders, image files only) and what it skipped, by kind."""
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


def scan_classes(split_dir: Path) -> tuple[str, ...]:
    """The class folders of a split that hold at least one image (stops at the first image found)."""

    def has_image(folder: Path) -> bool:
        with os.scandir(folder) as it:
            return any(not e.name.startswith(".") and _is_image_entry(e) for e in it)

    return tuple(n for n in _class_dirs(split_dir) if has_image(split_dir / n))


def warn_skipped(split_dir: Path, skipped: dict[str, list[str]], stacklevel: int = 4) -> None:
    """One warning for everything skipped in a split, with counts and the first few names."""
    parts = [f"{len(v)} {k} [{', '.join(v[:3])}{', ...' if len(v) > 3 else ''}]" for k, v in skipped.items() if v]
    if parts:
        total = sum(len(v) for v in skipped.values())
        warnings.warn(f"{split_dir}: skipped {total} entries: {'; '.join(parts)}", UserWarning, stacklevel=stacklevel)


def scan_split(path: Path, split: str) -> tuple[list[Path], list[int], tuple[str, ...], dict[str, list[str]]]:
    """Scan one split of an ImageFolder tree and check that the other split has the same classes."""
    files, labels, classes, skipped = scan_split_dir(path / split)
    other = "test" if split == "train" else "train"
    other_classes = scan_classes(path / other)
    if other_classes != classes:
        only_here = sorted(set(classes) - set(other_classes))
        only_there = sorted(set(other_classes) - set(classes))
        raise DatasetNotFoundError(
            f"{path}: train and test have different classes (with images: only in {split}: {only_here}, "
            f"only in {other}: {only_there}); both splits need the same class folders, each holding images, "
            "so that label indices agree"
        )
    return files, labels, classes, skipped


def decode_files(files: list[Path], size: int = config.IMAGE_SIZE) -> tuple[np.ndarray, list[int]]:
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


def image_problem(path: Path) -> str:
    try:
        images.load_image(path)
    except images.ImageError as e:
        return str(e).removeprefix(f"{path}: ")
    return "readable"
