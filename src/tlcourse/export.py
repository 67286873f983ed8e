"""From a trained classifier to files you can ship: TorchScript, ONNX, INT8, and honest latency (notebook 07).

Every exported file gets a JSON sidecar (``model.onnx`` -> ``model.onnx.json``) recording the classes
and the preprocessing the model expects, and every export is checked against the eager model on
the same batch (:attr:`ExportResult.max_abs_diff`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import data, images
from .checkpoint import ModelMeta
from .errors import TLCourseError

SIDECAR_FORMAT = "tlcourse-export"
INPUT_NAME, OUTPUT_NAME = "image", "logits"

# Which INT8 paths each backbone supports, and why (printed by notebook 07 and the benchmark).
INT8_SUPPORT = {
    "efficientnet_lite0": (
        "dynamic: the Linear head only (1280x10 weights: almost nothing to gain). Static: FX graph mode "
        "and ONNX Runtime QDQ both work. Lite0 was designed for INT8 (ReLU6 instead of Swish, no "
        "squeeze-and-excitation), so every activation has a bounded range. For FX its TensorFlow 'SAME' "
        "convolutions become plain nn.Conv2d (+ ZeroPad2d) so BatchNorm folds into them, and each ReLU6 "
        "becomes ReLU + ReLU6 so Conv+BN+ReLU fuse; ONNX Runtime folds the ReLU6 (Clip) itself."
    ),
    "resnet18": (
        "dynamic: the Linear head only. Static: eager mode would need every `out + identity` add "
        "rewritten with FloatFunctional (torchvision ships a separate quantizable ResNet for that); FX "
        "graph mode traces the adds and quantizes them itself, and ONNX Runtime QDQ handles them too."
    ),
}


class ExportError(TLCourseError):
    """An export or quantization step failed; the message names the step and the cause."""


# ---------------------------------------------------------------- the model and its preprocessing


def unwrap(obj, meta: ModelMeta | None = None) -> tuple[nn.Module, ModelMeta]:
    """(model, meta) from an ``ImageClassifier``, or from a module plus its ``ModelMeta``."""
    if hasattr(obj, "model") and hasattr(obj, "meta"):
        return obj.model, obj.meta
    if isinstance(obj, nn.Module) and meta is not None:
        return obj, meta
    raise TypeError("pass an ImageClassifier, or a model together with meta=ModelMeta(...)")


def _module(obj) -> nn.Module:
    return obj.model if hasattr(obj, "model") and hasattr(obj, "meta") else obj


def for_export(model: nn.Module) -> nn.Module:
    """An eval-mode CPU copy with EfficientNet's TF-'SAME' convolutions as plain ``nn.Conv2d``.

    Numerically identical; symmetric padding moves into the convolution, asymmetric padding
    (stride-2 layers) stays as an ``nn.ZeroPad2d`` in front, so FX sees ordinary Conv2d -> BatchNorm.
    """
    model = copy.deepcopy(model).cpu().eval()
    try:
        from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding
    except ImportError:
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv2dStaticSamePadding):
                setattr(parent, name, _plain_conv(child))
    return model.eval()  # the new Conv2d modules start in training mode


def _plain_conv(conv: nn.Conv2d) -> nn.Module:
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        tuple(conv.stride),
        0,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    plain.load_state_dict(conv.state_dict())
    pad = getattr(conv, "static_padding", None)
    if not isinstance(pad, nn.ZeroPad2d):
        return plain
    left, right, top, bottom = pad.padding
    if left == right and top == bottom:
        plain.padding = (top, left)
        return plain
    return nn.Sequential(nn.ZeroPad2d(pad.padding), plain)


def preprocessing_spec(meta: ModelMeta, kind: str, **extra) -> dict:
    """What a deployment needs besides the weights: classes, sizes, normalization, tensor names."""
    s = meta.image_size
    return {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "kind": kind,
        "backbone": meta.backbone,
        "classes": list(meta.classes),
        "image_size": s,
        "source_size": meta.source_size,
        "mean": list(meta.mean),
        "std": list(meta.std),
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, s, s], "dtype": "float32", "layout": "NCHW, RGB"},
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", len(meta.classes)],
            "meaning": "unnormalized class scores; softmax gives probabilities",
        },
        "preprocessing": [
            "decode to RGB (EXIF rotation applied, transparency on white)",
            f"resize the short side to {meta.source_size} px (bilinear) and centre-crop "
            f"{meta.source_size}x{meta.source_size}: the training images' resolution",
            f"resize to {s}x{s} (bilinear, antialiased)" if s != meta.source_size else "no further resize",
            "scale to [0, 1], then (x - mean) / std per channel",
        ],
        "torch": torch.__version__,
        **extra,
    }


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def write_sidecar(model_path: str | Path, meta: ModelMeta, kind: str, **extra) -> Path:
    """Write the preprocessing record beside ``model_path``."""
    path = sidecar_path(model_path)
    path.write_text(json.dumps(preprocessing_spec(meta, kind, **extra), indent=2))
    return path


def read_sidecar(model_path: str | Path) -> dict:
    """The preprocessing record of an exported file, or a clear error when it is missing."""
    path = sidecar_path(model_path)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: no preprocessing record beside {model_path}; re-export the model") from None
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: not valid JSON ({e}); re-export the model") from None
    if spec.get("format") != SIDECAR_FORMAT:
        raise ExportError(f"{path}: not a tlcourse export record")
    return spec


def preprocess_image(image, spec: dict) -> np.ndarray:
    """Any image -> the float32 (1, 3, S, S) array an exported model expects, from its sidecar alone."""
    img = images.fit_square(images.load_image(image), spec["source_size"])
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]
    return data.BatchTransform(False, spec["image_size"], spec["mean"], spec["std"])(x).numpy()


# ---------------------------------------------------------------- exports


@dataclass
class ExportResult:
    """An exported file, its sidecar, and the largest logit difference from the eager model."""

    kind: str
    path: Path
    sidecar: Path
    max_abs_diff: float

    @property
    def size_mb(self) -> float:
        return file_size_mb(self.path)


@contextlib.contextmanager
def _quiet():
    """Silence deprecation notices: TorchScript, torch.ao.quantization and the TorchScript-based ONNX
    exporter are all deprecated in PyTorch 2.x yet still work in 2.14 (notebook 07 says so once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def example_batch(meta: ModelMeta, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A fixed random batch at the model's input size, for tracing and equivalence checks."""
    return torch.randn(batch, 3, meta.image_size, meta.image_size, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def max_abs_diff(reference: Callable, candidate: Callable, x: torch.Tensor) -> float:
    """Largest absolute difference between two models' logits on the same batch."""
    return float((reference(x).float() - candidate(x).float()).abs().max())


def _prepare(model, meta: ModelMeta | None, example: torch.Tensor | None, path: str | Path):
    """(model, meta, eval-mode export copy, example batch, path with its folder made) for an export."""
    model, meta = unwrap(model, meta)
    x = example if example is not None else example_batch(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return model, meta, for_export(model), x, path


def export_torchscript(
    model, path: str | Path, meta: ModelMeta | None = None, method: str = "trace", example: torch.Tensor | None = None
) -> ExportResult:
    """Save a TorchScript file (``trace``: record one run; ``script``: compile the Python) plus sidecar."""
    model, meta, eager, x, path = _prepare(model, meta, example, path)
    try:
        with _quiet(), torch.no_grad():
            scripted = torch.jit.trace(eager, x, check_trace=False) if method == "trace" else torch.jit.script(eager)
            torch.jit.save(scripted, str(path))
            loaded = torch.jit.load(str(path))
    except Exception as e:
        raise ExportError(
            f"TorchScript {method} of {meta.backbone} failed ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    diff = max_abs_diff(model.cpu().eval(), loaded, x)
    return ExportResult(
        "torchscript", path, write_sidecar(path, meta, "torchscript", method=method, max_abs_diff=diff), diff
    )


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load a TorchScript file (no tlcourse or model code needed)."""
    with _quiet():
        return torch.jit.load(str(path), map_location="cpu").eval()


def export_onnx(
    model,
    path: str | Path,
    meta: ModelMeta | None = None,
    example: torch.Tensor | None = None,
    dynamo: bool = False,
    opset: int = 17,
) -> ExportResult:
    """Save an ONNX file with dynamic batch, height and width, plus sidecar; checked with ONNX Runtime.

    ``dynamo=False`` uses the TorchScript-based exporter: here it is 10x faster than the
    ``torch.export`` one (4 s vs 40 s) and gives the dynamic axes readable names.
    """
    model, meta, eager, x, path = _prepare(model, meta, example, path)
    try:
        with _quiet(), contextlib.redirect_stdout(io.StringIO()):
            common = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamo=dynamo)
            if dynamo:
                dim = torch.export.Dim.DYNAMIC
                extra = dict(external_data=False, verbose=False, dynamic_shapes={"x": {0: dim, 2: dim, 3: dim}})
            else:
                axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch"}}
                extra = dict(opset_version=opset, dynamic_axes=axes)
            torch.onnx.export(eager, (x,), str(path), **common, **extra)
    except Exception as e:
        raise ExportError(
            f"ONNX export of {meta.backbone} failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    diff = max_abs_diff(model.cpu().eval(), OnnxModel(path), x)
    return ExportResult(
        "onnx",
        path,
        write_sidecar(
            path, meta, "onnx", exporter="dynamo" if dynamo else "torchscript", opset=opset, max_abs_diff=diff
        ),
        diff,
    )


class OnnxModel:
    """An ONNX Runtime CPU session called like a PyTorch model: float tensor in, logits tensor out."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads or torch.get_num_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads  # the same thread count PyTorch uses, for a fair race
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ExportError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {e})") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])

    def __repr__(self) -> str:
        return f"OnnxModel({self.path.name}, threads={self.threads})"


# ---------------------------------------------------------------- INT8


def quantize_dynamic(model) -> nn.Module:
    """INT8 weights for every ``nn.Linear`` (activations quantized on the fly); convolutions stay float."""
    with _quiet():
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(_module(model)).cpu().eval(), {nn.Linear}, dtype=torch.qint8
        )


def default_backend() -> str:
    """``onednn`` (x86, full 8-bit activations) where available, else ``qnnpack`` (ARM)."""
    engines = torch.backends.quantized.supported_engines
    return "onednn" if "onednn" in engines else "qnnpack" if "qnnpack" in engines else engines[-1]


def split_relu6(model: nn.Module) -> nn.Module:
    """Replace each ReLU6 by ReLU then ReLU6 (the same function) so FX fuses Conv+BN+ReLU.

    FX has no Conv+ReLU6 fusion: without this, each convolution's output is quantized over its whole
    pre-activation range (negatives included) and only then clamped, wasting most of the 256 levels.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, nn.Sequential(nn.ReLU(), nn.ReLU6()))
    return model.eval()


def calibration_batch_size(calibration: torch.Tensor) -> int:
    """Few large batches (observers cost per call): 256 images at 32 px, 8 at 224 px."""
    return max(8, 256 * 32 * 32 // (calibration.shape[-1] * calibration.shape[-2]))


def quantize_static_fx(
    model,
    calibration: torch.Tensor,
    batch_size: int | None = None,
    backend: str | None = None,
    observer: str = "histogram",
) -> nn.Module:
    """Static post-training INT8 with FX graph mode: fold BatchNorm, observe ``calibration``, convert.

    ``backend`` defaults to :func:`default_backend` and becomes PyTorch's quantized engine (a global
    setting). ``x86`` would use 7-bit activations (``reduce_range``, to avoid overflow in its AVX2
    kernels); measured here it agreed with fp32 on far fewer test images. ``observer="minmax"``
    calibrates about 4x faster than the default histogram observer, with slightly worse ranges.
    """
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    backend = backend or default_backend()
    batch_size = batch_size or calibration_batch_size(calibration)
    torch.backends.quantized.engine = backend
    try:
        with _quiet(), torch.no_grad():
            qmap = get_default_qconfig_mapping(backend)
            if observer == "minmax":
                qmap.set_global(
                    QConfig(
                        activation=MinMaxObserver.with_args(reduce_range=backend in ("x86", "fbgemm")),
                        weight=PerChannelMinMaxObserver.with_args(
                            dtype=torch.qint8, qscheme=torch.per_channel_symmetric
                        ),
                    )
                )
            prepared = prepare_fx(split_relu6(for_export(_module(model))), qmap, example_inputs=(calibration[:1],))
            for i in range(0, len(calibration), batch_size):
                prepared(calibration[i : i + batch_size])
            return convert_fx(prepared)
    except Exception as e:
        raise ExportError(f"FX static quantization failed ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def quantize_static_onnx(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: torch.Tensor,
    batch_size: int | None = None,
    meta: ModelMeta | None = None,
) -> Path:
    """Static INT8 with ONNX Runtime (QDQ format, per-channel weights, min-max calibration)."""
    from onnxruntime import quantization as oq

    batch_size = batch_size or calibration_batch_size(calibration)

    out_path = Path(out_path)
    pre = out_path.with_name(out_path.stem + ".pre.onnx")

    class Reader(oq.CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i : i + batch_size].numpy() for i in range(0, len(calibration), batch_size))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {INPUT_NAME: x}

    try:
        with _quiet():
            oq.quant_pre_process(str(onnx_path), str(pre))  # shape inference + graph clean-up first
            oq.quantize_static(
                str(pre),
                str(out_path),
                Reader(),
                quant_format=oq.QuantFormat.QDQ,
                per_channel=True,
                activation_type=oq.QuantType.QUInt8,
                weight_type=oq.QuantType.QInt8,
                calibrate_method=oq.CalibrationMethod.MinMax,
            )
    except Exception as e:
        raise ExportError(f"ONNX Runtime static quantization failed ({type(e).__name__}: {e})") from None
    finally:
        pre.unlink(missing_ok=True)
    if meta is not None:
        write_sidecar(out_path, meta, "onnx-int8", calibration_images=len(calibration))
    return out_path


def calibration_images(cfg, meta: ModelMeta, n: int = 256) -> torch.Tensor:
    """``n`` class-balanced training images, preprocessed like test images, for static INT8."""
    train, _ = data.load_datasets(cfg)
    idx = data.subset_indices(train.labels, n, cfg.seed + 1)
    tf = data.BatchTransform(False, meta.image_size, meta.mean, meta.std)
    return tf(train.images[idx].clone())


def save_torchscript(module: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Trace and save any module (e.g. a quantized one) so its size on disk can be read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet(), torch.no_grad():
        torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(path))
    return path


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
    model, meta: ModelMeta, calibration: torch.Tensor, out_dir: str | Path, progress: bool = True
) -> list[Candidate]:
    """Every format of the table: fp32 eager, TorchScript, ONNX Runtime, and the three INT8 kinds.

    A format that fails to build keeps its place, with ``fn=None`` and the error in ``note``.
    """
    from tqdm.auto import tqdm

    from . import checkpoint

    model, meta = unwrap(model, meta)
    model = copy.deepcopy(model).cpu().eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x1 = calibration[:1]

    def torchscript():
        r = export_torchscript(model, out / "model.ts.pt", meta, example=x1)
        return load_torchscript(r.path), r.path, "torch.jit.trace"

    def onnx():
        session = OnnxModel(export_onnx(model, out / "model.onnx", meta, example=x1).path)
        return session, session.path, f"{session.threads} intra-op thread{'s' * (session.threads != 1)}"

    def dynamic():
        q = quantize_dynamic(model)
        return q, save_torchscript(q, out / "model.int8-dynamic.ts.pt", x1), "Linear head only"

    def static_fx():
        q = quantize_static_fx(model, calibration)
        return (
            q,
            save_torchscript(q, out / "model.int8-fx.ts.pt", x1),
            f"{torch.backends.quantized.engine} engine, {len(calibration)} calibration images",
        )

    def static_ort():
        src = out / "model.onnx"
        if not src.exists():
            export_onnx(model, src, meta, example=x1)
        q = quantize_static_onnx(src, out / "model.int8.onnx", calibration, meta=meta)
        return OnnxModel(q), q, f"QDQ, {len(calibration)} calibration images"

    builders = [
        (
            "fp32 eager (PyTorch)",
            lambda: (model, checkpoint.save_model(out / "model.pt", model, meta), "PyTorch, tlcourse checkpoint"),
        ),
        ("TorchScript fp32", torchscript),
        ("ONNX Runtime fp32", onnx),
        ("INT8 dynamic (PyTorch)", dynamic),
        ("INT8 static FX (PyTorch)", static_fx),
        ("INT8 static (ONNX Runtime)", static_ort),
    ]
    candidates = []
    for name, build in tqdm(builders, desc="building formats", leave=False, disable=not progress):
        t0 = time.perf_counter()
        try:
            fn, path, note = build()
        except Exception as e:  # a failing path is a result to report, not a crash
            reason = str(e) if isinstance(e, TLCourseError) else f"{type(e).__name__}: {e}"
            candidates.append(Candidate(name, None, None, f"failed: {reason}"))
            continue
        candidates.append(Candidate(name, fn, Path(path), note, time.perf_counter() - t0))
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
        for s in sizes:
            x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(s))
            row.latency[s] = measure_latency(c.fn, x, warmup, repeats)
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


def rows_to_frame(rows: Sequence[FormatRow]):
    """The table as a pandas DataFrame (latency columns per input size)."""
    import pandas as pd

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
    return pd.DataFrame(records).set_index("format")


def to_markdown(rows: Sequence[FormatRow]) -> str:
    """A GitHub markdown table of :func:`compare_formats` rows (no extra dependency)."""
    frame = rows_to_frame(rows).reset_index()

    def cell(v) -> str:
        if isinstance(v, float):
            if np.isnan(v):
                return "—"
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def machine_description() -> dict:
    """Where a table was measured: CPU, cores, threads, other load, library versions, date."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
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
        "onnxruntime": ort.__version__,
        "quantized engine": torch.backends.quantized.engine,
        "date": date.today().isoformat(),
    }


def describe_rows(rows: Sequence[FormatRow]) -> list[dict]:
    """Plain data of the rows (for JSON)."""
    return [{**asdict(r), "latency": {str(k): asdict(v) for k, v in r.latency.items()}} for r in rows]
