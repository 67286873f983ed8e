"""Named recipes: lookup, and one run end to end on the smoke data (sizes only; accuracy is a benchmark's job)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tlcourse import checkpoint, config, loaders, metrics, models, recipes, train
from tlcourse.__main__ import main
from tlcourse.classifier import ImageClassifier
from tlcourse.errors import ConfigError


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="cpu-10min"):
        recipes.get_recipe("gpu-1min")


@pytest.mark.slow
def test_run_recipe_trains_every_layer_and_saves_a_loadable_model(cfg, tmp_path):
    tiny = dataclasses.replace(recipes.get_recipe("all-layers"), head_epochs=1, epochs=1)  # smoke-size
    pretrained = dict(models.build_model(cfg.backbone, 10).named_parameters())
    clf, evaluation, seconds = recipes.run_recipe(tiny, cfg, tmp_path / "m.pt", progress=False, log=None)
    assert all(p.requires_grad for p in clf.model.parameters())  # the last stage trains everything
    moved = {n.split(".")[0] for n, p in clf.model.named_parameters() if not torch.equal(p.cpu(), pretrained[n])}
    assert {"conv1", "layer1", "layer4"} <= moved  # the body trained too, from its first stage on
    assert {m.momentum for m in clf.model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {tiny.bn_momentum}
    assert len(evaluation.labels) == cfg.test_size and clf.history.epoch == [1]
    assert seconds["total"] >= seconds["all layers, end to end"] > 0
    assert checkpoint.read_model(tmp_path / "m.pt")[0].image_size == tiny.image_size


def test_multiscale_features_are_the_three_pooled_stage_outputs():
    plain = models.build_model("efficientnet_lite0", 10).eval()
    multi = models.build_model("efficientnet_lite0_multiscale", 10).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h3 = torch.nn.Sequential(plain.conv1, plain.layer1, plain.layer2, plain.layer3)(x)
        h7 = plain.layer4[:5](h3)  # the last MBConv block's output (320 channels)
        head = plain.layer4[5:](h7)
        want = torch.cat([h3.mean((2, 3)), h7.mean((2, 3)), head.mean((2, 3))], 1)
        got = models.split_model(multi, "fc")[0](x)
    assert got.shape == (2, models.MULTISCALE_DIM) == (2, 112 + 320 + 1280)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture
def fresh_cache(cfg, tmp_path):
    """``cfg`` with an empty feature and engine cache that shares the decoded images."""
    (cfg.cache_dir / "arrays").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "arrays").symlink_to((cfg.cache_dir / "arrays").resolve())
    return cfg.replace(cache_dir=tmp_path / "cache")


@pytest.mark.slow
def test_cpu_fast_evaluates_on_cached_features_what_the_saved_model_computes(cfg, fresh_cache, tmp_path):
    fast = dataclasses.replace(recipes.get_recipe("cpu-fast"), image_size=32, head_epochs=2)  # smoke-size
    c = fresh_cache
    clf, evaluation, seconds = recipes.run_recipe(fast, c, tmp_path / "m.pt", progress=False, log=None)
    assert "final evaluation" not in " ".join(seconds) and len(evaluation.labels) == cfg.test_size
    assert {n.split(".")[0] for n, p in clf.model.named_parameters() if p.requires_grad} == {"fc"}
    assert len(list((tmp_path / "cache" / "features").glob("test-*.pt"))) == 2  # the test set and its mirror image
    # The standardization folded into fc and the TTA on cached features equal the saved model run on images.
    loaded = ImageClassifier.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert loaded.meta.backbone == "efficientnet_lite0_multiscale" and loaded.model.fc.in_features == 1712
    test_loader = loaders.make_loaders(c.replace(backbone=loaded.meta.backbone, image_size=32), augment=False).test
    logits, labels = train.predict(loaded.model, test_loader, flip_tta=True)
    scale = float(evaluation.logits.abs().max())  # other summation orders (engines, memory layouts)
    torch.testing.assert_close(logits, evaluation.logits, rtol=0, atol=1e-4 * scale)
    assert metrics.accuracy(logits, labels) == evaluation.accuracy
    assert torch.equal(labels, evaluation.labels)


@pytest.mark.slow
def test_head_only_recipe_with_mirrored_training_copies(cfg, fresh_cache):
    head_only = dataclasses.replace(recipes.get_recipe("cpu-10min"), image_size=32, head_epochs=1, flip_tta=False)
    clf, evaluation, seconds = recipes.run_recipe(head_only, fresh_cache, progress=False, log=None)
    assert "all layers, end to end" not in seconds and len(evaluation.labels) == cfg.test_size
    assert {n.split(".")[0] for n, p in clf.model.named_parameters() if p.requires_grad} == {"fc"}
    assert len(list((fresh_cache.cache_dir / "features").glob("train-*.pt"))) == 2  # the images and their mirror images
    # no validation slice under a fixed schedule: every training image of the profile trains
    assert clf.history.test_acc is None and all(math.isnan(v) for v in clf.history.val_acc)


def test_fit_standardized_head_folds_the_scaling_into_fc(monkeypatch):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g) * torch.linspace(0.1, 50, 8) + 7
    y = (x[:, 0] > 7).long()
    fc = torch.nn.Linear(8, 2)
    recipe = dataclasses.replace(recipes.get_recipe("cpu-fast"), head_epochs=1, head_batch_size=64)
    trained = {}

    def fit_then_look(head, loader, *args, **kwargs):  # the head's logits on the standardized features it trained on
        history = real_fit(head, loader, *args, **kwargs)
        with torch.no_grad():
            trained["logits"] = head(loader.all_views[0]).clone()
        return history

    real_fit = train.fit
    monkeypatch.setattr(train, "fit", fit_then_look)
    recipes.fit_standardized_head(fc, x, y, recipe)
    with torch.no_grad():  # folded: the same logits from the raw features
        torch.testing.assert_close(fc(x), trained["logits"], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(trained["logits"], torch.zeros(1), atol=1e-2)


def test_cli_recipe_unknown_name_is_one_line(capsys):
    assert main(["train", "--recipe", "nope", "--profile", "smoke"]) != 0
    assert "unknown recipe" in capsys.readouterr().err


def test_gpu_recipe_fine_tunes_everything_at_224_px_and_is_refused_on_a_cpu(cfg):
    gpu = recipes.get_recipe("gpu-224")
    assert (gpu.image_size, gpu.needs_gpu) == (224, True) and gpu.epochs > 0  # every layer, end to end
    with pytest.raises(ConfigError, match="needs a CUDA GPU.*cpu-fast"):
        recipes.run_recipe(gpu, cfg.replace(device="cpu"), progress=False, log=None)


@pytest.mark.slow
def test_course_model_chooses_its_epoch_on_validation_and_scores_the_test_set_once(fresh_cache):
    course = recipes.train_course_model(fresh_cache, progress=False, log=None)
    h = course.history
    assert course.cfg.image_size == config.COURSE_IMAGE_SIZE and len(h.epoch) == config.COURSE_HEAD_EPOCHS
    assert {n.split(".")[0] for n, p in course.clf.model.named_parameters() if p.requires_grad} == {"fc"}
    assert course.loaders.val.num_samples == fresh_cache.val_size and h.best_val_acc == max(h.val_acc)
    # the test figure is the kept (best validation) epoch's model, run on the images end to end
    n = course.loaders.test.num_samples
    assert abs(course.clf.evaluate(course.loaders.test).accuracy - h.test_acc) <= 1 / n + 1e-9
