import math

import pytest
import torch

from tlcourse import checkpoint, config, errors, loaders, models, tracking, train


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
    assert hist.val_acc[-1] > 0.9 and hist.train_loss[-1] < hist.train_loss[0]
    assert list(hist.to_frame().columns) == ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    assert hist.test_acc is None  # no test loader given: no test figure


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
    te = loaders.TensorLoader(noise, torch.randint(0, 2, (32,)), 32)  # nothing to learn: val loss soon stops falling
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
    stopping = tracking.EarlyStopping(patience=2)
    assert [stopping.update(loss) for loss in (1.0, 0.9, 0.95, 0.9)] == [False, False, False, True]
    assert (stopping.best_loss, stopping.bad_epochs) == (0.9, 2)
    never = tracking.EarlyStopping(patience=None)
    assert not any(never.update(1.0) for _ in range(10))


def test_fit_reports_one_line_per_epoch():
    tr, te = _tiny()
    lines = []
    train.fit(
        _net(), tr, te, epochs=2, lr=1e-2, options=train.FitOptions(progress=False, log=lines.append, desc="[x] ")
    )
    assert len(lines) == 2 and lines[0].startswith("[x] epoch  1/2  train loss") and "val loss" in lines[1]


class _Counted:
    """Wraps a loader; ``passes`` counts the passes over it, ``at`` records ``clock[0]`` at each pass."""

    def __init__(self, loader, clock: list[int] | None = None, on_pass=None):
        self.loader, self.clock, self.on_pass = loader, clock, on_pass
        self.passes, self.at = 0, []

    def __iter__(self):
        self.passes += 1
        self.at.append(self.clock[0] if self.clock else None)
        if self.on_pass:
            self.on_pass()
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def test_fit_never_evaluates_the_test_loader_before_training_ends():
    tr, te = _tiny()
    training = _Counted(tr)
    clock = [0]
    training.on_pass = lambda: clock.__setitem__(0, training.passes)  # training passes so far
    val, test = _Counted(te, clock), _Counted(te, clock)
    hist = train.fit(_net(), training, val, epochs=3, lr=1e-2, options=QUIET, test_loader=test)
    assert val.at == [1, 2, 3]  # validation after every epoch
    assert test.at == [3]  # the test set once, after the last epoch
    assert hist.test_acc is not None and hist.test_loss is not None


def test_fit_chooses_and_restores_the_best_epoch_on_validation():
    tr, te = _tiny()
    net = _net()
    seen = {}

    def snapshot():  # the weights each validation pass scores
        seen[len(seen) + 1] = {k: v.clone() for k, v in net.state_dict().items()}

    flipped = loaders.TensorLoader(te.x, 1 - te.y, 32)  # the more the net learns, the worse it scores here
    hist = train.fit(net, tr, _Counted(flipped, on_pass=snapshot), epochs=4, lr=1e-2, options=QUIET, test_loader=te)
    best = max(range(4), key=lambda i: (hist.val_acc[i], i)) + 1  # ties go to the later epoch, as History.record
    assert hist.best_epoch == best < 4 and hist.best_val_acc == max(hist.val_acc)
    for k, v in net.state_dict().items():  # the model ends with the best epoch's weights...
        assert torch.equal(v, seen[best][k])
    assert hist.test_acc == pytest.approx(train.evaluate(net, te).accuracy)  # ...and the test figure is theirs


def test_resuming_a_state_that_chose_on_the_test_set_is_refused(tmp_path):
    tr, te = _tiny()
    path = tmp_path / "run.state.pt"
    train.fit(_net(), tr, te, 1, options=train.FitOptions(checkpoint_path=path, progress=False, log=None))
    state = torch.load(path, weights_only=True)
    h = state["history"]
    h["test_loss"], h["test_acc"] = h.pop("val_loss"), h.pop("val_acc")  # the layout before validation splits
    torch.save(state, path)
    resuming = train.FitOptions(checkpoint_path=path, resume=True, progress=False, log=None)
    with pytest.raises(errors.CheckpointError, match="older tlcourse.*without resume"):
        train.fit(_net(), tr, te, 2, options=resuming)


def test_fit_without_validation_keeps_the_last_epoch_and_never_stops_early():
    tr, te = _tiny()
    lines = []
    opts = train.FitOptions(patience=1, progress=False, log=lines.append)
    hist = train.fit(_net(), tr, None, epochs=3, lr=1e-2, options=opts, test_loader=te)
    assert len(hist.epoch) == 3 and not hist.stopped_early and hist.best_epoch == 3
    assert all(math.isnan(v) for v in hist.val_loss + hist.val_acc) and "val loss" not in lines[0]
    assert hist.test_acc is not None and lines[-1].startswith("test (once, after training)")
