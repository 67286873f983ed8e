"""Command line: ``python -m tlcourse train | evaluate | predict | prefetch``.

Errors a learner can fix print one line (no traceback) and exit with status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import config, data, runtime
from .errors import TLCourseError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", choices=list(config.PROFILES), help="default: TLCOURSE_PROFILE, else quick (full on a GPU)"
    )
    p.add_argument("--data-dir", help="folder holding cifar10/{train,test}/ or cifar-10-batches-py/")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--seed", type=int, default=0)


def run_recipe(a: argparse.Namespace, cfg: config.Config) -> int:
    from . import recipes

    recipe = recipes.get_recipe(a.recipe)
    out = Path(a.out or f"checkpoints/{cfg.backbone}-{recipe.name}.pt")
    print(f"recipe {recipe.name}: {recipe.summary}")
    clf, ev, seconds = recipes.run_recipe(recipe, cfg, out, progress=not a.no_progress)
    print(
        f"test accuracy {ev.accuracy:.2%} on {len(ev.labels):,} images ({cfg.backbone}, {recipe.image_size}px, "
        f"recipe {recipe.name}) in {seconds['total'] / 60:.1f} min"
    )
    print(f"saved {out}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from .classifier import ImageClassifier

    if a.recipe and not a.profile:
        a.profile = "full"  # a recipe is a claim about the whole data set
    cfg = config.get_config(
        a.profile,
        backbone=a.backbone,
        data_dir=a.data_dir,
        device=a.device,
        seed=a.seed,
        image_size=a.image_size,
        epochs=a.epochs,
        finetune_epochs=a.finetune_epochs,
    )
    runtime.seed_everything(cfg.seed)
    print(runtime.describe(cfg))
    if a.recipe:
        return run_recipe(a, cfg)
    out = Path(a.out or f"checkpoints/{cfg.backbone}-{cfg.profile}.pt")
    train_loader, test_loader = data.make_loaders(cfg)
    classes = data.load_datasets(cfg)[0].classes  # CIFAR-10's, or a custom folder's
    clf = ImageClassifier(
        cfg.backbone, len(classes), classes, image_size=cfg.image_size, device=cfg.device, weights_path=a.weights
    )
    t0 = time.perf_counter()
    for phase, epochs, lr in (("head", cfg.epochs, cfg.lr_head), ("layer4", cfg.finetune_epochs, cfg.lr_finetune)):
        if epochs <= 0:
            continue
        hist = clf.train(
            train_loader,
            epochs,
            test_loader,
            phase=phase,
            lr=lr,
            progress=not a.no_progress,
            checkpoint_path=out.with_name(f"{out.stem}.{phase}.state.pt"),
            resume=a.resume,
            cache=phase == "head" and not a.seed_loop,
        )
        if hist.interrupted:
            print("stopped; run the same command with --resume to continue", file=sys.stderr)
            return 130
    result = clf.evaluate(test_loader)
    clf.save_model(out)
    print(
        f"test accuracy {result.accuracy:.2%} on {len(result.labels):,} images "
        f"({cfg.backbone}, {cfg.image_size}px, profile {cfg.profile}) in {time.perf_counter() - t0:.0f}s"
    )
    print(f"saved {out}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from .classifier import ImageClassifier

    clf = ImageClassifier.from_checkpoint(a.checkpoint, device=a.device)
    cfg = config.get_config(
        a.profile,
        backbone=clf.meta.backbone,
        data_dir=a.data_dir,
        device=str(clf.device),
        seed=a.seed,
        image_size=clf.meta.image_size,
    )
    _, test_loader = data.make_loaders(cfg, augment=False)
    result = clf.evaluate(test_loader)
    print(f"test accuracy {result.accuracy:.2%} on {len(result.labels):,} images ({a.checkpoint})")
    for name, acc in result.per_class_accuracy.items():
        print(f"  {name:<11} {acc:6.1%}")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from .classifier import ImageClassifier

    clf = ImageClassifier.from_checkpoint(a.checkpoint, device=a.device)
    failed = 0
    for image in a.images:
        try:
            pred = clf.predict(image, top_k=a.top_k)
        except TLCourseError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        others = ", ".join(f"{k} {v:.1%}" for k, v in list(pred.probabilities.items())[1:])
        print(f"{image}: {pred.label} {pred.probability:.1%}" + (f"  (then {others})" if others else ""))
    return 2 if failed else 0


def cmd_prefetch(a: argparse.Namespace) -> int:
    cfg = config.get_config(a.profile, data_dir=a.data_dir, device="cpu")
    for split in data.SPLITS:
        arr = data.load_split(split, cfg=cfg)
        print(f"CIFAR-10 {split}: {len(arr):,} images decoded and cached under {cfg.cache_dir}")
    if a.weights:
        from . import models

        for name in models.BACKBONES:
            models.build_model(name, pretrained=True)
            print(f"{name}: ImageNet weights ready")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tlcourse", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="Phase 1 (head) then Phase 2 (layer4), evaluate, save a checkpoint")
    _common(t)
    t.add_argument("--backbone", choices=list(config.BACKBONE_NAMES), help="default: TLCOURSE_BACKBONE, else resnet18")
    t.add_argument("--epochs", type=int, help="Phase 1 epochs (default: the profile's)")
    t.add_argument("--finetune-epochs", type=int, help="Phase 2 epochs (default: the profile's; 0 skips it)")
    t.add_argument("--image-size", type=int, help="input resolution; CIFAR's 32 px are upsampled to it")
    t.add_argument("--weights", help="a local file of ImageNet weights for the backbone (offline use)")
    t.add_argument("--out", help="checkpoint path (default: checkpoints/<backbone>-<profile>.pt)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its state files")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch only)")
    t.add_argument("--recipe", help="a named schedule from tlcourse.recipes, e.g. cpu-10min (default profile: full)")
    t.add_argument(
        "--seed-loop",
        action="store_true",
        help="Phase 1 as the seed ran it (augmented images through the whole network every epoch) "
        "instead of training the head on features computed once",
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="test accuracy and per-class accuracy of a checkpoint")
    e.add_argument("checkpoint")
    _common(e)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="classify image files with a checkpoint")
    r.add_argument("checkpoint")
    r.add_argument("images", nargs="+")
    r.add_argument("--top-k", type=int, default=3)
    r.add_argument("--device")
    r.set_defaults(func=cmd_predict)

    f = sub.add_parser("prefetch", help="download (if needed) and decode CIFAR-10 into the cache")
    _common(f)
    f.add_argument("--weights", action="store_true", help="also download the backbones' ImageNet weights")
    f.set_defaults(func=cmd_prefetch)
    add_deployment_commands(sub)
    return p


# ---------------------------------------------------------------- deployment: serve, bench (notebook 07)


def cmd_serve(a: argparse.Namespace) -> int:
    import socket

    try:
        from . import serve
    except ImportError as e:
        raise TLCourseError(f"serving needs fastapi and uvicorn ({e}); run `pip install -r requirements.txt`") from None
    serve.check_loopback(a.host)
    family = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((a.host, a.port))
        except OSError as e:
            raise TLCourseError(f"cannot listen on {a.host}:{a.port} ({e.strerror}); pick another --port") from None
    serve.run(a.checkpoint, host=a.host, port=a.port, device=a.device or "cpu")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    import torch

    from .classifier import ImageClassifier

    if a.threads is not None and a.threads < 1:
        raise TLCourseError(f"--threads {a.threads}: use 1 or more")
    if a.repeats < 1 or a.warmup < 0:
        raise TLCourseError("--repeats must be 1 or more and --warmup 0 or more")
    if min(a.sizes) < 8:
        raise TLCourseError(f"--sizes {min(a.sizes)}: input sizes must be at least 8 px")
    clf = ImageClassifier.from_checkpoint(a.checkpoint, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(a.threads or threads)
    try:
        _bench_formats(a, clf)
    finally:
        torch.set_num_threads(threads)  # main() may be called in-process (tests, notebooks)
    return 0


def _bench_formats(a: argparse.Namespace, clf) -> None:
    import tempfile

    import torch

    from . import export

    info = export.machine_description()
    print(
        f"{clf.meta.backbone} ({a.checkpoint}) | batch 1 | {info['torch threads']} threads | "
        f"torch {info['torch']}, onnxruntime {info['onnxruntime']} | {info['cpu']}, {info['cores']} cores"
    )
    print(f"{'format':<12}" + "".join(f"{f'{s} px median / p90 (ms)':>28}" for s in a.sizes))
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.formats:
            if name == "eager":
                fn = clf.model.eval()
            elif name == "torchscript":
                fn = export.load_torchscript(export.export_torchscript(clf, Path(tmp) / "m.ts.pt").path)
            else:
                fn = export.OnnxModel(export.export_onnx(clf, Path(tmp) / "m.onnx").path)
            cells = []
            for size in a.sizes:
                lat = export.measure_latency(fn, torch.randn(1, 3, size, size), a.warmup, a.repeats)
                cells.append(f"{lat.median_ms:.2f} / {lat.p90_ms:.2f}")
            print(f"{name:<12}" + "".join(f"{c:>28}" for c in cells))
    print(f"{a.repeats} timed runs after {a.warmup} warm-up runs, random input; the machine's other load counts")


def add_deployment_commands(sub) -> None:
    """The ``serve`` and ``bench`` subcommands."""
    s = sub.add_parser("serve", help="serve a checkpoint over HTTP: POST /predict, GET /health (loopback only)")
    s.add_argument("checkpoint")
    s.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--device", help="cpu (default) or cuda")
    s.set_defaults(func=cmd_serve)

    b = sub.add_parser("bench", help="batch-1 latency of a checkpoint: eager, TorchScript, ONNX Runtime")
    b.add_argument("checkpoint")
    b.add_argument("--sizes", type=int, nargs="+", default=[32, 224], help="input sizes in pixels (default 32 224)")
    b.add_argument(
        "--formats", nargs="+", choices=["eager", "torchscript", "onnx"], default=["eager", "torchscript", "onnx"]
    )
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--repeats", type=int, default=50)
    b.add_argument("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime (default: PyTorch's)")
    b.set_defaults(func=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TLCourseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
