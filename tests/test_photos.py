"""A folder of the learner's photos: layout, a stratified seeded split, decoding once at the images' own
aspect ratio, the transforms, the demo folder, and ``python -m tlcourse train --data-dir`` on such a folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcourse import checkpoint, config, photos
from tlcourse.__main__ import main
from tlcourse.errors import DatasetNotFoundError

SIZES = {"cat": (120, 80), "dog": (60, 90), "frog": (50, 50)}  # (width, height): landscape, portrait, square


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(tmp_path / "cache"))
    photos._MEMORY.clear()


def _cfg(tmp_path, **kw) -> config.Config:
    return config.get_config("smoke", device="cpu", cache_dir=tmp_path / "cache", **kw)


def _write(folder: Path, per_class: int = 10, seed: int = 0) -> Path:
    """``folder/<class>/*.jpg``: random JPEGs, each class at its own size and aspect ratio."""
    rng = np.random.default_rng(seed)
    for c, (w, h) in SIZES.items():
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / c / f"{c}{i}.jpg")
    return folder


def test_split_is_stratified_seeded_and_disjoint():
    labels = torch.tensor([0] * 40 + [1] * 20 + [2] * 7)
    parts = photos.split_indices(labels, 0.15, 0.25, seed=3)
    together = torch.cat(list(parts.values()))
    assert len(together) == len(labels) and len(set(together.tolist())) == len(labels)  # disjoint and complete
    for c, n in ((0, 40), (1, 20), (2, 7)):
        counts = {s: int((labels[idx] == c).sum()) for s, idx in parts.items()}
        assert counts["val"] == max(1, round(0.15 * n)) and counts["test"] == max(1, round(0.25 * n))
        assert counts["train"] == n - counts["val"] - counts["test"]
    again, other = photos.split_indices(labels, 0.15, 0.25, seed=3), photos.split_indices(labels, 0.15, 0.25, seed=4)
    assert all(torch.equal(parts[s], again[s]) for s in parts)
    assert any(not torch.equal(parts[s], other[s]) for s in parts)
    assert len(photos.split_indices(labels, 0.2, 0.0)["test"]) == 0
    with pytest.raises(DatasetNotFoundError, match="too few"):
        photos.split_indices(torch.tensor([0, 0, 1]), 0.2, 0.2)


def test_one_folder_is_split_and_images_keep_their_aspect_at_the_cache_size(tmp_path):
    root = _write(tmp_path / "mine")
    found = photos.load_photos(root, _cfg(tmp_path), cache_size=64)
    assert found.classes == ("cat", "dog", "frog") and "one folder" in found.layout.describe()
    assert found.counts()["val"] == {"cat": 2, "dog": 2, "frog": 2} and found.counts()["train"]["cat"] == 6
    assert not set(found.train.files) & (set(found.val.files) | set(found.test.files))
    for split in (found.train, found.val, found.test):
        for img, path in zip(split.images, split.files):
            w, h = SIZES[path.parent.name]
            assert img.dtype == torch.uint8 and min(img.shape[1:]) == 64
            assert img.shape[2] / img.shape[1] == pytest.approx(w / h, abs=1 / 64)  # width / height kept
    cached = list((tmp_path / "cache" / "photos").glob("*.npz"))
    assert len(cached) == 1
    photos._MEMORY.clear()  # read back from the file: the same pixels
    again = photos.load_photos(root, _cfg(tmp_path), cache_size=64)
    assert all(torch.equal(a, b) for a, b in zip(found.train.images, again.train.images))


def test_split_folders_are_used_and_a_bad_file_is_skipped_with_one_warning(tmp_path):
    root = tmp_path / "mine"
    _write(root / "train")
    _write(root / "test", per_class=3, seed=1)
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning) as record:
        found = photos.load_photos(root, _cfg(tmp_path), cache_size=48)
    ours = [w for w in record if "skipped" in str(w.message)]
    assert len(ours) == 1 and "1 unreadable images [cat/broken.jpg]" in str(ours[0].message)
    assert len(found.test) == 9 and all(p.parent.parent.name == "test" for p in found.test.files)
    assert len(found.train) + len(found.val) == 30 and len(found.val) == 6  # val cut from train/, test not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaders = photos.make_photo_loaders(found, _cfg(tmp_path, batch_size=8), image_size=40)
    x, y = next(iter(loaders.train))
    assert x.shape == (8, 3, 40, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert loaders.val.x.shape == (6, 3, 40, 40) and loaders.test.num_samples == 9
    loaders.train.set_epoch(1)
    first = next(iter(loaders.train))[0]
    loaders.train.set_epoch(1)
    assert torch.equal(first, next(iter(loaders.train))[0])  # crops and flips fixed by (seed, epoch)


@pytest.mark.parametrize(
    "make, phrase",
    [
        (lambda r: None, "no such folder"),
        (lambda r: (r / "test" / "cat").mkdir(parents=True), "no train/ beside it"),
        (lambda r: [(r / "train" / "cat").mkdir(parents=True)], "none of the 1 class folders holds an image"),
        (lambda r: [_write(r / "train"), _write(r / "val"), (r / "val" / "dog").rename(r / "val" / "x")], "val/ has"),
    ],
)
def test_unusable_folders_are_refused_in_one_line(tmp_path, make, phrase):
    root = tmp_path / "mine"
    make(root)
    with pytest.raises(DatasetNotFoundError) as e:
        photos.load_photos(root, _cfg(tmp_path), cache_size=32)
    assert phrase in str(e.value) and "\n" not in str(e.value)


def test_eval_transform_matches_the_predict_time_preprocessing(tmp_path):
    """Short side to S and a centre crop, as ``augment.preprocess`` does with the model file's metadata."""
    from tlcourse import augment

    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 90, 150), dtype=np.uint8))
    ours = photos.eval_transform(48)(img).float()
    found = photos.Photos(*(photos.PhotoSplit([], torch.zeros(0), []),) * 3, ("a", "b"), None, 64)
    meta = photos.model_meta(found, "efficientnet_lite0", 48)
    theirs = augment.load_uint8(img.permute(1, 2, 0).numpy(), meta.source_size)[0].float()
    assert ours.shape == theirs.shape == (3, 48, 48) and (ours - theirs).abs().mean() < 3  # of 255: resampling only


def test_demo_folder_holds_three_cifar_classes_as_small_jpegs(tmp_path, monkeypatch):
    monkeypatch.delenv("TLCOURSE_DATA_DIR", raising=False)  # smoke with no copy found: the sample in the package
    cfg = _cfg(tmp_path)
    root = photos.write_demo_folder(cfg, tmp_path / "demo", per_class=5)
    files = sorted(root.glob("*/*.jpg"))
    assert sorted({f.parent.name for f in files}) == list(photos.DEMO_CLASSES) and len(files) == 15
    assert all(Image.open(f).size == (32, 32) for f in files)
    stamps = [f.stat().st_mtime_ns for f in files]
    photos.write_demo_folder(cfg, root, per_class=5)  # a second call rewrites nothing: the decoded cache stays valid
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert photos.is_photo_folder(root)


@pytest.mark.slow
def test_cli_trains_on_a_photo_folder_and_predicts(tmp_path, capsys):
    root = tmp_path / "mine"
    _write(root / "train", per_class=8)
    out = tmp_path / "m.pt"
    args = ["train", "--data-dir", str(root), "--profile", "smoke", "--image-size", "48", "--epochs", "1"]
    assert main([*args, "--finetune-epochs", "1", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "val and test split from train/" in text and "test accuracy" in text and "on 3 images" in text
    meta, _ = checkpoint.read_model(out)
    assert meta.classes == ("cat", "dog", "frog") and meta.image_size == meta.source_size == 48
    assert main(["predict", str(out), str(root / "train" / "dog" / "dog0.jpg")]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(root / "train" / "dog" / "dog0.jpg")) and "%" in line
