import pytest
import torch

from tlcourse import augment, data, loaders, models


def test_tensor_loader_shuffles_per_epoch_and_repeats_with_set_epoch():
    x, y = torch.arange(10).view(10, 1), torch.arange(10)
    loader = loaders.TensorLoader(x, y, batch_size=4, shuffle=True, seed=5)
    assert len(loader) == 3
    first = torch.cat([b for _, b in loader])
    second = torch.cat([b for _, b in loader])
    assert sorted(first.tolist()) == list(range(10)) and not torch.equal(first, second)
    loader.set_epoch(0)
    assert torch.equal(torch.cat([b for _, b in loader]), first)


@pytest.mark.slow
def test_real_cifar10_loaders(cfg):
    train_loader, val_loader, test_loader = loaders.make_loaders(cfg)
    x, y = next(iter(train_loader))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert (train_loader.num_samples, val_loader.num_samples, test_loader.num_samples) == (500, 100, 200)
    torch_train, _ = loaders.make_torch_loaders(cfg)
    xs, ys = next(iter(torch_train))
    assert xs.shape == x.shape
    assert abs(xs.mean().item() - x.mean().item()) < 0.15  # same normalization, different images


def test_replace_returns_an_independent_loader_with_only_the_named_fields_changed():
    x, y = torch.arange(40, dtype=torch.uint8).view(10, 1, 2, 2), torch.arange(10)
    tf = augment.BatchTransform(False, 2, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    loader = loaders.TensorLoader(x, y, batch_size=4, shuffle=True, transform=tf, seed=7, drop_last=True)
    next(iter(loader))  # advances the original's epoch
    copy = loader.replace(shuffle=False, batch_size=5)
    assert copy is not loader and (copy.shuffle, copy.batch_size) == (False, 5)
    assert (copy.transform, copy.seed, copy.drop_last, copy.device) == (tf, 7, True, loader.device)
    assert copy.x is loader.x and copy.y is loader.y and copy.epoch == 0  # same images, a fresh start
    assert (loader.shuffle, loader.batch_size, loader.epoch) == (True, 4, 1)  # the original is untouched
    copy.seed = 8
    assert loader.seed == 7
    assert torch.equal(torch.cat([b for _, b in copy]), torch.arange(10))  # in order, two batches of 5
    with pytest.raises(TypeError, match="shufle"):
        loader.replace(shufle=False)


@pytest.mark.slow
def test_make_loaders_augments_training_images_and_not_test_images(cfg):
    train_loader, _, test_loader = loaders.make_loaders(cfg)
    train_arrays, _, test_arrays = data.load_datasets(cfg)
    mean, std = models.normalization(cfg.backbone)
    plain = augment.BatchTransform(False, cfg.image_size, mean, std)

    def to_unit(x: torch.Tensor) -> torch.Tensor:  # undo the normalization: pixels in [0, 1]
        return x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)

    in_order = train_loader.replace(shuffle=False)  # the same transform, batches in a known order
    (a, ya), (b, yb) = next(iter(in_order)), next(iter(in_order))
    clean = plain(train_arrays.images[: len(ya)])
    assert torch.equal(ya, yb) and torch.equal(ya, train_arrays.labels[: len(ya)])
    assert ((a - b).abs().amax(dim=(1, 2, 3)) > 1e-3).all()  # two passes: every image drawn anew
    assert ((a - clean).abs().amax(dim=(1, 2, 3)) > 1e-3).all()  # and none left as it was
    # over a shuffled epoch, crops pad black borders and jitter truncates: the mean pixel drops
    epoch = torch.cat([x for x, _ in train_loader])
    assert to_unit(epoch).mean() < to_unit(plain(train_arrays.images)).mean() - 0.01
    assert epoch.shape == (len(train_arrays), 3, cfg.image_size, cfg.image_size)
    # the test loader: two passes identical, in order, and equal to the plain normalized images
    first, second = torch.cat([x for x, _ in test_loader]), torch.cat([x for x, _ in test_loader])
    assert torch.equal(first, second)
    torch.testing.assert_close(first, plain(test_arrays.images), atol=1e-6, rtol=0)
    assert torch.equal(torch.cat([y for _, y in test_loader]), test_arrays.labels)
