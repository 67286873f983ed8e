"""Checkpoint files: written atomically, read with ``weights_only=True``, checked before use."""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from .errors import CheckpointError

MODEL_FORMAT = "tlcourse-model"
STATE_FORMAT = "tlcourse-training-state"
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


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it: never a half-written file.

    A crash, Ctrl-C or full disk during the write leaves the previous ``path`` untouched and no
    temporary file behind; an ``OSError`` becomes a :class:`CheckpointError` saying so.
    """
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot write here ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; these are ordinary files
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # disk full, quota, permissions
            kept = "the previous file is unchanged" if path.exists() else "nothing was written"
            raise CheckpointError(f"{path}: saving failed ({e.strerror or e}); {kept}") from None
        raise
    _fsync_dir(path.parent)
    return path


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda f: torch.save(obj, f))


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
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; check the path (train one with `python -m tlcourse train`)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; pass the checkpoint file inside it")
    try:
        size = path.stat().st_size
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
            "model files come from save_model / `tlcourse train`, resumable states from fit(checkpoint_path=...)"
        )
    if obj.get("version", 0) > VERSION:
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
        meta = ModelMeta(
            m["backbone"],
            tuple(m["classes"]),
            int(m["image_size"]),
            tuple(m["mean"]),
            tuple(m["std"]),
            int(m.get("source_size", 32)),
        )
        state = obj["state_dict"]
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: model file is missing {e}; it was not written by save_model") from None
    return meta, state


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
