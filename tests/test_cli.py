import subprocess
import sys

import pytest
import skimage
from PIL import Image

from tlcourse.__main__ import main


@pytest.mark.slow
def test_train_evaluate_predict_end_to_end(cfg, tmp_path, capsys):
    out = tmp_path / "m.pt"
    rc = main(
        [
            "train",
            "--backbone",
            "efficientnet_lite0",
            "--profile",
            "smoke",
            "--no-progress",
            "--out",
            str(out),
            "--data-dir",
            str(cfg.data_dir),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and out.exists()
    assert "[head] epoch  1/1" in text and "[layer4] epoch  1/1" in text and "test accuracy" in text
    assert main(["evaluate", str(out), "--profile", "smoke", "--data-dir", str(cfg.data_dir)]) == 0
    assert "cat" in capsys.readouterr().out
    photo = tmp_path / "chelsea.jpg"  # a real photo of a cat, not from CIFAR-10 (shipped with scikit-image)
    Image.fromarray(skimage.data.chelsea()).save(photo)
    assert main(["predict", str(out), str(photo)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{photo}: ") and "%" in line
    assert any(
        c in line for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    )


@pytest.mark.slow
def test_errors_are_one_line_without_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "tlcourse", "predict", str(tmp_path / "none.pt"), "x.jpg"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "no such checkpoint" in r.stderr
