"""A learner's own photos (notebook 08): the folder layout checked, a seeded stratified split, every image
decoded once at its own aspect ratio to a cache size and kept on disk, and torchvision v2 transforms at the
backbone's input size. The CIFAR-10 path (``data``, ``loaders``) is separate and unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2
from tqdm.auto import tqdm

from . import checkpoint, config, data, folders, images, models
from .augment import BatchTransform
from .checkpoint import ModelMeta
from .config import Config, default_cache_dir
from .errors import DatasetNotFoundError
from .loaders import TensorLoader

SPLITS = ("train", "val", "test")
DEMO_CLASSES = ("cat", "dog", "horse")
_VERSION = 1
_MEMORY: dict[str, tuple[list[torch.Tensor], list[int]]] = {}


@dataclass(frozen=True)
class Layout:
    """Which splits a photo folder holds as folders of its own; the others are cut from ``train`` (or the whole)."""

    root: Path
    folders: dict[str, Path]  # "train"/"val"/"test" -> folder, or {"all": root} for one folder of class folders

    def describe(self) -> str:
        if "all" in self.folders:
            return f"{self.root}: one folder of class folders; train, val and test are split from it (seeded)"
        missing = [s for s in SPLITS if s not in self.folders]
        cut = f"; {' and '.join(missing)} split from train/ (seeded)" if missing else ""
        return f"{self.root}: {', '.join(s + '/' for s in self.folders)}{cut}"


def check_layout(root: str | Path) -> Layout:
    """``root/train/<class>/`` (+ optional ``val/``, ``test/``) or ``root/<class>/``; one clear error otherwise."""
    root = Path(root).expanduser()
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "no such folder"
        raise DatasetNotFoundError(
            f"{root}: {problem}; expected {root}/train/<class>/<image> or {root}/<class>/<image>"
        )
    present = {s: root / s for s in SPLITS if (root / s).is_dir()}
    if present and "train" not in present:
        raise DatasetNotFoundError(
            f"{root}: has {', '.join(s + '/' for s in present)} but no train/ beside it; "
            f"add {root}/train/<class>/<image>, or put the class folders directly in {root}"
        )
    return Layout(root, present or {"all": root})


def is_photo_folder(root: str | Path) -> bool:
    """Whether the command line reads ``root`` as photos: not a CIFAR-10 copy (batches, or 32×32 images in
    ``train/`` + ``test/`` only), and laid out as :func:`check_layout` expects."""
    root = Path(root).expanduser()
    if not root.is_dir() or (root / "cifar10").is_dir():
        return False
    found = data.find_cifar10([root])
    if found and (
        found[0] == "batches" or (not (root / "val").is_dir() and _first_image_size(root / "train") == (32, 32))
    ):
        return False
    if (root / "train").is_dir():
        return True
    return any(e.is_dir() and not e.name.startswith(".") and _first_image_size(e) for e in root.iterdir())


def _first_image_size(folder: Path) -> tuple[int, int] | None:
    """The pixel size of the first image (by name) in ``folder`` or its first class folder; None when none reads."""
    for path in sorted(folder.rglob("*"))[:200]:
        if path.suffix.lower() in images.IMAGE_SUFFIXES and not path.name.startswith("."):
            try:
                with Image.open(path) as img:
                    return img.size
            except OSError:
                return None
    return None


# ---------------------------------------------------------------- the split


def split_indices(
    labels: torch.Tensor, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Disjoint train/val/test indices with each class in the same proportions (±1 image), the same for a seed.

    A split with a positive fraction gets at least one image of every class; a zero fraction gets none.
    """
    gen = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {s: [] for s in SPLITS}
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val, n_test = (max(1, round(f * len(idx))) if f > 0 else 0 for f in (val_fraction, test_fraction))
        if len(idx) - n_val - n_test < 1:
            raise DatasetNotFoundError(
                f"class {c} has {len(idx)} image(s): too few to give train, val and test one each; "
                "add images to that class folder or provide val/ and test/ folders yourself"
            )
        parts["val"].append(idx[:n_val])
        parts["test"].append(idx[n_val : n_val + n_test])
        parts["train"].append(idx[n_val + n_test :])
    return {s: torch.cat(v).sort().values for s, v in parts.items()}


# ---------------------------------------------------------------- decoding once, at the images' own aspect ratio


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    """Scale ``img`` so that its short side is ``size`` px; the aspect ratio is kept."""
    w, h = img.size
    scale = size / min(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if new == (w, h) else img.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0)


