import math

import torch

from tlcourse import checkpoint, config, loaders, models, train


def _tiny(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.3 + y.view(-1, 1, 1, 1).float()  # learnable
    return loaders.TensorLoader(x, y, 16, shuffle=True, seed=seed), loaders.TensorLoader(x, y, 32)


QUIET = train.FitOptions(progress=False, log=None)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))


def test_fit_learns_and_records_history():
    tr, te = _tiny()
    hist = train.fit(_net(), tr, te, epochs=4, lr=1e-2, options=QUIET)
    assert hist.epoch == [1, 2, 3, 4] and all(math.isfinite(v) for v in hist.train_loss)
    assert hist.test_acc[-1] > 0.9 and hist.train_loss[-1] < hist.train_loss[0]
    assert list(hist.to_frame().columns) == ["train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]


def test_step_lr_multiplies_the_rate_every_step_size_epochs():
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
        options=QUIET,
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
    te = loaders.TensorLoader(noise, torch.randint(0, 2, (32,)), 32)  # nothing to learn: test loss soon stops falling
    meta = checkpoint.ModelMeta("resnet18", ("a", "b"), 8, (0.0,) * 3, (1.0,) * 3)
    hist = train.fit(
        _net(),
        tr,
        te,
        epochs=30,
        lr=0.5,
        options=train.FitOptions(
            checkpoint_path=tmp_path / "run.state.pt", meta=meta, patience=2, progress=False, log=None
        ),
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


def test_defaults_come_from_config():
    tr, te = _tiny()
    net = _net()
    hist = train.fit(net, tr, te, epochs=1, options=QUIET)  # default optimizer and schedule
    assert hist.lr == [config.LR_HEAD]
    sched = train.make_scheduler(train.make_optimizer(net, 1.0))
    assert (sched.step_size, sched.gamma) == (config.STEP_SIZE, config.GAMMA)


def test_early_stopping_counts_epochs_without_a_lower_loss():
    stopping = train.EarlyStopping(patience=2)
    assert [stopping.update(loss) for loss in (1.0, 0.9, 0.95, 0.9)] == [False, False, False, True]
    assert (stopping.best_loss, stopping.bad_epochs) == (0.9, 2)
    never = train.EarlyStopping(patience=None)
    assert not any(never.update(1.0) for _ in range(10))


def test_fit_reports_one_line_per_epoch():
    tr, te = _tiny()
    lines = []
    train.fit(
        _net(), tr, te, epochs=2, lr=1e-2, options=train.FitOptions(progress=False, log=lines.append, desc="[x] ")
    )
    assert len(lines) == 2 and lines[0].startswith("[x] epoch  1/2  train loss") and "test loss" in lines[1]
