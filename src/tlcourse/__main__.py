"""Command line: ``python -m tlcourse train | evaluate | predict | prefetch | cache``.

Errors a learner can fix print one line (no traceback) and exit with status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import cachedir, cli_deploy, config, data, distributed, loaders, paths, photos, runtime
from .errors import TLCourseError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile", choices=list(config.PROFILES), help="default: TLCOURSE_PROFILE, else quick (full on a GPU)"
    )
    p.add_argument(
        "--data-dir",
        help="folder holding cifar10/{train,test}/ or cifar-10-batches-py/; train: or a folder of photos, "
        "<dir>/train/<class>/ (+ val/, test/) or <dir>/<class>/, read at 224 px unless --image-size",
    )
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--seed", type=int, default=0)


def run_recipe(a: argparse.Namespace, cfg: config.Config) -> int:
    from . import recipes

    recipe = recipes.get_recipe(a.recipe)
    out = Path(a.out or f"checkpoints/{cfg.backbone}-{recipe.name}.pt")
    paths.check_destination(out, TLCourseError)  # a bad --out is refused now, not after the run
    print(f"recipe {recipe.name}: {recipe.summary}")
    clf, ev, seconds = recipes.run_recipe(recipe, cfg, out, progress=not a.no_progress)
    print(
        f"test accuracy {ev.accuracy:.2%} on {len(ev.labels):,} images ({clf.meta.backbone}, {recipe.image_size}px, "
        f"recipe {recipe.name}) in {seconds['total'] / 60:.1f} min"
    )
    print(f"saved {out}")
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from .classifier import ImageClassifier

    if a.recipe and not a.profile:
        a.profile = "full"  # a recipe is a claim about the whole data set
    ctx = distributed.init_distributed(a.device)  # under torchrun: join the other processes; else rank 0 of 1
    if a.recipe and ctx.world_size > 1:
        raise TLCourseError("--recipe runs in one process; start it with python -m tlcourse, not torchrun")
    say = print if ctx.is_main else _silent  # only rank 0 prints
    cfg = config.get_config(
        a.profile,
        backbone=a.backbone,
        data_dir=a.data_dir,
        device=ctx.device,
        seed=a.seed,
        batch_size=a.batch_size,
        image_size=a.image_size,
        epochs=a.epochs,
        finetune_epochs=a.finetune_epochs,
    )
    runtime.seed_everything(cfg.seed)  # the same seed on every rank: the same initial head
    say(runtime.describe(cfg))
    if ctx.world_size > 1:
        say(
            f"DistributedDataParallel: {ctx.world_size} processes ({'nccl' if 'cuda' in ctx.device else 'gloo'}), "
            f"{cfg.batch_size} images per process per step (global batch {cfg.batch_size * ctx.world_size}), "
            f"--lr-scaling {a.lr_scaling}"
        )
    if a.recipe:
        return run_recipe(a, cfg)
    out = Path(a.out or f"checkpoints/{cfg.backbone}-{cfg.profile}.pt")
    paths.check_destination(out, TLCourseError)  # a bad --out is refused now, not after the run
    with distributed.main_process_first():  # rank 0 decodes, caches and downloads; the others then read
        photo_dir = a.data_dir if a.data_dir and photos.is_photo_folder(a.data_dir) else None
        if photo_dir:  # a folder of photos (notebook 08): val steers the epochs, test is used once, at the end
            cfg = cfg.replace(image_size=a.image_size or config.PHOTO_SIZE)
            found = photos.load_photos(photo_dir, cfg)
            say(f"{found.layout.describe()}; images per split: { {s: len(getattr(found, s)) for s in photos.SPLITS} }")
            pl = photos.make_photo_loaders(found, cfg, cfg.image_size)
            phase_loaders = {"head": pl.train if a.uncached else pl.train_clean, "layer4": pl.train}
            val_loader, final_loader, classes = pl.val, pl.test, found.classes
        else:  # CIFAR-10 (or a folder like it): a validation slice of its training split steers the epochs
            train_loader, val_loader, final_loader = loaders.make_loaders(cfg)
            phase_loaders = {"head": train_loader, "layer4": train_loader}
            classes = data.load_datasets(cfg).train.classes  # CIFAR-10's, or a custom folder's
        clf = ImageClassifier(
            cfg.backbone, len(classes), classes, image_size=cfg.image_size, device=cfg.device, weights_path=a.weights
        )
    if photo_dir:
        clf.meta = photos.model_meta(found, cfg.backbone, cfg.image_size)
    t0 = time.perf_counter()
    for phase, epochs, lr in (("head", cfg.epochs, cfg.lr_head), ("layer4", cfg.finetune_epochs, cfg.lr_finetune)):
        if epochs <= 0:
            continue
        hist = clf.train(
            phase_loaders[phase],
            epochs,
            val_loader,
            phase=phase,
            lr=distributed.scale_lr(lr, a.lr_scaling),
            progress=not a.no_progress,
            checkpoint_path=out.with_name(f"{out.stem}.{phase}.state.pt"),
            resume=a.resume,
            cache=phase == "head" and not a.uncached,
            sync_bn=a.sync_bn,
        )
        if hist.interrupted:
            say("stopped; run the same command with --resume to continue", file=sys.stderr)
            return 130
    result = clf.evaluate(final_loader)  # every rank evaluates its shard; the logits are gathered
    if ctx.is_main:
        clf.save_model(out)
    say(
        f"test accuracy {result.accuracy:.2%} on {len(result.labels):,} images "
        f"({cfg.backbone}, {cfg.image_size}px, profile {cfg.profile}) in {time.perf_counter() - t0:.0f}s"
    )
    say(f"saved {out}")
    distributed.cleanup_distributed()
    return 0


def _silent(*args, **kwargs) -> None:
    """``print`` on ranks other than 0."""


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
    test_loader = loaders.make_loaders(cfg, augment=False).test
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
        except (TLCourseError, MemoryError) as e:  # one line per bad file; the others are still predicted
            msg = e if isinstance(e, TLCourseError) else f"{image}: not enough memory to decode it; resize it"
            print(f"error: {msg}", file=sys.stderr)
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


def cmd_cache(a: argparse.Namespace) -> int:
    folder = config.default_cache_dir()
    if a.action == "clear":
        removed = cachedir.clear_cache(folder, a.kind)
        for c in removed:
            names = ", ".join(e.name for e in c.entries)
            print(f"removed {c.words} ({cachedir.format_bytes(c.bytes)}): {names}")
        print(f"{folder}: " + ("cleared" if removed else "nothing to remove"))
        return 0
    kinds = cachedir.summarize_cache(folder)
    print(f"cache folder: {folder} (set TLCOURSE_CACHE_DIR to move it)")
    for c in kinds:
        print(f"  {c.kind:<10} {cachedir.format_bytes(c.bytes):>10}  {c.words}, {len(c.entries)} entries")
    print(f"  {'total':<10} {cachedir.format_bytes(sum(c.bytes for c in kinds)):>10}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tlcourse", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="Phase 1 (head) then Phase 2 (layer4), evaluate, save a checkpoint")
    _common(t)
    t.add_argument(
        "--backbone",
        choices=list(config.BACKBONE_NAMES),
        help=f"default: TLCOURSE_BACKBONE, else {config.DEFAULT_BACKBONE}",
    )
    t.add_argument("--epochs", type=int, help="Phase 1 epochs (default: the profile's)")
    t.add_argument("--finetune-epochs", type=int, help="Phase 2 epochs (default: the profile's; 0 skips it)")
    t.add_argument("--image-size", type=int, help="input resolution; CIFAR's 32 px are upsampled to it")
    t.add_argument("--weights", help="a local file of ImageNet weights for the backbone (offline use)")
    t.add_argument(
        "--out",
        help="checkpoint path (default: checkpoints/<backbone>-<profile>.pt); a regular file, replaced atomically, "
        "or a new one (missing folders are created); a symlink to a regular file replaces that file and keeps "
        "the link; folders, devices, FIFOs and dangling links are refused before training starts",
    )
    t.add_argument("--resume", action="store_true", help="continue an interrupted run from its state files")
    t.add_argument(
        "--batch-size",
        type=int,
        help=f"images per step per process (default {config.BATCH_SIZE}); under torchrun "
        "the global batch is this times the number of processes",
    )
    t.add_argument(
        "--lr-scaling",
        choices=distributed.LR_SCALING,
        default="none",
        help="under torchrun, the learning rate for the N-times larger global batch: none keeps it (default), "
        "linear multiplies it by N, sqrt by the square root of N",
    )
    t.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun on GPUs: SyncBatchNorm (statistics over all GPUs) for trainable BatchNorm; CUDA only",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch only)")
    t.add_argument("--recipe", help="a named schedule from tlcourse.recipes, e.g. cpu-fast (default profile: full)")
    t.add_argument(
        "--uncached",
        action="store_true",
        help="Phase 1 without cached features: augmented images through the whole network every epoch "
        "(as the seed ran it), instead of training the head on features computed once",
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

    c = sub.add_parser("cache", help="what the cache folder holds (size per kind); `cache clear` empties it")
    c.add_argument("action", nargs="?", choices=["list", "clear"], default="list")
    c.add_argument(
        "--kind",
        nargs="+",
        choices=list(cachedir.KINDS),
        help="clear only these kinds (default: all; files of kind other only when named, the folder may be shared)",
    )
    c.set_defaults(func=cmd_cache)
    cli_deploy.add_deployment_commands(sub)
    from . import render

    render.add_render_command(sub)
    return p


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
