"""The engine a frozen module runs on: ONNX Runtime on a CPU when it is installed, PyTorch otherwise and on a GPU.

Eager PyTorch runs EfficientNet-Lite0's depthwise convolutions slowly on a CPU; the same module exported to
ONNX and run by ONNX Runtime computes the same features 3.7-4.9x faster from 96 px up (benchmarks/engines.py).
The export happens once per (weights, module) and is kept under ``<cache_dir>/engines``; its height, width
and batch are dynamic, so one file serves every input size (measured as fast as a fixed-size export).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import checkpoint, devices
from .config import default_cache_dir
from .errors import ConfigError

ENGINES = ("auto", "onnxruntime", "torch")
# Features may differ from eager PyTorch's by at most this fraction of the largest |feature| (other summation
# orders in the convolutions): measured 2e-6 to 5e-6 for Lite0's pooled features and its layer3 output at
# 32-224 px (CIFAR-10 images), so 1e-4 leaves a 20x margin and still catches a wrong graph (errors of 1e-1 and up).
TOLERANCE = 1e-4
# "auto" exports only for jobs of at least this many image-equivalents at 32 px (images x (side/32)^2): an
# export costs about 2-4 s on 2 cores and eager PyTorch needs about 5 s for 10,000 of them. From 96 px up
# (>= 1,100 images; >= 200 at 224 px) ONNX Runtime is 3.7-4.9x faster and repays the export in the first run;
# at 32 px (>= 10,000 images) it is 1.4x faster, about even in the first run and ahead once the file is cached.
# Below that (the smoke profile's 500 images at 32-128 px) eager is as fast end to end. A cached engine always runs.
AUTO_MIN_WORK = 10_000
OPSET = 17
_SESSIONS: dict[Path, object] = {}  # engine file -> ONNX Runtime session, reused within a process


def fingerprint(module: nn.Module) -> str:
    """A short hash of a module's weights and buffers: changes whenever the cached values would."""
    h = hashlib.sha1()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Engine:
    """A callable that runs a frozen module on a batch; ``name`` says which engine, ``note`` why and how."""

    name: str  # "onnxruntime" or "torch"
    run: Callable[[torch.Tensor], torch.Tensor]
    note: str
    max_diff: float | None = None  # max |feature difference| vs eager PyTorch on the first images (onnxruntime)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)

    def describe(self) -> str:
        """For logs: ``ONNX Runtime (CPU, 2 threads; exported in 3.1 s; max |diff| vs PyTorch 1.2e-05)``."""
        label = "ONNX Runtime" if self.name == "onnxruntime" else "PyTorch"
        diff = f"; max |diff| vs PyTorch {self.max_diff:.1e}" if self.max_diff is not None else ""
        return f"{label} ({self.note}{diff})"


def engine_path(module: nn.Module, cache_dir: str | Path | None = None) -> Path:
    """Where ``module``'s ONNX engine is kept: keyed by its weights, its structure and the exporter's versions."""
    key = hashlib.sha1(repr((fingerprint(module), repr(module), torch.__version__, OPSET)).encode()).hexdigest()[:20]
    return Path(cache_dir or default_cache_dir()) / "engines" / f"{key}.onnx"


