"""tlcourse.probe: linear probe, 2-D projection, gradient norms per block, stage tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlcourse import features, models, probe


def _separable(n: int = 200, d: int = 16, seed: int = 0) -> tuple[features.Features, features.Features]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    centers = torch.randn(4, d, generator=g) * 4
    x = centers[y] + torch.randn(n, d, generator=g)
    half = n // 2
    return features.Features(x[None, :half], y[:half]), features.Features(x[None, half:], y[half:])


@pytest.mark.slow
def test_logistic_regression_separates_clusters_and_fails_on_shuffled_labels():
    train, test = _separable()
    fit = probe.logistic_regression(train, test)
    assert fit.accuracy > 0.95 and fit.train_accuracy > 0.95
    assert fit.predict_proba(test.x[0]).shape == (len(test), 4)
    assert fit.score(test) == fit.accuracy
    assert fit.score(features.Features(-test.x, test.y)) < 0.6  # mirrored clusters: mostly wrong
    perm = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(1))
    shuffled = features.Features(train.x, train.y[perm])
    assert probe.logistic_regression(shuffled, test).accuracy < 0.6


def test_logistic_regression_stacks_augmented_views():
    train, test = _separable()
    two_views = features.Features(torch.cat([train.x, train.x + 0.01]), train.y)
    fit = probe.logistic_regression(two_views, test)
    assert fit.pipeline.n_features_in_ == 16
    assert fit.pipeline[-1].classes_.tolist() == [0, 1, 2, 3]


def test_project_2d_shapes_and_methods():
    train, _ = _separable(n=60)
    assert probe.project_2d(train).shape == (len(train), 2)
    assert probe.project_2d(train.x[0], "tsne").shape == (len(train), 2)
    with pytest.raises(ValueError, match="pca"):
        probe.project_2d(train, "umap")


def test_project_2d_unit_rows_tames_an_outlier():
    train, _ = _separable(d=32)
    x = train.x[0].clone()
    x[0] *= 1000  # one image with huge activations
    raw = probe.project_2d(x, unit_rows=False)
    unit = probe.project_2d(x)
    share = lambda xy: np.abs(xy[0]).max() / np.abs(xy).max()  # noqa: E731
    assert share(raw) == pytest.approx(1.0) and np.abs(unit[0]).max() < 0.5 * np.abs(unit).max()


def test_pca_projection_keeps_cluster_structure():
    train, _ = _separable(d=32)
    xy = probe.project_2d(train)
    y = train.y.numpy()
    centroids = np.stack([xy[y == c].mean(0) for c in range(4)])
    within = np.mean([np.linalg.norm(xy[y == c] - centroids[c], axis=1).mean() for c in range(4)])
    between = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)[np.triu_indices(4, 1)].mean()
    assert between > within


@pytest.mark.slow
def test_block_gradient_norms_one_per_block_and_grads_cleared():
    torch.manual_seed(0)
    net = models.make_deep_net(6, skip=True, width=8)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    norms = probe.block_gradient_norms(net, x, y)
    assert len(norms) == 6 and all(n > 0 and np.isfinite(n) for n in norms)
    assert all(p.grad is None for p in net.parameters())
    plain = models.make_deep_net(6, skip=False, width=8)
    assert len(probe.block_gradient_norms(plain, x, y)) == 6  # PlainBlock is a ResidualBlock subclass
    with pytest.raises(ValueError, match="no"):
        probe.block_gradient_norms(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 10)), x, y)


@pytest.mark.slow
def test_skips_keep_gradients_alive_and_even_across_depth():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    plain = probe.block_gradient_norms(models.make_deep_net(20, skip=False, batch_norm=False), x, y)
    resid = probe.block_gradient_norms(models.make_deep_net(20, skip=True, batch_norm=False), x, y)
    assert max(plain) < 1e-6  # without BatchNorm the plain stack's signal and gradient vanish
    assert min(resid) > 1e-2
    plain_bn = probe.block_gradient_norms(models.make_deep_net(20, skip=False), x, y)
    resid_bn = probe.block_gradient_norms(models.make_deep_net(20, skip=True), x, y)
    spread = lambda v: max(v) / min(v)  # noqa: E731
    assert spread(plain_bn) > 10 * spread(resid_bn)  # with BatchNorm: uneven vs even


def test_stage_shapes_resnet18_at_32_and_224():
    model = models.build_model("resnet18", pretrained=False)
    s32, s224 = probe.stage_shapes(model, 32), probe.stage_shapes(model, 224)
    assert s32["conv1"] == (64, 8, 8) and s32["layer4"] == (512, 1, 1)
    assert s224["conv1"] == (64, 56, 56) and s224["layer4"] == (512, 7, 7)
    assert s224["avgpool"] == (512, 1, 1) and s224["fc"] == (10,)
    assert list(s32) == ["conv1", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]


def test_stage_table_counts_every_parameter_once():
    model = models.build_model("resnet18", num_classes=1000, pretrained=False)
    table = probe.stage_table(model, (32,))
    assert table["parameters"].sum() == 11_689_512
    assert table.loc["fc", "parameters"] == 513_000
    assert table.loc["layer4", "output at 32 px"] == "512x1x1"
    assert abs(table["% of total"].sum() - 100) < 1e-6
    assert model.training  # mode restored


def test_stage_table_efficientnet_lite0_strides():
    model = models.build_model("efficientnet_lite0", pretrained=False)
    table = probe.stage_table(model, (32, 64))
    assert table.loc["layer4", "output at 32 px"] == "1280x1x1"
    assert table.loc["layer4", "output at 64 px"] == "1280x2x2"
    assert table["parameters"].sum() == models.count_parameters(model).total


@pytest.mark.slow
def test_linear_probe_on_real_data_beats_chance(cfg):
    model = models.build_model("resnet18", pretrained=False)  # random features still carry signal
    result = probe.linear_probe(cfg, model, progress=False)
    assert result.n_train == cfg.train_size and result.n_test == cfg.test_size
    assert result.feature_dim == 512 and result.image_size == cfg.image_size
    assert result.accuracy > 0.12 and result.seconds >= result.fit_seconds > 0
    assert set(result.as_row()) >= {"accuracy", "seconds", "image_size"}


def test_clean_loaders_are_unaugmented_and_ordered(cfg):
    tr1, te = probe.clean_loaders(cfg, image_size=40, mean=(0, 0, 0), std=(1, 1, 1))
    (x1, y1), (x2, y2) = next(iter(tr1)), next(iter(tr1))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape[-1] == 40 and 0 <= x1.min() and x1.max() <= 1
    assert len(te.y) == cfg.test_size


@pytest.mark.slow
def test_extract_features_cache_round_trip(cfg, tmp_path):
    model = models.build_model("resnet18", pretrained=False)
    c = cfg.replace(cache_dir=tmp_path, train_size=40, test_size=20)
    a_tr, a_te = probe.extract_features(c, model, cache=True, progress=False)
    assert list((tmp_path / "features").glob("*.pt"))
    b_tr, _ = probe.extract_features(c, model, cache=True, progress=False)
    assert torch.equal(a_tr.x, b_tr.x) and a_tr.x.shape == (1, 40, 512) and len(a_te) == 20
