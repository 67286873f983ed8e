"""Scaling out on one machine: 1 vs 2 processes with torchrun + DistributedDataParallel (gloo on CPU), one run.

    python benchmarks/scaling.py [--processes 1 2] [--images 2048] [--batch-size 64] [--epochs 2]

Each process count is launched with torchrun on 127.0.0.1 and runs, through the course's own code:
- speed: Phase 2 training steps (layer4 + head train; the frozen stages stay in eval mode) on the
  in-memory loader, ``--batch-size`` images per process, so the global batch grows with the processes;
  images/s counts every process's images over the epochs after the first (warm-up);
- equivalence: one epoch of Phase 1 on the whole network (every BatchNorm frozen, no augmentation) with a
  global batch of ``2 x --batch-size`` however many processes share it; the head's weights are compared;
- Phase 1 features: the frozen body over the training images, each rank its shard then all-gathered
  (features.extract, what the package does) against rank 0 alone then broadcast.
Threads per process = cores / processes (``--threads`` overrides), so every row uses the whole machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import fresh_feature_cache, write_table

from tlcourse import config, distributed, features, loaders, models, runtime, train

SCRIPT = Path(__file__).resolve()


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--images", type=int, default=2048, help="training images (CIFAR-10 subset)")
    p.add_argument("--batch-size", type=int, default=64, help="images per process per step")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--backbone", default=config.DEFAULT_BACKBONE, choices=list(config.BACKBONE_NAMES))
    p.add_argument("--image-size", type=int, default=config.IMAGE_SIZE)
    p.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # set for the processes torchrun starts
    return p.parse_args(argv)


def sync() -> None:
    distributed.barrier()
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure_speed(cfg: config.Config, a: argparse.Namespace) -> float:
    """Global training images per second over ``a.epochs`` epochs, after one warm-up epoch."""
    train_loader = loaders.make_loaders(cfg, augment=True).train
    model = models.build_model(cfg.backbone).to(cfg.device, memory_format=torch.channels_last)
    models.freeze_until(model, "layer4")
    step_model = distributed.wrap_model(model)
    optimizer = train.make_optimizer(model, config.LR_FINETUNE)
    seconds = 0.0
    for epoch in range(a.epochs + 1):
        train_loader.set_epoch(epoch)
        sync()
        t0 = time.perf_counter()
        train.train_one_epoch(step_model, train_loader, optimizer, amp=False, progress=False)
        sync()
        seconds += (time.perf_counter() - t0) if epoch else 0.0
    return a.epochs * a.images / seconds


def run_equivalence(cfg: config.Config, a: argparse.Namespace, out: Path) -> None:
    """One epoch, head only, full forward, global batch 2 x batch size; rank 0 saves the head."""
    world = distributed.get_world_size()
    train_loader = loaders.make_loaders(cfg.replace(batch_size=2 * a.batch_size // world), augment=False).train
    runtime.seed_everything(cfg.seed)  # the same new head for 1 and for 2 processes
    model = models.build_model(cfg.backbone).to(cfg.device, memory_format=torch.channels_last)
    models.freeze_until(model, "fc")
    optimizer = train.make_optimizer(model, config.LR_HEAD)
    train.train_one_epoch(distributed.wrap_model(model), train_loader, optimizer, amp=False, progress=False)
    if distributed.is_main_process():
        torch.save({n: w for n, w in model.named_parameters() if w.requires_grad}, out)


def measure_features(cfg: config.Config) -> dict[str, float]:
    """Seconds to give every rank the frozen body's features: shard + all-gather vs rank 0 + broadcast."""
    train_loader, _, test_loader = loaders.make_loaders(cfg, augment=False)
    model = models.build_model(cfg.backbone).to(cfg.device)
    prefix, _ = models.split_model(model, "fc")
    clean = features.without_augmentation(train_loader, test_loader)
    kw = dict(progress=False, engine="torch", log=None)  # the same engine for both ways
    features.extract(prefix, clean.replace(x=clean.x[:64], y=clean.y[:64]), **kw)  # warm-up
    sync()
    t0 = time.perf_counter()
    sharded = features.extract(prefix, clean, **kw)
    sync()
    t1 = time.perf_counter()
    whole = broadcast_features(prefix, clean, kw)
    sync()
    t2 = time.perf_counter()
    assert torch.allclose(sharded.x, whole.x, atol=1e-4) and torch.equal(sharded.y, whole.y)
    return {"shard + all-gather": t1 - t0, "rank 0 + broadcast": t2 - t1}


