"""The GPU-oriented options, checked for correctness on the CPU (timed only on a GPU, in benchmarks/)."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from tlcourse import augment, data, loaders, train


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.arange(64) % 4
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    )
    return net, loaders.TensorLoader(x, y, 16, shuffle=True), loaders.TensorLoader(x, y, 32)


@pytest.mark.slow
def test_compiled_steps_match_eager():
    net_a, tr, te = _setup()
    net_b, tr_b, te_b = _setup()
    h_eager = train.fit(net_a, tr, te, epochs=2, lr=1e-2, options=train.FitOptions(progress=False, log=None))
    h_comp = train.fit(
        net_b, tr_b, te_b, epochs=2, lr=1e-2, options=train.FitOptions(progress=False, log=None, compile=True)
    )
    # Inductor fuses and reorders float arithmetic, so agreement is close, not bitwise.
    for a, b in zip(h_eager.train_loss + h_eager.val_loss, h_comp.train_loss + h_comp.val_loss):
        assert abs(a - b) < 2e-3
    for (name, pa), pb in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        torch.testing.assert_close(pa, pb, atol=2e-3, rtol=2e-3, msg=name)


def test_channels_last_batches_give_the_same_logits():
    net, _, te = _setup()
    net.eval()
    x = next(iter(te))[0]
    with torch.no_grad():
        ref = net(x)
        out = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


class _HostRoundTrips(TorchFunctionMode):
    """Records tensor calls that bring data back to the host or into Python: on a GPU each one is a sync."""

    NAMES = {"cpu", "numpy", "item", "tolist"}

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.NAMES:
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_batched_augmentation_makes_no_host_round_trips():
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    loader = loaders.TensorLoader(x, torch.arange(32), 8, shuffle=True, transform=augment.BatchTransform(True))
    with _HostRoundTrips() as batched:
        xb, yb = next(iter(loader))
    assert batched.calls == [] and xb.dtype == torch.float32 and xb.shape == (8, 3, 32, 32)
    # The per-image reference path (PIL, as the seed's DataLoader) is caught by the same check.
    per_image = loaders.ArrayDataset(
        data.ImageArrays(x, torch.arange(32), data.CLASSES), augment.reference_transform(True)
    )
    with _HostRoundTrips() as pil:
        per_image[0]
    assert "numpy" in pil.calls
