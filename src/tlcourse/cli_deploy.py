"""The deployment subcommands of ``python -m tlcourse``: ``serve`` and ``bench`` (notebook 07)."""

from __future__ import annotations

import argparse

from . import runtime
from .errors import TLCourseError


def cmd_serve(a: argparse.Namespace) -> int:
    try:
        from . import serve
    except ImportError as e:
        raise TLCourseError(f"serving needs fastapi and uvicorn ({e}); run `pip install -r requirements.txt`") from None
    serve.check_loopback(a.host)
    serve.check_port(a.host, a.port)  # before the checkpoint loads: a port out of range or in use, in one line
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

    from . import formats

    info = runtime.describe_machine()
    print(
        f"{clf.meta.backbone} ({a.checkpoint}) | batch 1 | {info['torch threads']} threads | "
        f"torch {info['torch']}, onnxruntime {info['onnxruntime']} | {info['cpu']}, {info['cores']} cores"
    )
    print(f"{'format':<12}" + "".join(f"{f'{s} px median / p90 (ms)':>28}" for s in a.sizes))
    with tempfile.TemporaryDirectory() as tmp:
        candidates = formats.build_formats(clf, clf.meta, None, tmp, progress=False, names=a.formats)
        for name, c in zip(a.formats, candidates):
            if c.fn is None:
                print(f"{name:<12}{c.note}")
                continue
            lat = formats.measure_latencies(c.fn, a.sizes, a.warmup, a.repeats)
            print(f"{name:<12}" + "".join(f"{f'{v.median_ms:.2f} / {v.p90_ms:.2f}':>28}" for v in lat.values()))
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
