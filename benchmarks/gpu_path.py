"""Training throughput on a GPU: the seed's habits against the course's GPU path, one run.

    python benchmarks/gpu_path.py [--sizes 32 64 128 224] [--batch 256] [--steps 30]

Rows per input size, each a full training step of every layer (forward, loss, backward, Adam):
- seed loop: a PIL DataLoader (the seed's transforms, 8 workers), float32, NCHW, batches copied
  from host memory every step;
- data on the GPU: the uint8 images held on the device and augmented there in batches
  (augment.BatchTransform), float32, NCHW;
- + channels_last; + bf16 autocast (train.train_one_epoch's default on CUDA); + torch.compile.
Images are random uint8 arrays the size of CIFAR-10 images: throughput does not depend on what
they show, and the GPU machine has no copy of the data set. Needs CUDA; exits with a message otherwise.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
from common import fresh_feature_cache, write_table

from tlcourse import augment, data, devices, loaders, models


def steps_per_second(model, loader, steps: int, amp: bool, channels_last: bool, device: torch.device) -> float:
    """Images/s of training steps over ``loader`` (after 5 warm-up steps), synchronized with the GPU."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    it = iter(loader)

    def step():
        x, y = next(it)
        x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
        y = y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with devices.autocast(device, amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        return len(y)

    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for _ in range(5):
        step()
    sync()
    t0, n = time.perf_counter(), 0
    for _ in range(steps):
        n += step()
    sync()
    return n / (time.perf_counter() - t0)


def endless(loader):
    while True:
        yield from loader


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 224])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--device", default="cuda", help="cpu only to check the script itself")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_path.py measures the GPU path and needs CUDA; no GPU is visible here")
    torch.backends.cudnn.benchmark = True
    n = a.batch * (a.steps + 6)
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    mean, std = models.normalization(a.backbone)
    base = models.build_model(a.backbone, pretrained=False)
    rows = []
    for size in a.sizes:
        pil_ds = loaders.ArrayDataset(
            data.ImageArrays(images, labels, data.CLASSES), augment.reference_transform(True, size, mean, std)
        )
        pil_loader = torch.utils.data.DataLoader(
            pil_ds,
            a.batch,
            shuffle=True,
            num_workers=a.workers,
            pin_memory=True,
            persistent_workers=True,
            drop_last=True,
        )
        gpu_loader = loaders.TensorLoader(
            images,
            labels,
            a.batch,
            shuffle=True,
            drop_last=True,
            device=device,
            transform=augment.BatchTransform(True, size, mean, std),
        )
        configs = [
            ("seed loop: PIL DataLoader, fp32, NCHW", endless(pil_loader), False, False, False),
            ("data on the GPU, fp32, NCHW", endless(gpu_loader), False, False, False),
            ("+ channels_last", endless(gpu_loader), False, True, False),
            ("+ bf16 autocast", endless(gpu_loader), True, True, False),
            ("+ torch.compile", endless(gpu_loader), True, True, True),
        ]
        baseline = None
        for label, loader, amp, cl, comp in configs:
            model = copy.deepcopy(base)
            run_model = torch.compile(model) if comp else model
            rate = steps_per_second(run_model, loader, a.steps, amp, cl, device)
            baseline = baseline or rate
            rows.append(
                {"input px": size, "path": label, "img/s": round(rate), "vs seed loop": f"{rate / baseline:.1f}x"}
            )
            print(rows[-1], flush=True)
        del pil_loader
    write_table(
        "gpu_path",
        "Training throughput on a GPU: the seed's loop vs the course's GPU path",
        rows,
        [
            f"Backbone {a.backbone} (all layers training; weights do not change the speed), batch {a.batch}, "
            f"{a.steps} timed steps after 5 warm-up steps; seed loop with {a.workers} DataLoader workers.",
            "Inputs: random uint8 images of CIFAR-10's size (32 px), upsampled to the input size by the transforms.",
            f"Command: python benchmarks/gpu_path.py --sizes {' '.join(map(str, a.sizes))} "
            f"--batch {a.batch} --steps {a.steps}",
        ],
    )


if __name__ == "__main__":
    with fresh_feature_cache():
        main()
