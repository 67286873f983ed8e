"""Offline: a missing dataset or missing weights give one message with the fix, a non-zero exit
status, and leave nothing half-written in the cache. The network is never touched: the downloads
are replaced by fakes that write part of a file and then fail the way urllib does offline.
"""

from __future__ import annotations

import io
import os
import urllib.error
from pathlib import Path

import pytest
import torch

from tlcourse import config, data, models
from tlcourse.__main__ import main
from tlcourse.errors import DatasetNotFoundError, WeightsNotFoundError

OFFLINE = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(tmp_path / "cache"))


def _last_line(err: str) -> str:
    """stderr without the progress bar tqdm drew and erased (carriage returns) before the error."""
    return err.split("\r")[-1]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def no_cifar(tmp_path, monkeypatch):
    """No copy of CIFAR-10 anywhere, and a torchvision download that dies after 1 MB."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(cache))
    monkeypatch.delenv("TLCOURSE_DATA_DIR", raising=False)
    import torchvision.datasets.cifar as tv_cifar

    attempts = []

    def dies_halfway(url, download_root, filename=None, md5=None, **kw):
        attempts.append(url)
        Path(download_root, filename).write_bytes(b"\x1f\x8b" + os.urandom(1 << 20))  # a partial .tar.gz
        raise OFFLINE

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", dies_halfway)
    return cache, attempts


def test_missing_dataset_offline_is_one_message_with_the_fix(no_cifar):
    cache, attempts = no_cifar
    cfg = config.get_config("quick", device="cpu")  # smoke would use the sample shipped in the package
    with pytest.raises(DatasetNotFoundError) as e:
        data.load_split("train", cfg=cfg)
    msg = str(e.value)
    assert attempts and "\n" not in msg
    assert msg.startswith(f"CIFAR-10 not found in {cache / 'data'} and the download failed (URLError:")
    assert "set TLCOURSE_DATA_DIR" in msg and "python -m tlcourse prefetch" in msg
    assert _files(cache) == []  # the partial archive went with its temporary folder
    assert not (cache / "data").exists()  # and so did the folder made for the download


def test_cli_prefetch_offline_exits_non_zero_with_one_line(no_cifar, capsys):
    cache, _ = no_cifar
    assert main(["prefetch", "--profile", "quick"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: CIFAR-10 not found") and "Traceback" not in err
    assert _files(cache) == []


@pytest.mark.slow
def test_cli_train_offline_exits_non_zero_with_one_line(no_cifar, capsys, tmp_path):
    cache, _ = no_cifar
    rc = main(["train", "--profile", "quick", "--backbone", "efficientnet_lite0", "--out", str(tmp_path / "m.pt")])
    err = _last_line(capsys.readouterr().err)
    assert rc == 2 and err.count("\n") == 1 and "download failed" in err
    assert _files(cache) == [] and not (tmp_path / "m.pt").exists()


class _DiesAfterOneChunk:
    """What urlopen returns when the connection drops: headers, one chunk, then URLError."""

    def __init__(self, *a, **k):
        self.body = io.BytesIO(b"\0" * 8192)

    def info(self):
        return _Headers()

    def read(self, n=-1):
        chunk = self.body.read(n)
        if not chunk:
            raise OFFLINE
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Headers:
    def get_all(self, name, default=None):
        return ["46830571"] if name == "Content-Length" else default


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty TORCH_HOME and a download that drops after the first chunk."""
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "urlopen", _DiesAfterOneChunk)
    return home


def test_missing_resnet_weights_offline_names_where_to_put_them(no_weights):
    home = no_weights
    with pytest.raises(WeightsNotFoundError) as e:
        models.build_model("resnet18", pretrained=True)
    msg = str(e.value)
    target = home / "hub" / "checkpoints"
    assert "\n" not in msg and "(URLError)" in msg
    assert f"not cached at {target / 'resnet18-f37072fd.pth'}" in msg and f"to {target}/" in msg
    assert "weights_path=" in msg and "efficientnet_lite0" in msg
    assert _files(home) == []  # torch.hub's .partial file was removed


def test_cli_train_without_weights_exits_non_zero_with_one_line(no_weights, tiny_folder, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--profile",
            "smoke",
            "--backbone",
            "resnet18",
            "--data-dir",
            str(tiny_folder),
            "--out",
            str(tmp_path / "m.pt"),
        ]
    )
    err = capsys.readouterr().err
    lines = _last_line(err).splitlines()  # torch.hub's download bar may stand above the message
    assert rc == 2 and "Traceback" not in err and [x for x in lines if x.startswith("error:")] == lines[-1:]
    assert lines[-1].startswith("error: ResNet-18 ImageNet weights are not cached")
    assert _files(no_weights) == [] and not (tmp_path / "m.pt").exists()


def test_a_weights_file_given_by_hand_is_used(no_weights, tmp_path):
    """The fix the message offers works offline: pass the file with weights_path=."""
    from torchvision.models import resnet18

    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    model = models.build_model("resnet18", num_classes=3, weights_path=path)
    assert model.fc.out_features == 3