def broadcast_features(prefix, loader: loaders.TensorLoader, kw: dict) -> features.Features:
    """The alternative to sharding: rank 0 runs the whole set, then sends it to the others."""
    if distributed.get_world_size() == 1:
        return features.extract(prefix, loader, **kw)
    import torch.distributed as dist

    shape = [None]
    if distributed.is_main_process():
        feats = features.extract(prefix, loader.replace(rank=0, world_size=1), **kw)
        x, y, shape = feats.x.contiguous(), feats.y, [tuple(feats.x.shape)]
    dist.broadcast_object_list(shape, src=0)
    if not distributed.is_main_process():
        x, y = torch.empty(shape[0]), torch.empty(shape[0][1], dtype=torch.long)
    dist.broadcast(x, src=0)
    dist.broadcast(y, src=0)
    return features.Features(x, y)


def worker(a: argparse.Namespace) -> None:
    """One of the processes torchrun starts: the three measurements, results written by rank 0."""
    ctx = distributed.init_distributed("cpu")
    torch.set_num_threads(a.threads or max(1, (os.cpu_count() or 1) // ctx.world_size))
    cfg = config.get_config(
        "full",
        device="cpu",
        backbone=a.backbone,
        train_size=a.images,
        test_size=64,
        batch_size=a.batch_size,
        image_size=a.image_size,
    )
    out = Path(a.worker)
    result = {"speed": measure_speed(cfg, a), "features": measure_features(cfg)}
    run_equivalence(cfg, a, out / f"head-{ctx.world_size}.pt")
    if ctx.is_main:
        result["threads"] = torch.get_num_threads()
        (out / f"result-{ctx.world_size}.json").write_text(json.dumps(result))
    distributed.cleanup_distributed()


def launch(processes: int, a: argparse.Namespace, out: Path) -> dict:
    """Run this script's worker under torchrun with ``processes`` processes on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
    argv += ["--master_addr=127.0.0.1", f"--master_port={port}", str(SCRIPT), "--worker", str(out)]
    argv += ["--images", str(a.images), "--batch-size", str(a.batch_size), "--epochs", str(a.epochs)]
    argv += ["--backbone", a.backbone, "--image-size", str(a.image_size)] + (
        ["--threads", str(a.threads)] if a.threads else []
    )
    threads = a.threads or max(1, (os.cpu_count() or 1) // processes)
    subprocess.run(argv, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads((out / f"result-{processes}.json").read_text())


def main() -> None:
    a = parse()
    if a.worker:
        return worker(a)
    out = Path(tempfile.mkdtemp(prefix="tlcourse-scaling-"))
    with fresh_feature_cache():  # TLCOURSE_CACHE_DIR, inherited by the workers
        results = {p: launch(p, a, out) for p in a.processes}
    base = results[min(results)]["speed"] / min(results)
    heads = {p: torch.load(out / f"head-{p}.pt", weights_only=True) for p in results}
    ref = heads[min(heads)]
    rows = []
    for p, r in results.items():
        diff = max((heads[p][k] - ref[k]).abs().max().item() for k in ref)
        feats = r["features"]
        rows.append(
            {
                "processes": p,
                "backend": "gloo" if p > 1 else "none (plain process)",
                "threads each": r["threads"],
                "images/s": f"{r['speed']:,.0f}",
                "efficiency": f"{r['speed'] / (p * base):.0%}",
                f"max abs head difference vs {min(heads)} process": f"{diff:.1e}",
                "equivalent (< 1e-5)": "yes" if diff < 1e-5 else "no",
                "features: shard + all-gather s": f"{feats['shard + all-gather']:.2f}",
                "features: rank 0 + broadcast s": f"{feats['rank 0 + broadcast']:.2f}",
            }
        )
    write_table(
        "scaling",
        "Scaling out: 1 vs 2 processes with torchrun + DistributedDataParallel on a CPU",
        rows,
        [
            f"Backbone {a.backbone} (ImageNet weights), {a.image_size} px, {a.images:,} CIFAR-10 training images, "
            f"{a.batch_size} images per process per step; launched by torchrun on 127.0.0.1.",
            "images/s: Phase 2 training (layer4 + head), all processes' images over "
            f"{a.epochs} epoch(s) after a warm-up epoch; efficiency = images/s / (processes x one process's).",
            "Threads per process: cores / processes unless --threads; the rows share the same cores, so on a CPU "
            "more processes only split the same arithmetic and add the gradient all-reduce.",
            f"Equivalence: one Phase 1 epoch on the whole network (BatchNorm frozen, no augmentation), global "
            f"batch {2 * a.batch_size} split over the processes; the head's weights against one process's.",
            "Features: seconds until every rank holds the frozen body's outputs for the training images "
            "(eager PyTorch for both ways).",
            "Command: python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
        ],
    )


if __name__ == "__main__":
    main()
