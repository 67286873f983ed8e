"""Folders in: an ImageFolder tree with clutter loads with ONE warning per split; what cannot load is refused.

Every test uses its own cache folder (TLCOURSE_CACHE_DIR), never the user's.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_folder
from tlcourse import config, data, loaders
from tlcourse.errors import DatasetNotFoundError


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TLCOURSE_DATA_DIR", "/nonexistent-on-purpose")  # a real copy must not stand in


def _cfg(tmp_path, **kw) -> config.Config:
    return config.get_config("smoke", device="cpu", cache_dir=tmp_path / "cache", **kw)


def _clutter(root: Path) -> dict[str, int]:
    """Add what real folders hold besides images; returns how many of each kind per split."""
    photo = io.BytesIO()
    Image.new("RGB", (300, 200), (200, 30, 30)).save(photo, "JPEG")
    for split in data.SPLITS:
        s = root / split
        (s / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (s / "README.md").write_text("my dataset")
        (s / "cat" / "._0.png").write_bytes(b"\0\5\26\7")  # macOS resource fork
        (s / "cat" / "labels.csv").write_text("file,label\n")
        (s / "dog" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (s / "dog" / "more").mkdir()
        (s / "bird").mkdir()  # empty class folder: same in both splits, so it is dropped from both
        (s / "frog" / "empty.png").write_bytes(b"")
        (s / "frog" / "notes.jpg").write_text("not a picture")
        (s / "frog" / "cut.jpg").write_bytes(photo.getvalue()[:300])
        (s / "frog" / "big_photo.JPG").write_bytes(photo.getvalue())  # another size: made 32x32
    return {
        "hidden": 2,
        "not images": 2,
        "subfolders, not searched": 1,
        "files outside class folders": 1,
        "empty class folders": 1,
        "unreadable images": 3,
    }


def _one_warning(record) -> str:
    ours = [w for w in record if issubclass(w.category, UserWarning) and "skipped" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in record]
    return str(ours[0].message)


def test_load_split_skips_clutter_with_one_warning(tmp_path):
    root = write_folder(tmp_path / "ds", per_class=4)
    counts = _clutter(root)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        train = data.load_split("train", root=root, cfg=_cfg(tmp_path), download=False)
    msg = _one_warning(rec)
    assert msg.startswith(f"{root / 'train'}: skipped {sum(counts.values())} entries")
    for kind, n in counts.items():
        assert f"{n} {kind} [" in msg, (kind, msg)
    for name in (
        ".DS_Store",
        "cat/labels.csv",
        "dog/more/",
        "README.md",
        "bird/",
        "frog/empty.png",
        "frog/notes.jpg",
        "frog/cut.jpg",
    ):
        assert name in msg
    assert train.classes == ("cat", "dog", "frog") and len(train) == 13  # 4 + 4 + 4 + big_photo
    assert train.images.shape == (13, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.bincount(train.labels).tolist() == [4, 4, 5]
    data._MEMORY.clear()  # the cached copy gives the same arrays, quietly
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        again = data.load_split("train", root=root, cfg=_cfg(tmp_path), download=False)
    assert torch.equal(again.images, train.images) and not rec


def test_torch_loaders_skip_the_same_and_batch_mixed_sizes(tmp_path):
    root = write_folder(tmp_path / "ds", per_class=4)
    _clutter(root)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        cfg = _cfg(tmp_path, data_dir=root)
        train_loader, test_loader = loaders.make_torch_loaders(cfg)
    msgs = [str(w.message) for w in rec if "skipped" in str(w.message)]
    assert len(msgs) == 2 and all("3 unreadable images" in m for m in msgs)  # one per split
    assert len(test_loader.dataset) == 13 and len(train_loader.dataset) == 13 - 13 // 5  # a fifth validates
    seen = torch.cat([y for _, y in train_loader])  # every file decodes: no batch fails mid-epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast_train = data.load_datasets(cfg).train  # the fast loaders train on the same images
    assert sorted(seen.tolist()) == sorted(fast_train.labels.tolist())
    x, _ = next(iter(test_loader))
    assert x.shape[1:] == (3, 32, 32) and torch.isfinite(x).all()


def test_make_loaders_on_a_custom_folder(tmp_path):
    root = write_folder(tmp_path / "ds", per_class=4)
    _clutter(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_loader, val_loader, _ = loaders.make_loaders(_cfg(tmp_path, data_dir=root))
    assert train_loader.num_samples + val_loader.num_samples == 13  # a fifth of a small split validates
    assert val_loader.num_samples == 13 // 5


def test_mismatched_class_sets_are_refused(tmp_path):
    root = write_folder(tmp_path / "ds", per_class=2)
    (root / "test" / "frog").rename(root / "test" / "toad")
    with pytest.raises(DatasetNotFoundError) as e:
        data.load_split("train", root=root, cfg=_cfg(tmp_path), download=False)
    msg = str(e.value)
    assert "\n" not in msg and "only in train: ['frog']" in msg and "only in test: ['toad']" in msg
    with pytest.raises(DatasetNotFoundError, match="different classes"):
        loaders.make_torch_loaders(_cfg(tmp_path, data_dir=root))


def test_class_empty_in_one_split_only_is_refused(tmp_path):
    root = write_folder(tmp_path / "ds", per_class=2)
    for f in (root / "train" / "dog").iterdir():
        f.unlink()
    with pytest.raises(DatasetNotFoundError, match=r"only in test: \['dog'\]"):
        data.load_split("test", root=root, cfg=_cfg(tmp_path), download=False)


def test_split_where_nothing_decodes_is_refused(tmp_path):
    root = write_folder(tmp_path / "ds", per_class=1)
    for f in (root / "train").glob("*/*.png"):
        f.write_text("oops")
    with pytest.raises(DatasetNotFoundError) as e:
        data.load_split("train", root=root, cfg=_cfg(tmp_path), download=False)
    assert "none of its 3 image files could be read" in str(e.value) and "a text file" in str(e.value)


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda r: None, "no such folder"),
        (lambda r: r.write_text("x"), "is a file, not a folder"),
        (lambda r: (r / "train" / "cat").mkdir(parents=True), "but no test/ folder"),
        (lambda r: (r / "photos").mkdir(parents=True), "holds no train/ and test/ folders (found ['photos'])"),
        (
            lambda r: [(r / s / "cat").mkdir(parents=True) for s in data.SPLITS],
            "none of the 1 class folders holds an image",
        ),
        (lambda r: [(r / s).mkdir(parents=True) for s in data.SPLITS], "no class folders"),
    ],
)
def test_unusable_root_is_refused_never_replaced(tmp_path, monkeypatch, make, phrase):
    """A folder the user names is never silently swapped for another copy or a download."""
    monkeypatch.setattr(data, "download_cifar10", lambda dest: pytest.fail("must not download"))
    root = tmp_path / "mine"
    make(root)
    with pytest.raises(DatasetNotFoundError) as e:
        data.load_split("train", root=root, cfg=_cfg(tmp_path))
    assert phrase in str(e.value) and "\n" not in str(e.value)


def test_half_made_data_dir_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "download_cifar10", lambda dest: pytest.fail("must not download"))
    root = tmp_path / "mine"
    (root / "cifar10" / "train" / "cat").mkdir(parents=True)
    monkeypatch.setenv("TLCOURSE_DATA_DIR", str(root))
    with pytest.raises(DatasetNotFoundError, match="but no test/ folder"):
        loaders.make_loaders(config.get_config("smoke", device="cpu"))


def test_a_clean_folder_loads_without_warnings(tiny_folder, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train = data.load_split("train", root=tiny_folder, cfg=_cfg(tmp_path), download=False)
    assert train.classes == ("cat", "dog", "frog") and len(train) == 12
    assert train.labels.tolist() == sorted(train.labels.tolist())


def test_arrays_from_folder_match_the_files(tmp_path):
    root = write_folder(tmp_path / "ds", per_class=2, seed=3)
    train = data.load_split("train", root=root, cfg=_cfg(tmp_path), download=False)
    first = np.asarray(Image.open(root / "train" / "cat" / "0.png"))
    assert np.array_equal(train.images[0].permute(1, 2, 0).numpy(), first)
