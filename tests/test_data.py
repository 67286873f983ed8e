import pickle

import numpy as np
import pytest
import torch

from tlcourse import config, data


def test_classes_match_torchvision_order():
    # torchvision reads the names from batches.meta; this is its order
    assert list(data.CLASSES) == sorted(data.CLASSES)  # ImageFolder sorts class folders
    assert data.CLASSES == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_subset_is_balanced_and_deterministic():
    labels = torch.arange(10).repeat(100)
    a, b = data.subset_indices(labels, 95, seed=1), data.subset_indices(labels, 95, seed=1)
    assert torch.equal(a, b) and len(a) == 95
    counts = torch.bincount(labels[a], minlength=10)
    assert counts.max() - counts.min() <= 1
    assert not torch.equal(a, data.subset_indices(labels, 95, seed=2))
    assert len(data.subset_indices(labels, None)) == 1000


def test_reads_torchvisions_batches_format(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}, f)
    cfg = config.get_config("smoke", device="cpu", cache_dir=tmp_path / "cache")
    train = data.load_split("train", root=tmp_path, cfg=cfg, download=False)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.classes == data.CLASSES and train.labels.tolist()[:4] == [0, 1, 2, 3]


def test_image_folder_round_trip(tiny_folder, tmp_path):
    cfg = config.get_config("smoke", device="cpu", cache_dir=tmp_path / "cache")
    train = data.load_split("train", root=tiny_folder, cfg=cfg, download=False)
    assert train.classes == ("cat", "dog", "frog") and len(train) == 12
    data._MEMORY.clear()
    again = data.load_split("train", root=tiny_folder, cfg=cfg, download=False)  # from the cache file
    assert torch.equal(again.images, train.images)


def test_list_image_files_leaves_out_unreadable_files_and_says_so(tiny_folder, tmp_path):
    (tiny_folder / "train" / "cat" / "broken.png").write_bytes(b"not an image")
    cfg = config.get_config("smoke", device="cpu", cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match=r"1 unreadable images \[cat/broken.png\]"):
        files, labels = data.list_image_files("train", root=tiny_folder, cfg=cfg)
    assert len(files) == len(labels) == 12 and all(f.name != "broken.png" for f in files)
    assert [files[i].parent.name for i in range(0, 12, 4)] == ["cat", "dog", "frog"] and labels[::4] == [0, 1, 2]
