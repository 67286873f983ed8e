"""Checkpoints: atomic writes, weights_only loading, and one clear error for every wrong file."""

from __future__ import annotations

import builtins
import errno
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tlcourse import checkpoint, loaders, models, train, training_state
from tlcourse.__main__ import main
from tlcourse.checkpoint import ModelMeta
from tlcourse.classifier import ImageClassifier
from tlcourse.errors import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _meta(backbone="resnet18", n=3) -> ModelMeta:
    return ModelMeta(backbone, tuple("abcdefghij"[:n]), 32, *models.normalization(backbone))


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    clf = ImageClassifier("resnet18", 3, classes=("a", "b", "c"), pretrained=False, device="cpu")
    return clf.save_model(tmp_path_factory.mktemp("ckpt") / "resnet.pt")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


# ---------------------------------------------------------------- atomic writes


def _crashing_save(exc):
    real = torch.save

    def save(obj, f, *a, **k):
        real({"junk": torch.zeros(1000)}, f)  # some bytes reach the file first
        raise exc

    return save


@pytest.mark.parametrize("exc", [RuntimeError("power cut"), KeyboardInterrupt()])
def test_crash_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, exc):
    net = models.make_deep_net(1, width=4)
    path = checkpoint.save_model(tmp_path / "m.pt", net, _meta())
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _crashing_save(exc))
    with pytest.raises(type(exc)):
        checkpoint.save_model(path, models.make_deep_net(2, width=4), _meta())
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    meta, state = checkpoint.read_model(path)  # still loads
    checkpoint.load_weights(models.make_deep_net(1, width=4), state, path)