def onnxruntime_unavailable() -> str | None:
    """Why ONNX Runtime cannot run here (a one-line reason), or None when it can."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it to write the file)
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"{e.name or 'onnxruntime'} is not installed (pip install onnxruntime onnx)"
    return None


def describe_engine(device: str) -> str:
    """What "auto" runs the frozen body on for ``device``, for the banner (nothing is imported to find out)."""
    if torch.device(device).type != "cpu":
        return "PyTorch"
    return "ONNX Runtime" if all(map(_importable, ("onnxruntime", "onnx"))) else "PyTorch (no onnxruntime/onnx)"


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} thread" + ("s" if n != 1 else "")


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules[name] = None
        return False


def load_engine(
    module: nn.Module,
    example: torch.Tensor,
    engine: str = "auto",
    images: int | None = None,
    cache_dir: str | Path | None = None,
) -> Engine:
    """The engine that runs ``module`` (in eval mode) on batches like ``example``; ``engine`` forces one.

    ``"auto"``: ONNX Runtime on a CPU when it is installed and either its engine file is already cached or
    the job (``images`` of ``example``'s size) is big enough to pay for an export (:data:`AUTO_MIN_WORK`);
    PyTorch otherwise, with one warning line when ONNX Runtime was wanted but could not run.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    device = devices.device_of(module)
    if engine == "torch" or (engine == "auto" and device.type != "cpu"):
        return torch_engine(module, device, "on the GPU" if device.type != "cpu" else "engine='torch'")
    if device.type != "cpu":
        raise ConfigError(f"engine='onnxruntime' runs on the CPU, but the module is on {device}; use engine='auto'")
    path = engine_path(module, cache_dir)
    work = (images or len(example)) * example.shape[-2] * example.shape[-1] / 32**2
    if engine == "auto" and not path.exists() and work < AUTO_MIN_WORK:  # decided before importing anything
        return torch_engine(module, device, f"small job: {work:,.0f} < {AUTO_MIN_WORK:,} 32-px image-equivalents")
    missing = onnxruntime_unavailable()
    if missing and engine == "onnxruntime":
        raise ConfigError(f"engine='onnxruntime': {missing}; or use engine='auto'")
    try:
        if missing:
            raise RuntimeError(missing)
        return onnx_engine(module, example, path)
    except Exception as e:
        if engine == "onnxruntime":
            raise
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        warnings.warn(f"ONNX Runtime not used, features run in PyTorch: {why}", RuntimeWarning, stacklevel=2)
        return torch_engine(module, device, f"ONNX Runtime unavailable: {why}")


def torch_engine(module: nn.Module, device: torch.device, why: str) -> Engine:
    """Eager PyTorch: inference_mode, channels_last (except on MPS), mixed precision on CUDA."""
    if device.type != "mps":
        module.to(memory_format=torch.channels_last)  # outside inference_mode: parameters stay ordinary tensors

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), devices.autocast(device, True):
            return module(devices.to_device(x, device))

    where = "GPU" if device.type == "cuda" else device.type.upper()
    return Engine("torch", run, f"{where}, {_threads()}; {why}")


def onnx_engine(module: nn.Module, example: torch.Tensor, path: Path) -> Engine:
    """ONNX Runtime on the CPU from ``path``, exported first when missing; checked against eager PyTorch."""
    seconds = None
    if not path.exists():
        t0 = time.perf_counter()
        export_engine(module, example, path)
        seconds = time.perf_counter() - t0
    try:
        session = open_session(path)
    except Exception:  # a damaged file is exported again, never trusted
        _SESSIONS.pop(path, None)
        path.unlink(missing_ok=True)
        export_engine(module, example, path)
        session = open_session(path)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(None, {name: arr})[0])

    diff = check_engine(module, run, example[:2])
    how = f"exported in {seconds:.1f} s" if seconds is not None else f"cached {path.name}"
    return Engine("onnxruntime", run, f"CPU, {_threads()}; {how}", diff)


def export_engine(module: nn.Module, example: torch.Tensor, path: Path, dynamic_size: bool = True) -> Path:
    """Export a copy of ``module`` (eval mode, dynamic batch, height and width) to ONNX, written atomically.

    ``dynamic_size=False`` fixes height and width to ``example``'s (benchmarks/engines.py compares both).
    """
    frozen = copy.deepcopy(module).cpu().float().eval()  # the caller's module keeps its modes and memory format
    frozen.to(memory_format=torch.contiguous_format)
    buf = io.BytesIO()
    axes = {"x": {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}, "features": {0: "batch"}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: seconds here, where torch.export's takes ten times longer.
        torch.onnx.export(
            frozen,
            (example[:1].detach().to("cpu", torch.float32).contiguous(),),
            buf,
            input_names=["x"],
            output_names=["features"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    data = buf.getvalue()
    return checkpoint.atomic_write(path, lambda f: f.write(data), size_hint=len(data))


def open_session(path: Path):
    """An ONNX Runtime CPU session on ``path``: all graph optimizations, PyTorch's thread count."""
    if path in _SESSIONS:
        return _SESSIONS[path]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = torch.get_num_threads()  # the same threads PyTorch uses, nothing more
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    session = ort.InferenceSession(path.read_bytes(), opts, providers=["CPUExecutionProvider"])
    if len(_SESSIONS) >= 4:  # a few engines per process (train/test, a resolution sweep), not every one ever made
        _SESSIONS.pop(next(iter(_SESSIONS)))
    _SESSIONS[path] = session
    return session


def check_engine(module: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Max |difference| between ``run`` and eager ``module`` on ``x``; an error if above :data:`TOLERANCE`."""
    with torch.no_grad():
        want = module(x.to(devices.device_of(module))).float().cpu()
    diff = float((run(x).float() - want).abs().max())
    scale = float(want.abs().max())
    if not diff <= TOLERANCE * max(scale, 1e-6):
        raise RuntimeError(f"its outputs differ from PyTorch's by {diff:.2e} (largest value {scale:.2e})")
    return diff
