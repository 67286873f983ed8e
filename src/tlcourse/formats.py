"""One table of deployment formats (notebook 07, ``python -m tlcourse bench``, ``benchmarks/deployment.py``).

Each format is built into a folder, then measured on the same images and the same machine: size on
disk, accuracy and agreement with fp32 eager, and batch-1 latency (median and p90) per input size.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import export, quantize
from .checkpoint import ModelMeta
from .errors import TLCourseError

FORMATS = {  # short name (the bench command's --formats) -> row name in the table
    "eager": "fp32 eager (PyTorch)",
    "torchscript": "TorchScript fp32",
    "onnx": "ONNX Runtime fp32",
    "int8-dynamic": "INT8 dynamic (PyTorch)",
    "int8-fx": "INT8 static FX (PyTorch)",
    "int8-onnx": "INT8 static (ONNX Runtime)",
}


# ---------------------------------------------------------------- measuring


@dataclass
class Latency:
    """Batch latency in milliseconds: median and 90th percentile over ``repeats`` timed runs."""

    median_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    threads: int
    shape: tuple[int, ...]

    def __str__(self) -> str:
        return (
            f"{self.median_ms:.2f} ms median, {self.p90_ms:.2f} ms p90 "
            f"({self.repeats} runs after {self.warmup} warm-up, {self.threads} thread{'s' * (self.threads != 1)}, "
            f"input {list(self.shape)})"
        )


def measure_latency(fn: Callable, x: torch.Tensor, warmup: int = 10, repeats: int = 50) -> Latency:
    """Time ``fn(x)``: ``warmup`` untimed calls (allocations, kernel selection), then ``repeats`` timed ones."""
    threads = getattr(fn, "threads", torch.get_num_threads())
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return Latency(float(np.median(times)), float(np.percentile(times, 90)), repeats, warmup, threads, tuple(x.shape))


def measure_latencies(fn: Callable, sizes: Sequence[int], warmup: int = 10, repeats: int = 50) -> dict[int, Latency]:
    """Batch-1 latency at each input size, on one fixed random image per size."""
    return {
        s: measure_latency(fn, torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(s)), warmup, repeats)
        for s in sizes
    }


def file_size_mb(path: str | Path) -> float:
    """Size on disk in megabytes (10^6 bytes)."""
    return os.path.getsize(path) / 1e6


@torch.no_grad()
def predict_logits(fn: Callable, x: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """Logits for a whole preprocessed tensor, in batches."""
    return torch.cat([fn(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


# ---------------------------------------------------------------- the comparison table


@dataclass
class Candidate:
    """A deployable form of the model: something to call, the file it ships as, how it was made."""

    name: str
    fn: Callable | None
    path: Path | None
    note: str = ""
    build_s: float = float("nan")  # seconds to export / quantize


@dataclass
class FormatRow:
    """One line of the deployment table."""

    name: str
    file: str = ""
    size_mb: float = float("nan")
    accuracy: float = float("nan")
    agreement: float = float("nan")  # share of test images whose top-1 class equals the first row's
    max_abs_diff: float = float("nan")
    latency: dict[int, Latency] = field(default_factory=dict)
    note: str = ""


def build_formats(
    model,
    meta: ModelMeta,
    calibration: torch.Tensor | None,
    out_dir: str | Path,
    progress: bool = True,
    names: Sequence[str] = tuple(FORMATS),
) -> list[Candidate]:
    """The formats of :data:`FORMATS` named in ``names``, built into ``out_dir``, in that order.

    ``calibration`` (preprocessed images) is needed by the static INT8 formats only. A format that
    fails to build keeps its place, with ``fn=None`` and the error in ``note``.
    """
    from tqdm.auto import tqdm

    from . import checkpoint

    model, meta = export.unwrap(model, meta)
    model = copy.deepcopy(model).cpu().eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x1 = calibration[:1] if calibration is not None else export.example_batch(meta, batch=1)

    def calibrated() -> torch.Tensor:
        if calibration is None:
            raise export.ExportError("static INT8 needs calibration images; pass quantize.calibration_images(...)")
        return calibration

    def eager():
        return model, checkpoint.save_model(out / "model.pt", model, meta), "PyTorch, tlcourse checkpoint"

    def torchscript():
        r = export.export_torchscript(model, out / "model.ts.pt", meta, example=x1)
        return export.load_torchscript(r.path), r.path, "torch.jit.trace"

    def onnx():
        session = export.OnnxModel(export.export_onnx(model, out / "model.onnx", meta, example=x1).path)
        return session, session.path, f"{session.threads} intra-op thread{'s' * (session.threads != 1)}"

    def int8_dynamic():
        q = quantize.quantize_dynamic(model)
        return q, export.save_torchscript(q, out / "model.int8-dynamic.ts.pt", x1), "Linear head only"

    def int8_fx():
        q = quantize.quantize_static_fx(model, calibrated())
        return (
            q,
            export.save_torchscript(q, out / "model.int8-fx.ts.pt", x1),
            f"{torch.backends.quantized.engine} engine, {len(calibration)} calibration images",
        )

    def int8_onnx():
        src = out / "model.onnx"
        if not src.exists():
            export.export_onnx(model, src, meta, example=x1)
        q = quantize.quantize_static_onnx(src, out / "model.int8.onnx", calibrated(), meta=meta)
        return export.OnnxModel(q), q, f"QDQ, {len(calibration)} calibration images"

    builders = {
        "eager": eager,
        "torchscript": torchscript,
        "onnx": onnx,
        "int8-dynamic": int8_dynamic,
        "int8-fx": int8_fx,
        "int8-onnx": int8_onnx,
    }
    candidates = []
    for key in tqdm(names, desc="building formats", leave=False, disable=not progress):
        t0 = time.perf_counter()
        try:
            fn, path, note = builders[key]()
        except Exception as e:  # a failing path is a result to report, not a crash
            reason = str(e) if isinstance(e, TLCourseError) else f"{type(e).__name__}: {e}"
            candidates.append(Candidate(FORMATS[key], None, None, f"failed: {reason}"))
            continue
        candidates.append(Candidate(FORMATS[key], fn, Path(path), note, time.perf_counter() - t0))
    return candidates


def measure_formats(
    candidates: Sequence[Candidate],
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    sizes: Sequence[int] = (32, 224),
    warmup: int = 10,
    repeats: int = 50,
    progress: bool = True,
) -> list[FormatRow]:
    """Size on disk, accuracy and agreement on ``test_x`` (vs the first candidate), batch-1 latency at ``sizes``."""
    from tqdm.auto import tqdm

    rows, reference = [], None
    for c in tqdm(candidates, desc="measuring formats", leave=False, disable=not progress):
        row = FormatRow(c.name, note=c.note)
        rows.append(row)
        if c.fn is None:
            continue
        row.file, row.size_mb = c.path.name, file_size_mb(c.path)
        logits = predict_logits(c.fn, test_x)
        reference = logits if reference is None else reference
        row.accuracy = float((logits.argmax(1) == test_y).float().mean())
        row.agreement = float((logits.argmax(1) == reference.argmax(1)).float().mean())
        row.max_abs_diff = float((logits - reference).abs().max())
        row.latency = measure_latencies(c.fn, sizes, warmup, repeats)
    return rows


def compare_formats(
    model,
    meta: ModelMeta,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    calibration: torch.Tensor,
    out_dir: str | Path,
    sizes: Sequence[int] = (32, 224),
    warmup: int = 10,
    repeats: int = 50,
    progress: bool = True,
) -> list[FormatRow]:
    """:func:`build_formats` then :func:`measure_formats`: the whole table in one run."""
    candidates = build_formats(model, meta, calibration, out_dir, progress)
    return measure_formats(candidates, test_x, test_y, sizes, warmup, repeats, progress)


# ---------------------------------------------------------------- writing the table


def format_records(rows: Sequence[FormatRow]) -> list[dict]:
    """One flat dict per row (latency columns per input size), in the table's column order."""
    sizes = sorted({s for r in rows for s in r.latency})
    records = []
    for r in rows:
        rec = {
            "format": r.name,
            "file": r.file,
            "size (MB)": r.size_mb,
            "test acc (%)": r.accuracy * 100,
            "agrees with fp32 (%)": r.agreement * 100,
            "max |Δlogit|": r.max_abs_diff,
        }
        for s in sizes:
            lat = r.latency.get(s)
            rec[f"{s}px median (ms)"] = lat.median_ms if lat else float("nan")
            rec[f"{s}px p90 (ms)"] = lat.p90_ms if lat else float("nan")
        rec["note"] = r.note
        records.append(rec)
    return records


def rows_to_frame(rows: Sequence[FormatRow]):
    """The table as a pandas DataFrame indexed by format."""
    import pandas as pd

    return pd.DataFrame(format_records(rows)).set_index("format")


def markdown_cell(v) -> str:
    """A number rounded for reading (3 significant figures or so, ``—`` for NaN), or text with ``|`` escaped."""
    if isinstance(v, float):
        if np.isnan(v):
            return "—"
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"
    return str(v).replace("|", "\\|")


def markdown_table(records: Sequence[dict]) -> str:
    """A GitHub markdown table of dicts, columns in the first dict's order (no extra dependency)."""
    cols = list(records[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(markdown_cell(r.get(c, "")) for c in cols) + " |" for r in records]
    return "\n".join(lines)


def to_markdown(rows: Sequence[FormatRow]) -> str:
    """A GitHub markdown table of :func:`compare_formats` rows."""
    return markdown_table(format_records(rows))
