import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tlcourse import config, data, models

N = 4000  # draws per distribution test; p-value floors are loose so that the tests are not flaky


def test_classes_match_torchvision_order():
    # torchvision reads the names from batches.meta; this is its order
    assert list(data.CLASSES) == sorted(data.CLASSES)  # ImageFolder sorts class folders
    assert data.CLASSES == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _crop_offsets(out: torch.Tensor, padding: int = 4) -> np.ndarray:
    """Row offset of each crop of an all-ones image, from how many zero rows the padding left."""
    rows_zero = (out.amax(dim=(1, 3)) == 0).numpy()  # (N, H)
    top = rows_zero.argmin(axis=1)
    bottom = rows_zero[:, ::-1].argmin(axis=1)
    return np.where(top > 0, padding - top, padding + bottom)


def test_batched_crop_offsets_are_uniform_like_torchvision():
    ones = torch.ones(N, 3, 32, 32)
    ours = _crop_offsets(data.random_crop(ones, 4, torch.Generator().manual_seed(0)))
    crop = v2.RandomCrop(32, padding=4)
    torch.manual_seed(0)
    theirs = _crop_offsets(torch.stack([crop(ones[0]) for _ in range(N)]))
    for offsets in (ours, theirs):
        counts = np.bincount(offsets, minlength=9)
        assert len(counts) == 9 and stats.chisquare(counts).pvalue > 1e-4, counts


def test_each_sample_gets_its_own_crop_and_flip():
    x = torch.arange(32.0).repeat(64, 3, 32, 1)  # column index as pixel value
    g = torch.Generator().manual_seed(1)
    out = data.random_flip(data.random_crop(x, 4, g), g)
    assert len({tuple(o[0, 16].tolist()) for o in out}) > 5


def test_flip_rate_is_one_half():
    x = torch.arange(32.0).repeat(N, 1, 1, 1)
    flipped = (data.random_flip(x, torch.Generator().manual_seed(2))[:, 0, 0, 0] == 31).float().mean().item()
    assert abs(flipped - 0.5) < 4 * (0.25 / N) ** 0.5


@pytest.mark.parametrize("op, fn", [(0, TF.adjust_brightness), (1, TF.adjust_contrast), (2, TF.adjust_saturation)])
def test_adjust_equals_torchvision(op, fn):
    x = torch.rand(6, 3, 8, 8)
    factors = torch.linspace(0.8, 1.2, 6)
    ours = data.adjust(x, op, factors)
    theirs = torch.stack([fn(img, float(f)) for img, f in zip(x, factors)])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def _summary(batch: torch.Tensor) -> dict[str, np.ndarray]:
    return {
        "mean": batch.mean(dim=(1, 2, 3)).numpy(),
        "red-blue": (batch[:, 0] - batch[:, 2]).mean(dim=(1, 2)).numpy(),
        "left-right": (batch[..., :16] - batch[..., 16:]).mean(dim=(1, 2, 3)).numpy(),
        "std": batch.std(dim=(1, 2, 3)).numpy(),
    }


def test_batched_pipeline_has_the_seed_distribution():
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
    img[:, :, :10] //= 3  # asymmetric, so flips and crops show in the statistics
    mean, std = models.normalization("resnet18")
    ours = data.BatchTransform(True, 32, mean, std)(img.repeat(N, 1, 1, 1), torch.Generator().manual_seed(3))
    seed = data.seed_transform(True, 32, mean, std)
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())  # the seed augments PIL images
    torch.manual_seed(3)
    theirs = torch.stack([seed(pil) for _ in range(N)])
    assert ours.shape == theirs.shape == (N, 3, 32, 32)
    for name, a in _summary(ours).items():
        b = _summary(theirs)[name]
        assert stats.ks_2samp(a, b).pvalue > 1e-4, name


def test_test_transform_matches_the_seed_exactly():
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    mean, std = models.normalization("efficientnet_lite0")
    ours = data.BatchTransform(False, 32, mean, std)(x)
    theirs = torch.stack([data.seed_transform(False, 32, mean, std)(i) for i in x])
    torch.testing.assert_close(ours, theirs)
    up = data.BatchTransform(False, 64, mean, std)(x)
    assert up.shape == (5, 3, 64, 64)


def test_tensor_loader_shuffles_per_epoch_and_repeats_with_set_epoch():
    x, y = torch.arange(10).view(10, 1), torch.arange(10)
    loader = data.TensorLoader(x, y, batch_size=4, shuffle=True, seed=5)
    assert len(loader) == 3
    first = torch.cat([b for _, b in loader])
    second = torch.cat([b for _, b in loader])
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([b for _, b in loader]), first)


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


def test_real_cifar10_loaders(cfg):
    train_loader, test_loader = data.make_loaders(cfg)
    x, y = next(iter(train_loader))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert train_loader.num_samples == 500 and test_loader.num_samples == 200
    seed_train, _ = data.make_torch_loaders(cfg)
    xs, ys = next(iter(seed_train))
    assert xs.shape == x.shape
    assert abs(xs.mean().item() - x.mean().item()) < 0.15  # same normalization, different images