def decode_photos(files: list[Path], cache_size: int) -> tuple[list[np.ndarray], list[int]]:
    """Each readable file as a uint8 (H, W, 3) array with short side ``cache_size``; and the indices that failed."""
    arrays, bad = [], []
    for i, f in enumerate(tqdm(files, desc="decoding photos (once; cached afterwards)", leave=False, mininterval=2)):
        try:
            arrays.append(np.asarray(resize_short_side(images.load_image(f), cache_size)))
        except images.ImageError:
            bad.append(i)
    return arrays, bad


def _cache_key(files: list[Path], cache_size: int) -> str:
    stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha1(repr((stats, cache_size, _VERSION)).encode()).hexdigest()[:16]


def load_decoded(files: list[Path], cache_size: int, cache_dir: Path) -> tuple[list[torch.Tensor], list[int]]:
    """Decoded (3, H, W) uint8 tensors of the readable ``files`` and the indices that failed, cached on disk."""
    key = _cache_key(files, cache_size)
    if key in _MEMORY:
        return _MEMORY[key]
    path = Path(cache_dir) / "photos" / f"{key}.npz"
    try:
        with np.load(path) as z:
            pixels, shapes, bad = z["pixels"], z["shapes"], z["bad"].tolist()
    except (OSError, ValueError, KeyError, EOFError):
        arrays, bad = decode_photos(files, cache_size)
        shapes = np.array([a.shape[:2] for a in arrays], np.int64).reshape(-1, 2)
        pixels = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.uint8)
        checkpoint.atomic_write(path, lambda f: np.savez(f, pixels=pixels, shapes=shapes, bad=np.array(bad, np.int64)))
    ends = np.cumsum(shapes[:, 0] * shapes[:, 1] * 3)
    flat = torch.from_numpy(pixels)
    out = [
        flat[end - h * w * 3 : end].view(h, w, 3).permute(2, 0, 1)
        for (h, w), end in zip(shapes.tolist(), ends.tolist())
    ]
    _MEMORY[key] = (out, bad)
    return out, bad


@dataclass
class PhotoSplit:
    """One split: uint8 (3, H, W) images at the cache size (short side), labels, and the files they came from."""

    images: list[torch.Tensor]
    labels: torch.Tensor
    files: list[Path]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Photos:
    """A photo folder read for training: the three splits, the class names, the layout and the cache size."""

    train: PhotoSplit
    val: PhotoSplit
    test: PhotoSplit
    classes: tuple[str, ...]
    layout: Layout
    cache_size: int

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split: ``{"train": {"cat": 70, ...}, ...}``."""
        return {s: {c: int((getattr(self, s).labels == i).sum()) for i, c in enumerate(self.classes)} for s in SPLITS}


def load_photos(
    root: str | Path,
    cfg: Config | None = None,
    cache_size: int = config.PHOTO_CACHE_SIZE,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> Photos:
    """Check the layout, list the images (clutter skipped with one warning per folder), decode once, split.

    Splits missing as folders are cut from ``train/`` (or from the whole folder), stratified and seeded by
    ``cfg.seed``; the fractions are of each class's images.
    """
    layout = check_layout(root)
    seed, cache_dir = (cfg.seed, cfg.cache_dir) if cfg else (0, default_cache_dir())
    listed = {name: folders.scan_split_dir(folder) for name, folder in layout.folders.items()}
    classes = next(iter(listed.values()))[2]
    for name, (_, _, found, _) in listed.items():
        if found != classes:
            raise DatasetNotFoundError(
                f"{layout.root}: {name}/ has the classes {list(found)} but train/ has {list(classes)}; every split "
                "needs the same class folders, each holding images, so that label indices agree"
            )
    splits = {}
    for name, (files, labels, _, skipped) in listed.items():
        decoded, bad = load_decoded(files, cache_size, cache_dir)
        if len(bad) == len(files):
            raise DatasetNotFoundError(f"{layout.folders[name]}: none of its {len(files)} image files could be read")
        skipped["unreadable images"] = [f"{files[i].parent.name}/{files[i].name}" for i in bad]
        folders.warn_skipped(layout.folders[name], skipped, stacklevel=3)
        keep = sorted(set(range(len(files))) - set(bad))
        splits[name] = PhotoSplit(decoded, torch.tensor([labels[i] for i in keep]), [files[i] for i in keep])
    source = splits.pop("all", None) or splits.pop("train")
    fractions = (0 if "val" in splits else val_fraction, 0 if "test" in splits else test_fraction)
    parts = split_indices(source.labels, *fractions, seed=seed)
    for name, idx in parts.items():
        if name not in splits:
            splits[name] = PhotoSplit(
                [source.images[i] for i in idx], source.labels[idx], [source.files[i] for i in idx]
            )
    return Photos(splits["train"], splits["val"], splits["test"], classes, layout, cache_size)


# ---------------------------------------------------------------- transforms and loaders


def train_transform(image_size: int = config.PHOTO_SIZE, *, scale=(0.08, 1.0), flip: float = 0.5) -> v2.Compose:
    """Training: a random crop of random area and aspect ratio resized to ``image_size``, and a random mirror."""
    return v2.Compose([v2.RandomResizedCrop(image_size, scale=scale, antialias=True), v2.RandomHorizontalFlip(flip)])


def eval_transform(image_size: int = config.PHOTO_SIZE) -> v2.Compose:
    """Evaluation: short side to ``image_size``, centre crop; what ``augment.preprocess`` does at predict time."""
    return v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])


def crop_split(split: PhotoSplit, image_size: int) -> torch.Tensor:
    """The split's images through :func:`eval_transform`, as one uint8 (N, 3, S, S) tensor."""
    tf = eval_transform(image_size)
    return torch.stack([tf(img) for img in split.images])


