import pytest
import torch

from tlcourse import augment, features, loaders, models, train


def _loaders(n=48, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    mean, std = models.normalization("efficientnet_lite0")
    tr = loaders.TensorLoader(x, y, 16, shuffle=True, transform=augment.BatchTransform(True, size, mean, std))
    te = loaders.TensorLoader(x[:16], y[:16], 16, transform=augment.BatchTransform(False, size, mean, std))
    return tr, te


@pytest.mark.slow
def test_cached_prefix_gives_the_full_models_logits():
    model = models.build_model("efficientnet_lite0", pretrained=False).eval()
    _, te = _loaders()
    for at in ("fc", "layer4"):
        prefix, suffix = models.split_model(model, at)
        feats = features.extract(prefix, te, progress=False)
        assert feats.views == 1 and len(feats) == 16
        logits, _ = train.predict(model, te)
        torch.testing.assert_close(suffix.eval()(feats.x[0]), logits, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_augmented_views_differ_and_line_up():
    model = models.build_model("resnet18", pretrained=False)
    tr, _ = _loaders()
    prefix, _ = models.split_model(model, "fc")
    feats = features.extract(prefix, tr, views=3, progress=False)
    assert feats.x.shape == (3, 48, 512)
    assert not torch.allclose(feats.x[0], feats.x[1])
    assert torch.equal(feats.y, torch.arange(48) % 10)  # unshuffled order, the same for every view


def test_view_loader_uses_one_view_per_epoch():
    f = features.Features(torch.stack([torch.zeros(4, 2), torch.ones(4, 2)]), torch.arange(4))
    loader = features.ViewLoader(f, batch_size=4)
    assert [next(iter(loader))[0].mean().item() for _ in range(3)] == [0.0, 1.0, 0.0]


@pytest.mark.slow
def test_fit_cached_trains_the_suffix_inside_the_model(tmp_path, monkeypatch):
    from tlcourse import config

    cfg = config.get_config("smoke", device="cpu", cache_dir=tmp_path, backbone="resnet18")
    model = models.build_model("resnet18", pretrained=False)
    layer3_before = model.layer3[0].conv1.weight.clone()
    fc_before = model.fc.weight.clone()
    tr, te = _loaders()
    quiet = train.FitOptions(progress=False, log=None)
    hist = features.fit_cached(model, "layer4", tr, te, epochs=2, lr=1e-3, cfg=cfg, options=quiet, test_loader=te)
    assert len(hist.val_acc) == 2 and hist.test_acc == pytest.approx(train.evaluate(model, te).accuracy)
    assert torch.equal(model.layer3[0].conv1.weight, layer3_before)
    assert not torch.equal(model.fc.weight, fc_before)

    calls = []
    monkeypatch.setattr(features, "extract", lambda *a, **k: calls.append(1))
    model2 = models.build_model("resnet18", pretrained=False)
    model2.load_state_dict(model.state_dict())
    models.freeze_until(model2, "fc")
    prefix, _ = models.split_model(model2, "layer4")
    cached = features.cached_extract(cfg, prefix, features.without_augmentation(tr, te), "train")
    assert calls == [] and cached.x.shape[1] == 48  # read back from disk, not recomputed


@pytest.mark.slow
def test_cached_training_saves_the_whole_model_as_best(tmp_path):
    from tlcourse.classifier import ImageClassifier

    clf = ImageClassifier("resnet18", 10, pretrained=False, device="cpu")
    tr, te = _loaders()
    clf.train(
        tr, 1, te, phase="layer4", cache=True, checkpoint_path=tmp_path / "run.state.pt", progress=False, log=None
    )
    best = ImageClassifier.from_checkpoint(tmp_path / "run.best.pt", device="cpu")
    for (name, a), b in zip(clf.model.state_dict().items(), best.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_fit_cached_without_an_evaluation_loader_caches_unaugmented_training_images(tmp_path, monkeypatch):
    """A fixed schedule (the recipes' head phase) passes no val or test loader: the cache must still be clean."""
    from tlcourse import config

    seen = []
    real = features.extract

    def spy(prefix, loader, *a, **k):
        seen.append(loader.transform)
        return real(prefix, loader, *a, **k)

    monkeypatch.setattr(features, "extract", spy)
    cfg = config.get_config("smoke", device="cpu", cache_dir=tmp_path)
    tr, _ = _loaders(n=16)
    model = models.build_model("efficientnet_lite0", pretrained=False)
    quiet = train.FitOptions(progress=False, log=None)
    features.fit_cached(model, "fc", tr, None, epochs=1, lr=1e-3, cfg=cfg, options=quiet)
    assert len(seen) == 1 and seen[0].augment is False and tr.transform.augment is True
    assert (seen[0].image_size, seen[0].mean.tolist()) == (tr.transform.image_size, tr.transform.mean.tolist())
