"""Images per second of each kind of work the course does, per input size and memory format.

    python benchmarks/throughput.py [--sizes 32 48 64] [--batch 128]

Rows: forward pass of the whole network (inference), the frozen prefix conv1..layer3 (what the
Phase 2 cache computes), one training step of layer4 + fc on cached layer3 outputs, and one
training step of the whole network. Each is timed in NCHW and in channels_last (NHWC).
"""

from __future__ import annotations

import argparse
import time

import torch
from common import fresh_feature_cache, write_table

from tlcourse import models


def rate(fn, n: int, reps: int = 3) -> float:
    """Images per second of ``fn`` (which processes ``n`` images), best of ``reps`` after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def measure(model: torch.nn.Module, size: int, batch: int, channels_last: bool) -> dict[str, float]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).eval()
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    prefix, suffix = models.split_model(model, "layer4")
    with torch.inference_mode():
        out = {
            "forward (inference)": rate(lambda: model(x), batch),
            "conv1..layer3 (inference)": rate(lambda: prefix(x), batch),
        }
    with torch.no_grad():  # not inference_mode: the cache is an input to a training step
        cached = prefix(x).contiguous(memory_format=fmt)

    def step(net, inp, params):
        opt = torch.optim.Adam(params, 1e-4)

        def run():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(inp), y).backward()
            opt.step()

        return run

    models.freeze_until(model, "layer4")
    models.train_mode(model)
    out["train layer4 + fc on cache"] = rate(
        step(suffix, cached, [p for p in model.parameters() if p.requires_grad]), batch
    )
    models.freeze_until(model, "conv1")
    models.train_mode(model)
    out["train all layers"] = rate(step(model, x, list(model.parameters())), batch, reps=2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 48, 64])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--backbone", default="efficientnet_lite0")
    a = p.parse_args()
    torch.manual_seed(0)
    model = models.build_model(a.backbone)
    rows = []
    for size in a.sizes:
        nchw, nhwc = measure(model, size, a.batch, False), measure(model, size, a.batch, True)
        for work in nchw:
            rows.append(
                {
                    "input px": size,
                    "work": work,
                    "NCHW img/s": round(nchw[work]),
                    "channels_last img/s": round(nhwc[work]),
                    "channels_last speed-up": f"{nhwc[work] / nchw[work]:.2f}x",
                }
            )
            print(rows[-1], flush=True)
    write_table(
        "throughput",
        "Throughput by kind of work, input size and memory format",
        rows,
        [
            f"Backbone {a.backbone}, batch {a.batch}, random inputs (speed does not depend on the pixels); "
            "best of 2-3 timed repeats after a warm-up.",
            "Command: python benchmarks/throughput.py --sizes " + " ".join(map(str, a.sizes)),
        ],
    )


if __name__ == "__main__":
    with fresh_feature_cache():
        main()
