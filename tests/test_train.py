import math

import torch

from tlcourse import checkpoint, data, models, train


def _tiny(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.3 + y.view(-1, 1, 1, 1).float()  # learnable
    return data.TensorLoader(x, y, 16, shuffle=True, seed=seed), data.TensorLoader(x, y, 32)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))


def test_fit_learns_and_records_history():
    tr, te = _tiny()
    hist = train.fit(_net(), tr, te, epochs=4, lr=1e-2, progress=False, log=None)
    assert hist.epoch == [1, 2, 3, 4] and all(math.isfinite(v) for v in hist.train_loss)
    assert hist.test_acc[-1] > 0.9 and hist.train_loss[-1] < hist.train_loss[0]
    assert list(hist.to_frame().columns) == ["train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]


def test_step_lr_follows_the_seed():
    tr, te = _tiny()
    net = _net()
    opt = train.make_optimizer(net, 1e-3)
    hist = train.fit(
        net,
        tr,
        te,
        epochs=3,
        optimizer=opt,
        scheduler=train.make_scheduler(opt, step_size=2, gamma=0.1),
        progress=False,
        log=None,
    )
    assert [round(v, 6) for v in hist.lr] == [1e-3, 1e-3, 1e-4]


def test_optimizer_skips_frozen_parameters():
    m = models.build_model("resnet18", pretrained=False)
    models.freeze_until(m, "fc")
    opt = train.make_optimizer(m, 1e-3)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == 5130


def test_early_stopping_and_best_checkpoint(tmp_path):
    tr, _ = _tiny()
    noise = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    te = data.TensorLoader(noise, torch.randint(0, 2, (32,)), 32)  # nothing to learn: test loss soon stops falling
    meta = checkpoint.ModelMeta("resnet18", ("a", "b"), 8, (0.0,) * 3, (1.0,) * 3)
    hist = train.fit(
        _net(),
        tr,
        te,
        epochs=30,
        lr=0.5,
        patience=2,
        checkpoint_path=tmp_path / "run.state.pt",
        meta=meta,
        progress=False,
        log=None,
    )
    assert hist.stopped_early and len(hist.epoch) < 30
    saved_meta, state = checkpoint.read_model(tmp_path / "run.best.pt")
    assert saved_meta == meta and hist.best_epoch in hist.epoch


def test_evaluate_matches_predict():
    _, te = _tiny()
    net = _net()
    res = train.evaluate(net, te)
    logits, labels = train.predict(net, te)
    assert abs(res.accuracy - (logits.argmax(1) == labels).float().mean().item()) < 1e-9
