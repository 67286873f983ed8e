"""torchrun / DistributedDataParallel on a CPU: two gloo processes on 127.0.0.1 against one process.

Equivalence conditions (test_two_processes_match_one_with_the_same_global_batch, after two epochs, so two
different shuffles): the BatchNorm layers are
frozen (eval mode: each image is normalized with stored statistics, never with its batch's, which two
processes would compute over half a batch each); no augmentation (each rank draws its own augmentation
stream, so only the distribution, not the draws, matches one process); 64 images, divisible by 2 processes,
so no rank pads its shard with repeated images. Then batch b of both ranks together is exactly batch b of one
process with twice the batch size, and DDP's averaged gradient is that process's gradient.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tlcourse import checkpoint, distributed, loaders, train, training_state
from tlcourse.augment import BatchTransform
from tlcourse.checkpoint import ModelMeta
from tlcourse.errors import ConfigError

N_TRAIN, N_TEST, BATCH, WORLD = 64, 20, 8, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (N_TRAIN + N_TEST, 3, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (N_TRAIN + N_TEST,), generator=g)
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def tiny_model() -> nn.Module:
    """conv + BatchNorm (frozen, as a pretrained stem is in Phase 2), then a trainable conv and head."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    for p in [*model[0].parameters(), *model[1].parameters()]:
        p.requires_grad_(False)
    with torch.no_grad():  # non-trivial frozen statistics, so train-mode BatchNorm would show
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def run_fit(workdir: Path, batch_size: int, epochs: int, resume: bool = False, die_in_epoch: int | None = None):
    """One process's part of a training run (the same code with one process or several)."""
    (xtr, ytr), (xte, yte) = tiny_data()
    tf = BatchTransform(False, image_size=16)
    loader_cls = DyingLoader if die_in_epoch is not None else loaders.TensorLoader
    train_loader = loader_cls(xtr, ytr, batch_size=batch_size, shuffle=True, transform=tf, seed=0)
    train_loader.die_in_epoch = die_in_epoch
    test_loader = loaders.TensorLoader(xte, yte, batch_size=batch_size, transform=tf)
    model = tiny_model()
    meta = ModelMeta("tiny", ("a", "b", "c", "d"), 16, (0.5,) * 3, (0.25,) * 3)
    options = train.FitOptions(
        checkpoint_path=workdir / "run.state.pt", resume=resume, meta=meta, progress=False, log=None
    )
    history = train.fit(model, train_loader, test_loader, epochs, lr=1e-2, options=options)
    if distributed.is_main_process():
        torch.save({"weights": model.state_dict(), "val_acc": history.val_acc}, workdir / "result.pt")


class DyingLoader(loaders.TensorLoader):
    """Rank 1 exits abruptly in the middle of epoch ``die_in_epoch`` (1-based), as a killed process would."""

    def __iter__(self):
        epoch = self.epoch + 1
        for i, batch in enumerate(super().__iter__()):
            if epoch == self.die_in_epoch and i == 1 and distributed.get_rank() == 1:
                os._exit(3)
            yield batch


