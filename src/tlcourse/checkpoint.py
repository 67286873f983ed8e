"""Checkpoint files: written atomically, read with ``weights_only=True``, checked before use."""

from __future__ import annotations

import math
import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import BinaryIO

import torch

from . import paths
from .errors import CheckpointError

MODEL_FORMAT = "tlcourse-model"
VERSION = 1


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to rebuild a classifier and preprocess its inputs."""

    backbone: str
    classes: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source_size: int = 32  # resolution of the training images before any upsampling

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], size_hint: int | None = None) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it: never a half-written file.

    A crash, Ctrl-C or full disk during the write leaves the previous ``path`` untouched and no
    temporary file behind; an ``OSError`` (or ``torch.save``'s RuntimeError wrapping one) becomes a
    one-line :class:`CheckpointError`, "no space left on ..." with ``size_hint`` bytes when the disk is full.
    ``path`` must be a regular file or not exist yet; a symlink to a regular file is followed (the file
    it points to is replaced, the link kept), anything else is refused (:func:`paths.check_destination`).
    """
    path = Path(path).expanduser()
    target = paths.check_destination(path, CheckpointError)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        if paths.is_disk_full(e):
            raise CheckpointError(paths.disk_full_message(target, size_hint) + "; nothing was written") from None
        raise CheckpointError(f"{path}: cannot write here ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; these are ordinary files
        os.replace(tmp, target)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        kept = "the previous file is unchanged" if target.exists() else "nothing was written"
        if paths.is_disk_full(e):
            raise CheckpointError(f"{paths.disk_full_message(target, size_hint)}; {kept}") from None
        if isinstance(e, OSError):  # quota, permissions, I/O errors
            raise CheckpointError(f"{path}: saving failed ({e.strerror or e}); {kept}") from None
        raise
    _fsync_dir(target.parent)
    return path


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda f: torch.save(obj, f), size_hint=_tensor_bytes(obj))


def _tensor_bytes(obj) -> int:
    """About how many bytes ``torch.save(obj)`` writes: its tensors' data."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def best_path(state_path: str | Path) -> Path:
    """Where :func:`train.fit` keeps the best epoch's model file: ``x.state.pt`` -> ``x.best.pt``."""
    p = Path(state_path)
    base = p.name.removesuffix(".pt").removesuffix(".state")
    return p.with_name(base + ".best.pt")


def safe_load(path: str | Path, expected_format: str) -> dict:
    """Load a checkpoint with ``weights_only=True`` and check that it is the kind expected.

    Never unpickles arbitrary objects: a file that would run code when loaded is refused.
    """
    path = Path(path).expanduser()
    want = f"a {expected_format!r} checkpoint"
    size = paths.stat_regular(path, CheckpointError, "a checkpoint").st_size  # never opens a FIFO or device
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); the save was interrupted; use an earlier checkpoint")
    other = _describe_foreign(path, head)
    if other:
        raise CheckpointError(f"{path}: expected {want} (a PyTorch file) but found {other}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4": the refusal below says enough
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "Unsupported operand" in str(e):
            raise CheckpointError(
                f"{path}: refused; it holds Python objects that could run code when loaded, and "
                "tlcourse only loads tensors and plain data (weights_only=True)"
            ) from None
        raise CheckpointError(
            f"{path}: truncated or damaged PyTorch file ({_line(e)}); "
            "the save or copy was cut short; use an earlier checkpoint"
        ) from None
    except Exception as e:  # zip, EOF and "failed finding central directory" errors
        raise CheckpointError(
            f"{path}: truncated or damaged PyTorch file ({type(e).__name__}: {_line(e)}); "
            "the save or copy was cut short; use an earlier checkpoint"
        ) from None
    found = obj.get("format") if isinstance(obj, dict) else None
    if found != expected_format:
        if found:
            what = f"a {found!r} file"
        elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            what = f"a bare state_dict ({len(obj)} tensors, no tlcourse header) from another program"
        else:
            what = f"a {type(obj).__name__} from another program (no tlcourse header)"
        raise CheckpointError(
            f"{path}: expected {want} but found {what}; "
            "model files come from save_model / `tlcourse train`, resumable states from "
            "fit(options=FitOptions(checkpoint_path=...))"
        )
    version = obj.get("version", 0)
    if not _is_int(version) or version < 0:
        raise CheckpointError(f"{path}: {_bad_field('version', version, 'a whole number')}")
    if version > VERSION:
        raise CheckpointError(
            f"{path}: written by a newer tlcourse (format version {obj['version']}, this one "
            f"reads up to {VERSION}); upgrade tlcourse"
        )
    return obj


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _describe_foreign(path: Path, head: bytes) -> str | None:
    """What a file that cannot be a PyTorch checkpoint holds, or None if it may be one.

    ``torch.save`` writes a zip whose first entry is ``<name>/data.pkl`` (or, in the legacy format,
    a pickle starting with byte 0x80); anything else is described from its first bytes.
    """
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None  # a zip cut short: torch.load below reports it as truncated
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "a TorchScript model (load it with torch.jit.load, not as a checkpoint)"
        if any(n.endswith("data.pkl") for n in names):
            return None
        return f"a zip archive whose first entry is {names[0] if names else ''!r}, not a PyTorch checkpoint"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # a pickle: legacy torch.save format
        return None
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras/TensorFlow weights?)"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        return "an image"
    if b"\0" not in head:
        text = None
        for cut in (head, head[:-3]):  # the sample may end inside a multi-byte character
            try:
                text = cut.decode("utf-8")
                break
            except UnicodeDecodeError:
                pass
        if text is not None:
            first = text.strip().splitlines()[0][:40] if text.strip() else ""
            return f"a text file (starts {first!r})" if first else "a blank text file"
    if path.suffix.lower() == ".onnx" or (len(head) > 2 and head[0] == 0x08 and head[2] == 0x12):
        return "an ONNX model (run it with onnxruntime, not as a checkpoint)"  # protobuf: ir_version, producer
    return f"unrecognised data (starts {head[:8].hex(' ')})"


