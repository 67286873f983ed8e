"""Engines for the frozen body: eager PyTorch, torch.compile, ONNX Runtime and OpenVINO, side by side.

    python benchmarks/engines.py [--sizes 32 96 128 160 224] [--images 512] [--batch 64] [--threads 2]

The body is EfficientNet-Lite0 without ``fc`` (what Phase 1 caches), on CIFAR-10 training images upsampled
bilinearly. Each engine's set-up (export, compilation) is timed apart from its steady-state images per
second; every engine's features are compared with eager PyTorch's (max |difference|).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import fresh_feature_cache, write_table

from tlcourse import augment, config, data, engine, models

ENGINES = ("eager", "torch.compile", "onnxruntime", "onnxruntime (fixed size)", "openvino")
Runner = Callable[[torch.Tensor], torch.Tensor]


def eager(body: torch.nn.Module, x: torch.Tensor, folder: Path) -> Runner:
    """inference_mode + channels_last: the package's PyTorch engine."""
    return engine.torch_engine(body, torch.device("cpu"), "benchmark").run


def compiled(body: torch.nn.Module, x: torch.Tensor, folder: Path) -> Runner:
    """torch.compile (inductor); its first call compiles, and counts as set-up."""
    torch._dynamo.reset()
    fn = torch.compile(body)

    def run(b: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fn(b.contiguous(memory_format=torch.channels_last))

    run(x)
    return run


def onnxruntime(body: torch.nn.Module, x: torch.Tensor, folder: Path, dynamic_size: bool = True) -> Runner:
    """The package's ONNX Runtime engine: exported with dynamic height/width (or fixed), all graph optimizations."""
    path = folder / f"body-{'dynamic' if dynamic_size else x.shape[-1]}.onnx"
    if not path.exists():
        engine.export_engine(body, x, path, dynamic_size=dynamic_size)
    session = engine.open_session(path)
    return lambda b: torch.from_numpy(session.run(None, {"x": b.contiguous().numpy()})[0])


def onnxruntime_fixed(body: torch.nn.Module, x: torch.Tensor, folder: Path) -> Runner:
    return onnxruntime(body, x, folder, dynamic_size=False)


def openvino(body: torch.nn.Module, x: torch.Tensor, folder: Path) -> Runner:
    """OpenVINO (PyPI ``openvino``, an extra dependency) on the same ONNX file, reshaped to this input, in fp32."""
    import openvino as ov

    path = folder / "body-dynamic.onnx"
    if not path.exists():
        engine.export_engine(body, x, path)
    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].any_name: list(x.shape)})
    props = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"}
    request = core.compile_model(model, "CPU", props).create_infer_request()
    return lambda b: torch.from_numpy(request.infer({0: b.contiguous().numpy()})[0].copy())


BUILDERS = {
    "eager": eager,
    "torch.compile": compiled,
    "onnxruntime": onnxruntime,
    "onnxruntime (fixed size)": onnxruntime_fixed,
    "openvino": openvino,
}


def run_all(fn: Runner, batches: list[torch.Tensor], repeats: int = 3) -> tuple[torch.Tensor, float]:
    """Features of every batch and the images per second of the fastest of ``repeats`` passes.

    One pass is too short to trust: eager PyTorch keeps tuning kernels for a new shape over its first batches
    (one timed pass measured 329 img/s at 32 px where steady state is about four times that).
    """
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = torch.cat([fn(b).float() for b in batches])
        rates.append(len(out) / (time.perf_counter() - t0))
    return out, max(rates)


def measure(
    body: torch.nn.Module, images: torch.Tensor, size: int, batch: int, names: list[str], repeats: int
) -> list[dict]:
    mean, std = models.normalization("efficientnet_lite0")
    x = augment.BatchTransform(False, size, mean, std)(images)  # bilinear upsampling, then normalization
    batches = list(x.split(batch))
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t0 = time.perf_counter()
            try:
                fn = BUILDERS[name](body, batches[0], Path(tmp))
                fn(batches[0])  # warm-up
            except Exception as e:  # an engine that cannot run here is a row that says why
                rows.append({"input px": size, "engine": name, "note": f"{type(e).__name__}: {str(e)[:80]}"})
                print(rows[-1], flush=True)
                continue
            setup = time.perf_counter() - t0
            feats, rate = run_all(fn, batches, repeats)
            if name == "eager":
                reference, eager_rate = feats, rate
            row = {"input px": size, "engine": name, "img/s": round(rate), "set-up s": f"{setup:.1f}"}
            if reference is not None:
                row["vs eager"] = f"{rate / eager_rate:.2f}x"
                row["max abs diff"] = f"{float((feats - reference).abs().max()):.1e}"
            rows.append(row)
            print(row, flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 96, 128, 160, 224])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the images; the fastest counts")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    a = p.parse_args()
    names = ["eager", *[n for n in a.engines if n != "eager"]]  # eager first: the reference
    torch.set_num_threads(a.threads)
    cfg = config.get_config("full", device="cpu")
    images = data.load_split("train", cfg=cfg).images[: a.images]
    body, _ = models.split_model(models.build_model("efficientnet_lite0").eval(), "fc")
    body.eval()
    rows = [row for size in a.sizes for row in measure(body, images, size, a.batch, names, a.repeats)]
    write_table(
        "engines",
        "Frozen-body engines: eager PyTorch, torch.compile, ONNX Runtime, OpenVINO",
        rows,
        [
            f"EfficientNet-Lite0 body without fc (pooled 1280-d features), {len(images)} CIFAR-10 training images "
            f"upsampled bilinearly, batch {a.batch}, {a.threads} threads; the fastest of {a.repeats} timed passes over "
            "them after a warm-up batch.",
            "eager = inference_mode + channels_last (the package's PyTorch engine); onnxruntime = the package's engine "
            "(tlcourse.engine: one export with dynamic height/width, CPU provider, all graph optimizations); "
            "fixed size = the same export with height/width fixed; openvino = PyPI openvino on the same ONNX file, "
            "reshaped to the input, fp32 (an extra dependency, not installed by the package).",
            "set-up s = export / compilation / session creation plus the warm-up batch, not counted in img/s "
            "(openvino reads the file onnxruntime exported); "
            "max abs diff = largest |feature - eager feature| over all images (features reach about 6).",
            "Command: python benchmarks/engines.py --sizes "
            + " ".join(map(str, a.sizes))
            + f" --images {a.images} --batch {a.batch} --threads {a.threads} --repeats {a.repeats}",
        ],
    )


if __name__ == "__main__":
    with fresh_feature_cache():
        main()