def worker(rank: int, port: int, workdir: Path, kwargs: dict) -> None:
    """A spawned process: torchrun's environment by hand, then the course's own set-up and training."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    torch.set_num_threads(1)
    writes = workdir / f"writes-rank{rank}.txt"
    atomic_write = checkpoint.atomic_write

    def recording_write(path, write, **kwargs):  # every file the package writes goes through here
        with open(writes, "a") as f:
            f.write(f"{path}\n")
        return atomic_write(path, write, **kwargs)

    checkpoint.atomic_write = recording_write
    ctx = distributed.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main) == (rank, WORLD, rank == 0)
    try:
        run_fit(workdir, **kwargs)
    finally:
        distributed.cleanup_distributed()


def spawn(workdir: Path, **kwargs) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the children
    mp.spawn(worker, args=(free_port(), workdir, kwargs), nprocs=WORLD, join=True)


def result(workdir: Path) -> dict:
    return torch.load(workdir / "result.pt", weights_only=True)


# ---------------------------------------------------------------- one process, no torchrun


def test_shards_together_are_one_global_batch():
    order = torch.randperm(13, generator=torch.Generator().manual_seed(0))
    for world in (1, 2, 3):
        shards = [distributed.shard_indices(order, r, world) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # equal steps on every rank (padded by repetition)
        b = 2
        for start in range(0, len(shards[0]), b):
            together = torch.cat([s[start : start + b] for s in shards]).sort().values
            padded = torch.cat([order, order])[: len(shards[0]) * world]
            assert torch.equal(together, padded[start * world : (start + b) * world].sort().values)
    assert torch.equal(distributed.gather_shards(order, 13), order)  # one process: the identity


def test_single_process_is_rank_zero_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.init_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.device) == (0, 1, True, "cpu")
    model = tiny_model()
    assert distributed.wrap_model(model) is model and distributed.is_main_process()
    assert loaders.TensorLoader(torch.zeros(5, 1), torch.zeros(5), batch_size=2).world_size == 1


def test_lr_scaling_rules_and_sync_bn_refusal(monkeypatch):
    assert distributed.scale_lr(1e-3, "none", 4) == 1e-3
    assert distributed.scale_lr(1e-3, "linear", 4) == pytest.approx(4e-3)
    assert distributed.scale_lr(1e-3, "sqrt", 4) == pytest.approx(2e-3)
    with pytest.raises(ConfigError, match="none, linear, sqrt"):
        distributed.scale_lr(1e-3, "cubic", 4)
    with pytest.raises(ConfigError, match="SyncBatchNorm runs on CUDA.*drop --sync-bn"):
        distributed.wrap_model(tiny_model(), sync_bn=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="launch with torchrun"):
        distributed.init_distributed("cpu")


# ---------------------------------------------------------------- two processes (gloo on 127.0.0.1)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    """Two processes, two epochs, uninterrupted: the run both slow tests compare against."""
    workdir = tmp_path_factory.mktemp("straight")
    spawn(workdir, batch_size=BATCH, epochs=2)
    return workdir


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(straight_run, tmp_path):
    run_fit(tmp_path, batch_size=BATCH * WORLD, epochs=2)
    ddp, one = result(straight_run), result(tmp_path)
    for name, w in one["weights"].items():
        torch.testing.assert_close(ddp["weights"][name], w, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(one["weights"]["7.weight"], tiny_model()[7].weight)  # training did move the head
    # Evaluation is sharded and gathered: the same accuracy on the same 20 held-out images, epoch by epoch.
    assert ddp["val_acc"] == pytest.approx(one["val_acc"])


@pytest.mark.slow
def test_killed_and_resumed_run_ends_at_the_same_weights_and_only_rank0_writes(straight_run, tmp_path):
    with pytest.raises(mp.ProcessExitedException):
        spawn(tmp_path / "killed", batch_size=BATCH, epochs=2, die_in_epoch=2)
    assert not (tmp_path / "killed" / "result.pt").exists()
    assert checkpoint.safe_load(tmp_path / "killed" / "run.state.pt", training_state.STATE_FORMAT)["epoch"] == 1
    spawn(tmp_path / "killed", batch_size=BATCH, epochs=2, resume=True)
    straight, resumed = result(straight_run), result(tmp_path / "killed")
    for name, w in straight["weights"].items():
        assert torch.equal(resumed["weights"][name], w), name
    for run in (straight_run, tmp_path / "killed"):
        assert not (run / "writes-rank1.txt").exists()
        written = {Path(p).name for p in (run / "writes-rank0.txt").read_text().split()}
        assert written == {"run.state.pt", checkpoint.best_path(run / "run.state.pt").name}


@pytest.mark.slow
def test_torchrun_cli_smoke_writes_one_checkpoint_and_prints_one_accuracy_line(cfg, tmp_path):
    out = tmp_path / "m.pt"
    cache = tmp_path / "cache"  # an empty feature cache (Phase 1 extracts, sharded), the decoded images shared
    cache.mkdir()
    (cache / "arrays").symlink_to((cfg.cache_dir / "arrays").resolve())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TLCOURSE_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    cmd += [f"--master_port={free_port()}", "-m", "tlcourse", "train", "--profile", "smoke", "--no-progress"]
    cmd += ["--backbone", "efficientnet_lite0", "--data-dir", str(cfg.data_dir), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("test accuracy") == 1 and r.stdout.count(f"saved {out}") == 1, r.stdout
    assert "2 processes" in r.stdout
    assert out.exists() and sorted(p.name for p in tmp_path.glob("m*")) == sorted(
        ["m.pt", "m.head.state.pt", "m.layer4.state.pt", "m.head.best.pt", "m.layer4.best.pt"]
    )
