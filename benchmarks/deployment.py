"""Deployment table: size on disk, test accuracy and batch-1 CPU latency of every export format.

    python benchmarks/deployment.py                                  # trains a head on the quick profile
    python benchmarks/deployment.py --checkpoint checkpoints/efficientnet_lite0-quick.pt --threads 2

Prints a markdown table and writes it to benchmarks/results/deployment.md (not run by CI).
All formats are built and measured in one run, on one machine, with the thread count stated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from tlcourse import augment, config, data, features, formats, loaders, models, quantize, runtime, train
from tlcourse.checkpoint import ModelMeta
from tlcourse.classifier import ImageClassifier
from tlcourse.errors import TLCourseError

ROOT = Path(__file__).resolve().parents[1]
CLAIMED_CPU_MS = 10.0  # the seed document's claim: "~10 ms per image on CPU"


def trained_model(cfg: config.Config, head_epochs: int) -> tuple[torch.nn.Module, ModelMeta, str]:
    """The pretrained backbone with a head trained on cached features of the profile's training images."""
    train_loader, val_loader, _ = loaders.make_loaders(cfg, augment=False)
    model = models.build_model(cfg.backbone, pretrained=True)
    quiet = train.FitOptions(progress=False, log=None)
    hist = features.fit_cached(model, "fc", train_loader, val_loader, head_epochs, cfg.lr_head, cfg, options=quiet)
    meta = ModelMeta(cfg.backbone, data.CLASSES, cfg.image_size, *models.normalization(cfg.backbone))
    n = "all" if cfg.train_size is None else f"{cfg.train_size:,}"
    return (
        model.eval(),
        meta,
        (
            f"head trained on cached features of {n} training images ({head_epochs} epochs, "
            f"best validation accuracy {hist.best_val_acc:.1%})"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="efficientnet_lite0", choices=list(config.BACKBONE_NAMES))
    p.add_argument("--profile", default="quick", choices=list(config.PROFILES), help="data sizes (default quick)")
    p.add_argument("--checkpoint", help="measure this model file instead of training a head")
    p.add_argument("--image-size", type=int, default=32, help="training/accuracy resolution (default 32)")
    p.add_argument("--head-epochs", type=int, default=10)
    p.add_argument("--calibration", type=int, default=256, help="training images for static INT8 (default 256)")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 224], help="latency input sizes (default 32 224)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/deployment.md"))
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = config.get_config(a.profile, backbone=a.backbone, device="cpu", image_size=a.image_size)
    runtime.seed_everything(cfg.seed)
    t0 = time.perf_counter()
    info = runtime.describe_machine()  # before the run: the load average is other programs' load
    if a.checkpoint:
        clf = ImageClassifier.from_checkpoint(a.checkpoint, device="cpu")
        model, meta, origin = clf.model, clf.meta, f"checkpoint {a.checkpoint}"
        cfg = cfg.replace(backbone=meta.backbone, image_size=meta.image_size)
    else:
        model, meta, origin = trained_model(cfg, a.head_epochs)
    test = data.load_datasets(cfg).test
    tf = augment.BatchTransform(False, meta.image_size, meta.mean, meta.std)
    test_x, test_y = tf(test.images.clone()), test.labels
    calib = quantize.calibration_images(cfg, meta, a.calibration)
    with tempfile.TemporaryDirectory() as tmp:
        rows = formats.compare_formats(
            model, meta, test_x, test_y, calib, tmp, a.sizes, a.warmup, a.repeats, progress=False
        )
    eager = rows[0].latency
    claim = "; ".join(f"{s} px: {eager[s].median_ms:.1f} ms median" for s in a.sizes if s in eager)
    lines = [
        f"# Deployment formats: {meta.backbone}, {meta.image_size} px, CIFAR-10 (JPEG copy)",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, GPU {info['gpu']}; "
        f"{info['torch threads']} thread(s) for PyTorch and ONNX Runtime (intra-op), batch 1; "
        f"1-minute load average {info['load average']} when the run started (0 = idle; other programs' work makes "
        "timings slower and noisier)",
        f"- Software: Python {info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}; "
        f"date {info['date']}",
        f"- Model: {meta.backbone} (ImageNet weights), {origin}",
        f"- Accuracy: top-1 on {len(test_y):,} CIFAR-10 test images (class-balanced subset, profile "
        f"{cfg.profile}), input {meta.image_size} px; agreement = share of those images whose top-1 class "
        "equals fp32 eager's",
        f"- Latency: batch 1, random input, {a.warmup} warm-up then {a.repeats} timed runs; median and p90. "
        f"The {', '.join(f'{s} px' for s in a.sizes)} columns time the same files at that input size "
        "(compute cost only: the model was trained and scored at "
        f"{meta.image_size} px)",
        f"- Static INT8: {a.calibration} class-balanced training images for calibration",
        "",
        formats.to_markdown(rows),
        "",
        f"INT8 support ({meta.backbone}): {quantize.INT8_SUPPORT.get(meta.backbone, 'not recorded')}",
        "",
        f'Claim check, the seed\'s "~{CLAIMED_CPU_MS:.0f} ms per image on CPU": fp32 eager here: {claim}.',
        "",
        f"Total time {time.perf_counter() - t0:.0f} s. Command: `python benchmarks/deployment.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TLCourseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