def save_model(path: str | Path, model: torch.nn.Module, meta: ModelMeta) -> Path:
    """A model file: weights plus the metadata to rebuild and preprocess."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"format": MODEL_FORMAT, "version": VERSION, "meta": asdict(meta), "state_dict": state}, path)


def read_model(path: str | Path) -> tuple[ModelMeta, dict]:
    """(metadata, state_dict) from a model file, checked."""
    obj = safe_load(path, MODEL_FORMAT)
    try:
        m = obj["meta"]
        meta = ModelMeta(m["backbone"], m["classes"], m["image_size"], m["mean"], m["std"], m.get("source_size", 32))
        state = obj["state_dict"]
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: model file is missing {e}; it was not written by save_model") from None
    problem = check_meta(meta) or _non_finite(state)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return replace(meta, classes=tuple(meta.classes), mean=tuple(meta.mean), std=tuple(meta.std)), state


def check_meta(meta: ModelMeta) -> str | None:
    """What is wrong with a model file's metadata, naming the field, or None: nothing is trusted as read."""
    positive = "a whole number of pixels above 0"
    if not isinstance(meta.backbone, str) or not meta.backbone:
        return _bad_field("backbone", meta.backbone, "a backbone name")
    classes = meta.classes
    if not isinstance(classes, (list, tuple)) or not classes or not all(isinstance(c, str) for c in classes):
        return _bad_field("classes", classes, "a list of class names")
    if len(set(classes)) != len(classes):
        return _bad_field("classes", classes, "unique class names")
    for field in ("image_size", "source_size"):
        if not _is_int(getattr(meta, field)) or not 0 < getattr(meta, field) <= 16384:
            return _bad_field(field, getattr(meta, field), positive)
    for field in ("mean", "std"):
        v = getattr(meta, field)
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(_is_finite(x) for x in v):
            return _bad_field(field, v, "3 finite numbers (one per RGB channel)")
    if min(meta.std) <= 0:
        return _bad_field("std", meta.std, "3 numbers above 0 (inputs are divided by them)")
    return None


def _bad_field(field: str, value, expected: str) -> str:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return (
        f"metadata field {field!r} is {shown}, expected {expected}; "
        "the file was edited or damaged: use an earlier checkpoint or re-save the model"
    )


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _non_finite(state) -> str | None:
    """A message naming the first weight tensor holding NaN or Inf, or None."""
    if not isinstance(state, dict):
        return None  # load_weights says what it is instead
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return (
                f"weights contain NaN or Inf (first in {name}); the training diverged or the file is damaged: "
                "use an earlier checkpoint, or train again with a lower learning rate"
            )
    return None


def check_compatible(path, found: ModelMeta, backbone: str, num_classes: int) -> None:
    """Refuse a checkpoint for another backbone or number of classes, saying both."""
    if found.backbone != backbone or found.num_classes != num_classes:
        raise CheckpointError(
            f"{path}: checkpoint is {found.backbone} with {found.num_classes} classes, but this model is "
            f"{backbone} with {num_classes} classes; build the matching one with "
            "ImageClassifier.from_checkpoint(path)"
        )


def load_weights(model: torch.nn.Module, state: dict, path) -> None:
    """``load_state_dict`` with a one-line error naming the file and what does not match."""
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: weights are a {type(state).__name__}, expected a state_dict (a dict of tensors)"
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: file {tuple(state[k].shape)}, model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} shape mismatch(es), e.g. {'; '.join(wrong[:2])}")
        if missing:
            parts.append(f"{len(missing)} of the model's {len(expected)} tensors missing, e.g. {missing[:2]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown tensors, e.g. {unexpected[:2]}")
        raise CheckpointError(
            f"{path}: weights do not fit the model ({'; '.join(parts)}); "
            "was it saved from another backbone or number of classes?"
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: weights do not fit the model ({_line(e)[:300]})") from None
