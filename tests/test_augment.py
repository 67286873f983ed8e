import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tlcourse import augment, models
from tlcourse.checkpoint import ModelMeta

N = 4000  # draws per distribution test; p-value floors are loose so that the tests are not flaky


def _crop_offsets(out: torch.Tensor, padding: int = 4) -> np.ndarray:
    """Row offset of each crop of an all-ones image, from how many zero rows the padding left."""
    rows_zero = (out.amax(dim=(1, 3)) == 0).numpy()  # (N, H)
    top = rows_zero.argmin(axis=1)
    bottom = rows_zero[:, ::-1].argmin(axis=1)
    return np.where(top > 0, padding - top, padding + bottom)


def test_batched_crop_offsets_are_uniform_like_torchvision():
    ones = torch.ones(N, 3, 32, 32)
    ours = _crop_offsets(augment.random_crop(ones, 4, torch.Generator().manual_seed(0)))
    crop = v2.RandomCrop(32, padding=4)
    torch.manual_seed(0)
    theirs = _crop_offsets(torch.stack([crop(ones[0]) for _ in range(N)]))
    for offsets in (ours, theirs):
        counts = np.bincount(offsets, minlength=9)
        assert len(counts) == 9 and stats.chisquare(counts).pvalue > 1e-4, counts


def test_each_sample_gets_its_own_crop_and_flip():
    x = torch.arange(32.0).repeat(64, 3, 32, 1)  # column index as pixel value
    g = torch.Generator().manual_seed(1)
    out = augment.random_flip(augment.random_crop(x, 4, g), g)
    assert len({tuple(o[0, 16].tolist()) for o in out}) > 5


def test_flip_rate_is_one_half():
    x = torch.arange(32.0).repeat(N, 1, 1, 1)
    flipped = (augment.random_flip(x, torch.Generator().manual_seed(2))[:, 0, 0, 0] == 31).float().mean().item()
    assert abs(flipped - 0.5) < 4 * (0.25 / N) ** 0.5


@pytest.mark.parametrize("op, fn", [(0, TF.adjust_brightness), (1, TF.adjust_contrast), (2, TF.adjust_saturation)])
def test_adjust_equals_torchvision(op, fn):
    x = torch.rand(6, 3, 8, 8)
    factors = torch.linspace(0.8, 1.2, 6)
    ours = augment.adjust(x, op, factors)
    theirs = torch.stack([fn(img, float(f)) for img, f in zip(x, factors)])
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def _summary(batch: torch.Tensor) -> dict[str, np.ndarray]:
    return {
        "mean": batch.mean(dim=(1, 2, 3)).numpy(),
        "red-blue": (batch[:, 0] - batch[:, 2]).mean(dim=(1, 2)).numpy(),
        "left-right": (batch[..., :16] - batch[..., 16:]).mean(dim=(1, 2, 3)).numpy(),
        "std": batch.std(dim=(1, 2, 3)).numpy(),
    }


@pytest.mark.slow
def test_batched_pipeline_has_the_reference_distribution():
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
    img[:, :, :10] //= 3  # asymmetric, so flips and crops show in the statistics
    mean, std = models.normalization("resnet18")
    ours = augment.BatchTransform(True, 32, mean, std)(img.repeat(N, 1, 1, 1), torch.Generator().manual_seed(3))
    reference = augment.reference_transform(True, 32, mean, std)
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())  # the reference pipeline augments PIL images
    torch.manual_seed(3)
    theirs = torch.stack([reference(pil) for _ in range(N)])
    assert ours.shape == theirs.shape == (N, 3, 32, 32)
    for name, a in _summary(ours).items():
        b = _summary(theirs)[name]
        assert stats.ks_2samp(a, b).pvalue > 1e-4, name


def test_test_transform_matches_the_reference_exactly():
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    mean, std = models.normalization("efficientnet_lite0")
    ours = augment.BatchTransform(False, 32, mean, std)(x)
    theirs = torch.stack([augment.reference_transform(False, 32, mean, std)(i) for i in x])
    torch.testing.assert_close(ours, theirs)
    up = augment.BatchTransform(False, 64, mean, std)(x)
    assert up.shape == (5, 3, 64, 64)


def test_preprocess_is_the_same_for_a_path_a_pil_image_and_an_array(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)  # not square, not 32 px: resized and cropped
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    meta = ModelMeta("efficientnet_lite0", ("a", "b"), 64, *models.normalization("efficientnet_lite0"))
    from_path = augment.preprocess(tmp_path / "photo.png", meta)
    from_pil = augment.preprocess(Image.open(tmp_path / "photo.png"), meta)
    from_array = augment.preprocess(pixels, meta)
    assert from_path.shape == (1, 3, 64, 64) and from_path.dtype == torch.float32
    assert torch.equal(from_path, from_pil) and torch.equal(from_path, from_array)
    # normalized with meta's statistics: undoing them gives pixels in [0, 1] that vary across the image
    pix = from_path * torch.tensor(meta.std).view(1, 3, 1, 1) + torch.tensor(meta.mean).view(1, 3, 1, 1)
    assert pix.min() >= -1e-5 and pix.max() <= 1 + 1e-5 and pix.std() > 0.1
