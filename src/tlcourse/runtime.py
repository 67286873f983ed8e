"""``setup_notebook()``: the one call every notebook's first cell makes."""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

from . import config, data, engine

COLAB_GPU_HINT = "no GPU in this Colab runtime: Runtime > Change runtime type > T4 GPU, then run this cell again"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def in_colab() -> bool:
    """True in a Google Colab kernel (its ``google.colab`` module is loaded or importable)."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ImportError:  # no ``google`` package at all
        return False


def describe_precision(device: str) -> str:
    """What training on ``device`` computes in: ``fp32``, ``bf16 autocast`` or ``fp16 autocast + GradScaler``."""
    dtype = config.pick_amp_dtype(device)
    if dtype is None:
        return "fp32"
    name = "bf16" if dtype == torch.bfloat16 else "fp16"
    return f"{name} autocast" + (" + GradScaler" if config.needs_grad_scaler(dtype) else "")


def describe_device(device: str) -> str:
    """``GPU <name>``, ``Apple GPU (mps)`` or ``CPU``, with the precision training uses there."""
    if device.startswith("cuda"):
        name = f"GPU {torch.cuda.get_device_name(torch.device(device))}"
    elif device == "mps":
        name = "Apple GPU (mps)"
    else:
        name = "CPU"
    return f"{name}, {describe_precision(device)}"


def describe(cfg: config.Config) -> str:
    """One banner line: profile, device and precision, data, backbone, sizes, threads."""
    n_train = "the rest" if cfg.train_size is None else f"{cfg.train_size:,}"
    n_test = "all" if cfg.test_size is None else f"{cfg.test_size:,}"
    line = (
        f"tlcourse | profile={cfg.profile} ({n_train} train / {cfg.val_size:,} val / {n_test} test, "
        f"{cfg.epochs}+{cfg.finetune_epochs} epochs) | device={describe_device(cfg.device)} | "
        f"data={data.describe_source(cfg)} | "
        f"backbone={cfg.backbone} (frozen body on {engine.describe_engine(cfg.device)}) | "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads | "
        f"seed={cfg.seed}"
    )
    if cfg.device == "cpu" and in_colab():
        line += f" | {COLAB_GPU_HINT}"
    return line


def enable_colab_widgets() -> None:
    """Let Colab draw ipywidgets 8 (it renders third-party widget versions only through its custom manager)."""
    try:
        from google.colab import output

        output.enable_custom_widget_manager()
    except (ImportError, AttributeError):  # an older or newer Colab without this call: widgets may not draw
        pass


def setup_notebook(profile: str | None = None, seed: int = 0, **overrides) -> config.Config:
    """Seed everything, pick the device and profile, set plot defaults, print one banner line."""
    cfg = config.get_config(profile, seed=seed, **overrides)
    seed_everything(cfg.seed)
    os.environ.setdefault("TQDM_MININTERVAL", "1")
    try:
        from . import plots

        plots.set_style()
    except ImportError:  # plotting libraries are optional outside notebooks
        pass
    if in_colab():
        enable_colab_widgets()
    print(describe(cfg))
    return cfg


def describe_machine() -> dict:
    """Where a measurement ran: CPU, cores, threads, other load, library versions, date."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:  # only the deployment notebook and benchmark need it
        ort_version = "not installed"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none used (CPU measurements)"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # busy machine -> noisy timings
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "gpu": gpu,
        "load average": round(load, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "quantized engine": torch.backends.quantized.engine,
        "date": datetime.date.today().isoformat(),
    }
