"""Fine-tuning helpers: per-stage rates, BatchNorm drift, step timing, the strategy runner."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tlcourse import finetune, loaders, models, train


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return models.build_model("efficientnet_lite0", pretrained=False)


@pytest.mark.slow
def test_param_groups_give_each_stage_its_rate(model):
    m = models.freeze_until(copy.deepcopy(model), "layer4")
    groups = finetune.param_groups_by_stage(m, {"fc": 1e-3}, default_lr=1e-4)
    assert [(g["stage"], g["lr"]) for g in groups] == [("layer4", 1e-4), ("fc", 1e-3)]
    assert sum(p.numel() for g in groups for p in g["params"]) == models.count_parameters(m).trainable
    opt = train.make_optimizer(m, 1.0, param_groups=groups)
    before = copy.deepcopy(m.state_dict())
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    models.train_mode(m)
    nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
    # Adam's first step moves every weight by about its rate: fc ~1e-3, layer4 ~1e-4, frozen 0.
    fc_step = (m.fc.weight - before["fc.weight"]).abs().max().item()
    l4 = dict(m.layer4.named_parameters())
    l4_step = max((p - before[f"layer4.{n}"]).abs().max().item() for n, p in l4.items())
    assert 0.5e-3 < fc_step < 1.5e-3
    assert 0.5e-4 < l4_step < 1.5e-4
    assert torch.equal(m.layer1[0]._depthwise_conv.weight, before["layer1.0._depthwise_conv.weight"])


def test_param_groups_refuse_unknown_or_missing_rates(model):
    m = models.freeze_until(copy.deepcopy(model), "layer4")
    with pytest.raises(ValueError, match="no learning rate"):
        finetune.param_groups_by_stage(m, {"fc": 1e-3})
    with pytest.raises(ValueError, match="unknown stage"):
        finetune.param_groups_by_stage(m, {"head": 1e-3}, default_lr=1e-4)


def test_layerwise_lrs_decay_towards_the_input():
    lrs = finetune.layerwise_lrs(1e-3, 0.5)
    assert lrs["fc"] == 1e-3 and lrs["layer4"] == 5e-4 and lrs["conv1"] == pytest.approx(1e-3 * 0.5**5)


@pytest.mark.slow
def test_bn_drift_only_without_train_mode(model):
    m = models.freeze_until(copy.deepcopy(model), "layer4")
    before = copy.deepcopy(m.state_dict())
    batches = [(torch.randn(16, 3, 32, 32) * 2 + 1, torch.zeros(16, dtype=torch.long))] * 2
    kept = finetune.bn_stat_drift(m, batches, keep_frozen_bn=True)
    drifted = finetune.bn_stat_drift(m, batches, keep_frozen_bn=False)
    assert set(kept) == {"conv1", "layer1", "layer2", "layer3"}  # layer4 and fc are trainable
    assert all(v == 0 for v in kept.values())
    assert all(v > 0 for v in drifted.values())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # worked on a copy


@pytest.mark.slow
def test_time_train_step_leaves_the_model_unchanged(model):
    m = models.freeze_until(copy.deepcopy(model), "conv1")
    before = copy.deepcopy(m.state_dict())
    batches = [(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))] * 3
    seconds = finetune.time_train_step(m, batches, steps=2)
    assert 0 < seconds < 60
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_weight_change_and_feature_drift(model):
    m = copy.deepcopy(model)
    before = copy.deepcopy(m.state_dict())
    assert all(v == 0 for v in finetune.weight_change_by_stage(before, m).values())
    with torch.no_grad():
        m.fc.weight.mul_(2)
    change = finetune.weight_change_by_stage(before, m)
    assert change["fc"] > 0 and change["layer1"] == 0
    x = torch.randn(4, 3, 32, 32)
    assert finetune.feature_drift(model, m, x) == pytest.approx(1.0, abs=1e-5)  # fc is not a feature layer
    with torch.no_grad():
        m.layer4[-3].weight.mul_(-1)  # flip the head convolution: features change
    assert finetune.feature_drift(model, m, x) < 0.99


def test_fit_with_loss_runs_a_custom_criterion():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    loader = loaders.TensorLoader(x, y, batch_size=16, shuffle=True)
    head = nn.Linear(5, 3)
    hist = finetune.fit_with_loss(
        head,
        loader,
        loaders.TensorLoader(x, y, batch_size=32),
        3,
        1e-2,
        nn.CrossEntropyLoss(label_smoothing=0.1),
    )
    assert hist.epoch == [1, 2, 3] and hist.train_loss[-1] < hist.train_loss[0]
    assert hist.lr == pytest.approx([1e-2] * 3)  # a constant rate
    with torch.no_grad():
        logits = head(x)
    best = hist.best_epoch - 1  # the head ends with its best validation epoch's weights
    assert hist.val_loss[best] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)  # plain CE
    assert hist.val_acc[best] == pytest.approx((logits.argmax(1) == y).float().mean().item())


@pytest.mark.slow
def test_compare_strategies_on_real_data(cfg):
    small = cfg.replace(train_size=64, test_size=32, batch_size=32, device="cpu")
    strategies = [
        finetune.Strategy("head", "fc", 1e-3, pretrained=False),
        finetune.Strategy("all", "conv1", 1e-3, pretrained=False, bn_momentum=0.1),
    ]
    table, histories = finetune.compare_strategies(small, strategies, epochs=1, time_steps=1, progress=False)
    assert list(table.index) == ["head", "all"] and set(histories) == {"head", "all"}
    assert table.loc["head", "trainable params"] < table.loc["all", "trainable params"]
    assert table["test acc"].between(0, 1).all() and table["val acc"].between(0, 1).all()
    assert (table["s/epoch (end to end, est.)"] > 0).all()
    assert bool(table.loc["head", "cached"]) and not bool(table.loc["all", "cached"])


def test_fit_head_starts_from_the_same_head_and_learns():
    from tlcourse import features

    torch.manual_seed(0)
    centers = torch.randn(3, 8) * 3
    y = torch.arange(90) % 3
    x = centers[y] + torch.randn(90, 8)
    tr, te = features.Features(x[None, :60], y[:60]), features.Features(x[None, 60:], y[60:])
    state = torch.get_rng_state()
    h1, hist1 = finetune.fit_head(tr, te, 0, 1e-2, num_classes=3)
    h2, _ = finetune.fit_head(tr, te, 0, 1e-2, kind="sgd", num_classes=3)
    assert torch.equal(h1.weight, h2.weight)  # same seed, same start
    assert torch.equal(state, torch.get_rng_state())  # global random state untouched
    head, hist = finetune.fit_head(tr, te, 15, 1e-1, num_classes=3, batch_size=16)
    assert hist.best_val_acc > 0.8 and hist.test_acc is None  # three well-separated clusters; no test set given
    _, tested = finetune.fit_head(tr, te, 15, 1e-1, num_classes=3, batch_size=16, test_feats=te)
    assert tested.test_acc == pytest.approx(tested.best_val_acc)  # the same images: the best epoch's score


def test_run_strategy_sets_bn_momentum(cfg):
    small = cfg.replace(train_size=32, test_size=16, batch_size=16, device="cpu")
    s = finetune.Strategy("head", "fc", 1e-3, pretrained=False, bn_momentum=0.3)
    row, hist, model = finetune.run_strategy(small, s, epochs=1, time_steps=0, progress=False)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.momentum == 0.3 for m in bns)
    assert row["epochs"] == 1 and len(hist.epoch) == 1
