"""The CIFAR-10 sample shipped in the package: balanced, reproducible, packaged, and enough for the smoke CLI."""

import filecmp
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlcourse import config, data

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_sample", ROOT / "tools" / "make_sample.py")
make_sample = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_sample)


def test_sample_is_class_balanced_small_and_documented():
    assert data.SAMPLE_DIR == make_sample.DEST
    for split, n in make_sample.PER_CLASS.items():
        folders = sorted(p for p in (data.SAMPLE_DIR / split).iterdir() if p.is_dir())
        assert tuple(p.name for p in folders) == data.CLASSES
        assert all(len(list(p.glob("*.jpg"))) == n for p in folders), split
    files = list(data.SAMPLE_DIR.rglob("*.jpg"))
    assert sum(f.stat().st_size for f in files) < 2_000_000
    assert "Krizhevsky" in (data.SAMPLE_DIR / "README.md").read_text()


def test_every_sample_file_is_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["tlcourse"]
    package = ROOT / "src" / "tlcourse"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert {p for p in data.SAMPLE_DIR.rglob("*") if p.is_file()} <= shipped


def test_sample_is_the_scripts_seeded_choice_from_the_jpeg_copy():
    source = data.find_cifar10(data.search_dirs(None, config.get_config("quick", device="cpu")))
    if source is None or source[0] != "folder":
        pytest.skip("the CIFAR-10 JPEG copy is not here (set TLCOURSE_DATA_DIR)")
    for split, n in make_sample.PER_CLASS.items():
        for cls in data.CLASSES:
            chosen = make_sample.choose(list((source[1] / split / cls).glob("*.jpg")), n)
            assert sorted(p.name for p in (data.SAMPLE_DIR / split / cls).glob("*.jpg")) == [p.name for p in chosen]
            assert all(filecmp.cmp(p, data.SAMPLE_DIR / split / cls / p.name, shallow=False) for p in chosen[:5])


NO_NETWORK = """
import runpy, socket, sys, urllib.request

def refuse(*args, **kwargs):
    raise OSError("network disabled by the test")

socket.socket.connect = socket.create_connection = urllib.request.urlopen = refuse
sys.argv = ["tlcourse", *sys.argv[1:]]
runpy.run_module("tlcourse", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_smoke_cli_trains_on_the_sample_with_nothing_configured_and_no_network(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLCOURSE_")}
    env.update(
        TLCOURSE_CACHE_DIR=str(tmp_path / "cache"),
        TORCH_HOME=str(tmp_path / "torch"),
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
        OMP_NUM_THREADS="1",
    )
    out = tmp_path / "model.pt"
    cmd = [sys.executable, "-c", NO_NETWORK, "train", "--profile", "smoke", "--device", "cpu", "--out", str(out)]
    run = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "data=sample" in run.stdout and "backbone=efficientnet_lite0" in run.stdout
    assert "test accuracy" in run.stdout and out.is_file()
    assert not (tmp_path / "cache" / "data").exists()  # nothing was downloaded

    quick = [sys.executable, "-c", NO_NETWORK, "train", "--profile", "quick", "--device", "cpu", "--out", str(out)]
    run = subprocess.run(quick, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "TLCOURSE_DATA_DIR" in run.stdout + run.stderr
