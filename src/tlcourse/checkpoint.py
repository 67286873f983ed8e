"""Checkpoint files: written atomically, read with ``weights_only=True``, checked before use."""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

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


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    """Load a checkpoint with ``weights_only=True`` and check that it is the kind expected."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint; check the path (train one with `python -m tlcourse train`)")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; pass the checkpoint file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); the save was interrupted; use an earlier checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path}: refused; it holds Python objects that could run code when loaded, and "
                "tlcourse only loads tensors and plain data (weights_only=True)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint or truncated ({e})") from None
    except Exception as e:  # zip, EOF and "failed finding central directory" errors
        raise CheckpointError(f"{path}: truncated or not a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    found = obj.get("format") if isinstance(obj, dict) else None
    if found != expected_format:
        what = f"a {found!r} file" if found else "a file from another program (no tlcourse header)"
        raise CheckpointError(
            f"{path}: expected a {expected_format!r} checkpoint but found {what}; "
            "model files come from save_model / `tlcourse train`, resumable states from fit(checkpoint=...)"
        )
    if obj.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer tlcourse (format version {obj['version']}); upgrade tlcourse")
    return obj


def save_model(path: str | Path, model: torch.nn.Module, meta: ModelMeta) -> Path:
    """A model file: weights plus the metadata to rebuild and preprocess."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"format": MODEL_FORMAT, "version": VERSION, "meta": asdict(meta), "state_dict": state}, path)


def read_model(path: str | Path) -> tuple[ModelMeta, dict]:
    """(metadata, state_dict) from a model file, checked."""
    obj = safe_load(path, MODEL_FORMAT)
    try:
        m = obj["meta"]
        meta = ModelMeta(m["backbone"], tuple(m["classes"]), int(m["image_size"]), tuple(m["mean"]),
                         tuple(m["std"]), int(m.get("source_size", 32)))
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
    """``load_state_dict`` with a one-line error naming the file and the first mismatch."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        lines = [s.strip() for s in str(e).splitlines() if s.strip()]
        raise CheckpointError(f"{path}: weights do not fit the model ({lines[1] if len(lines) > 1 else lines[0]})") from None