class PhotoLoader:
    """Shuffled batches of one split, each image through its own random ``transform``, normalized as a batch.

    ``set_epoch(e)`` fixes epoch ``e``'s shuffle and crops from the seed, as ``TensorLoader`` does.
    """

    def __init__(self, split: PhotoSplit, transform, normalize: BatchTransform, batch_size: int, seed: int = 0):
        self.split, self.transform, self.normalize = split, transform, normalize
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.split)

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        order = torch.randperm(len(self.split), generator=gen)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            with torch.random.fork_rng(devices=[]):  # v2 draws from the global generator: seed it per batch
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
                xb = torch.stack([self.transform(self.split.images[i]) for i in idx.tolist()])
            yield self.normalize(xb), self.split.labels[idx]


@dataclass
class PhotoLoaders:
    """``train`` augments every epoch; ``train_clean`` (for cached features), ``val`` and ``test`` are centre crops."""

    train: PhotoLoader
    train_clean: TensorLoader
    val: TensorLoader
    test: TensorLoader


def make_photo_loaders(photos: Photos, cfg: Config, image_size: int = config.PHOTO_SIZE) -> PhotoLoaders:
    """Loaders at ``image_size`` for ``cfg.backbone``: the centre crops are computed once and kept in memory."""
    normalize = BatchTransform(False, image_size, *models.normalization(cfg.backbone))
    kw = dict(batch_size=cfg.batch_size, device=cfg.device, seed=cfg.seed, transform=normalize)

    def clean(split: PhotoSplit, shuffle: bool) -> TensorLoader:
        return TensorLoader(crop_split(split, image_size), split.labels, shuffle=shuffle, **kw)

    return PhotoLoaders(
        PhotoLoader(photos.train, train_transform(image_size), normalize, cfg.batch_size, cfg.seed),
        clean(photos.train, True),
        clean(photos.val, False),
        clean(photos.test, False),
    )


def model_meta(photos: Photos, backbone: str, image_size: int) -> ModelMeta:
    """The model file's metadata: a photo is resized (short side) and centre-cropped to ``image_size`` to predict."""
    return ModelMeta(backbone, photos.classes, image_size, *models.normalization(backbone), source_size=image_size)


# ---------------------------------------------------------------- a demo folder that needs no download


def write_demo_folder(
    cfg: Config, dest: str | Path | None = None, classes=DEMO_CLASSES, per_class: int | None = None
) -> Path:
    """Write CIFAR-10 training images of ``classes`` as JPEG files in ``dest/<class>/`` (one folder, to be split).

    These are 32×32 images: reading them at a photo's cache size upsamples them. ``per_class`` defaults to a
    fifth of the profile's test-set size, and at least 100 (with fewer, a 15% test split cannot tell a model
    from a guesser); as many as the CIFAR-10 copy found holds, if that is fewer.
    """
    per_class = per_class or max(100, (cfg.test_size or 50_000) // 5)
    dest = Path(dest) if dest else Path(cfg.cache_dir) / f"demo-photos-{per_class}"
    train = data.load_split("train", cfg=cfg)
    for name in classes:
        folder = dest / name
        idx = torch.nonzero(train.labels == train.classes.index(name)).flatten()
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(cfg.seed))][:per_class]
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx.sort().values.tolist():
            path = folder / f"{name}_{i:05d}.jpg"
            if not path.exists():  # an unchanged file keeps its decoded cache valid
                Image.fromarray(train.images[i].permute(1, 2, 0).numpy()).save(path, "JPEG", quality=95)
    return dest