def test_disk_full_is_a_clear_error(tmp_path, monkeypatch):
    path = checkpoint.atomic_save({"format": "x", "v": torch.ones(3)}, tmp_path / "s.pt")
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _crashing_save(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(CheckpointError) as e:
        checkpoint.atomic_save({"format": "x", "v": torch.ones(500_000)}, path)  # 2 MB of float32
    msg = str(e.value)
    assert msg.startswith(f"{path}: no space left on {tmp_path} (needs about 2.0 MB, ") and "\n" not in msg
    assert msg.endswith("MB free); free some space or save elsewhere; the previous file is unchanged")
    assert path.read_bytes() == before and _leftovers(tmp_path) == []


def test_fit_interrupted_while_saving_keeps_the_last_state(tmp_path, monkeypatch):
    x, y = torch.randn(16, 3, 8, 8), torch.arange(16) % 2
    loader = loaders.TensorLoader(x, y, 8, shuffle=True)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    state = tmp_path / "run.state.pt"
    train.fit(net, loader, None, 1, options=train.FitOptions(checkpoint_path=state, progress=False, log=None))
    before = state.read_bytes()
    monkeypatch.setattr(torch, "save", _crashing_save(KeyboardInterrupt()))
    resuming = train.FitOptions(checkpoint_path=state, resume=True, progress=False, log=None)
    hist = train.fit(net, loader, None, 3, options=resuming)
    assert hist.interrupted and state.read_bytes() == before and _leftovers(tmp_path) == []


# ---------------------------------------------------------------- weights_only


class _Payload:
    """Unpickling this calls open(marker, "w"): code running at load time."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_that_runs_code_is_refused(tmp_path, writer):
    marker = tmp_path / "PWNED"
    evil = {"format": checkpoint.MODEL_FORMAT, "version": 1, "meta": {}, "state_dict": _Payload(marker)}
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    # The payload is live: a plain unpickler would create the marker.
    if writer == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()
    with pytest.raises(CheckpointError, match="could run code.*weights_only=True"):
        checkpoint.read_model(path)
    with pytest.raises(CheckpointError, match="could run code"):
        ImageClassifier.from_checkpoint(path, device="cpu")
    assert not marker.exists()


# ---------------------------------------------------------------- checked on load


def _foreign_files(d: Path, good: Path) -> dict[str, tuple[Path, str]]:
    net = models.make_deep_net(1, width=4)
    torch.save(net.state_dict(), d / "plain_state_dict.pt")
    with zipfile.ZipFile(d / "archive.pt", "w") as z:
        z.writestr("weights/readme.txt", "hello")
    (d / "notes.pt").write_text("these are my notes\n")
    np.save(d / "array.npy", np.zeros(3))
    (d / "array.npy").rename(d / "array.pt")
    torch.save([1, 2, 3], d / "list.pt")
    torch.save({"format": training_state.STATE_FORMAT, "version": 1}, d / "state.pt")
    torch.save({"format": checkpoint.MODEL_FORMAT, "version": 99}, d / "future.pt")
    traced = torch.jit.trace(net.eval(), torch.randn(1, 3, 8, 8))
    traced.save(str(d / "scripted.pt"))
    blob = good.read_bytes()
    (d / "half.pt").write_bytes(blob[: len(blob) // 2])
    (d / "cut_end.pt").write_bytes(blob[:-100])
    (d / "empty.pt").write_bytes(b"")
    (d / "folder.pt").mkdir()
    return {
        "plain_state_dict.pt": "found a bare state_dict (20 tensors, no tlcourse header) from another program",
        "archive.pt": "found a zip archive whose first entry is 'weights/readme.txt'",
        "notes.pt": "found a text file (starts 'these are my notes')",
        "array.pt": "found a NumPy .npy array",
        "list.pt": "found a list from another program",
        "scripted.pt": "found a TorchScript model (load it with torch.jit.load",
        "state.pt": "found a 'tlcourse-training-state' file",
        "future.pt": "newer tlcourse (format version 99",
        "half.pt": "truncated or damaged PyTorch file",
        "cut_end.pt": "truncated or damaged PyTorch file",
        "empty.pt": "empty file (0 bytes)",
        "folder.pt": "is a folder",
        "missing.pt": "no such checkpoint",
    }


def test_each_wrong_file_gets_one_clear_line(tmp_path, resnet_file, capsys):
    cases = _foreign_files(tmp_path, resnet_file)
    for name, phrase in cases.items():
        path = tmp_path / name
        with pytest.raises(CheckpointError) as e:
            ImageClassifier.from_checkpoint(path, device="cpu")
        msg = str(e.value)
        assert msg.startswith(f"{path}: ") and phrase in msg and "\n" not in msg, (name, msg)
        if name in ("plain_state_dict.pt", "notes.pt", "archive.pt"):
            assert "expected a 'tlcourse-model' checkpoint" in msg  # what was expected, and what was found
    assert main(["predict", str(tmp_path / "half.pt"), "x.jpg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {tmp_path / 'half.pt'}: truncated")


def test_wrong_backbone_or_class_count_says_both(resnet_file):
    with pytest.raises(CheckpointError) as e:
        ImageClassifier("efficientnet_lite0", 3, classes=("a", "b", "c"), pretrained=False, device="cpu").load_model(
            resnet_file
        )
    assert "checkpoint is resnet18 with 3 classes, but this model is efficientnet_lite0 with 3 classes" in str(e.value)
    with pytest.raises(CheckpointError, match="resnet18 with 3 classes, but this model is resnet18 with 10 classes"):
        ImageClassifier("resnet18", 10, pretrained=False, device="cpu").load_model(resnet_file)


def test_weights_that_do_not_fit_are_summarised(resnet_file):
    _, state = checkpoint.read_model(resnet_file)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_weights(models.build_model("resnet18", 10, pretrained=False), state, resnet_file)
    msg = str(e.value)
    assert "2 shape mismatch(es), e.g. fc.weight: file (3, 512), model (10, 512); fc.bias" in msg and len(msg) < 400
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_weights(models.build_model("efficientnet_lite0", 3, pretrained=False), state, resnet_file)
    assert "tensors missing" in str(e.value) and "unknown tensors" in str(e.value) and len(str(e.value)) < 500


def test_resuming_a_state_from_another_run_is_refused(tmp_path):

    loader = loaders.TensorLoader(torch.randn(8, 3, 8, 8), torch.arange(8) % 2, 4)
    small = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    state = tmp_path / "run.state.pt"
    train.fit(small, loader, None, 1, options=train.FitOptions(checkpoint_path=state, progress=False, log=None))
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    resuming = train.FitOptions(checkpoint_path=state, resume=True, progress=False, log=None)
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        train.fit(other, loader, None, 2, options=resuming)
    same_shape = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    with pytest.raises(CheckpointError, match="does not match the run"):
        train.fit(
            same_shape,
            loader,
            None,
            2,
            optimizer=torch.optim.SGD(same_shape.parameters(), 0.1),
            options=resuming,
        )


def test_round_trip_and_file_permissions(tmp_path, resnet_file):
    clf = ImageClassifier.from_checkpoint(resnet_file, device="cpu")
    again = clf.save_model(tmp_path / "sub" / "copy.pt")
    assert checkpoint.read_model(again)[0] == clf.meta
    assert os.stat(again).st_mode & 0o644 == 0o644  # an ordinary file, not mkstemp's 0600
