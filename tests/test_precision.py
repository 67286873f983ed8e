"""Mixed precision fits the GPU: bf16 from compute capability 8.0, fp16 + GradScaler below, fp32 off CUDA."""

import pytest
import torch

from tlcourse import config, runtime


@pytest.mark.parametrize(
    "capability, gpu, dtype, scaler, banner",
    [
        ((6, 0), "Tesla P100", torch.float16, True, "fp16 autocast + GradScaler"),
        ((7, 0), "Tesla V100", torch.float16, True, "fp16 autocast + GradScaler"),
        ((7, 5), "Tesla T4", torch.float16, True, "fp16 autocast + GradScaler"),  # Colab's free GPU
        ((8, 0), "NVIDIA A100", torch.bfloat16, False, "bf16 autocast"),
        ((8, 9), "NVIDIA L4", torch.bfloat16, False, "bf16 autocast"),
        ((9, 0), "NVIDIA H100", torch.bfloat16, False, "bf16 autocast"),
    ],
)
def test_cuda_precision_follows_the_compute_capability(monkeypatch, capability, gpu, dtype, scaler, banner):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
    # A T4 reports bf16 as supported (emulated): the choice must not follow this query.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert config.pick_amp_dtype("cuda") == dtype
    assert config.pick_amp_dtype(torch.device("cuda", 0)) == dtype
    assert config.needs_grad_scaler(config.pick_amp_dtype("cuda")) is scaler
    line = runtime.describe(config.get_config("smoke", device="cuda"))
    assert f"device=GPU {gpu}, {banner} |" in line


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_cpu_and_mps_train_in_fp32(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA GPU present must not matter
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert config.pick_amp_dtype(device) is None
    assert not config.needs_grad_scaler(None)
    assert runtime.describe_precision(device) == "fp32"
    assert "device=CPU, fp32 |" in runtime.describe(config.get_config("smoke", device="cpu"))
