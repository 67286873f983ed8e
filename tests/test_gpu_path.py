"""The GPU-oriented options, checked for correctness on the CPU (timed only on a GPU, in benchmarks/)."""

import torch

from tlcourse import data, train


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
    return net, data.TensorLoader(x, y, 16, shuffle=True), data.TensorLoader(x, y, 32)


def test_compiled_steps_match_eager():
    net_a, tr, te = _setup()
    net_b, tr_b, te_b = _setup()
    h_eager = train.fit(net_a, tr, te, epochs=2, lr=1e-2, progress=False, log=None)
    h_comp = train.fit(net_b, tr_b, te_b, epochs=2, lr=1e-2, progress=False, log=None, compile=True)
    # Inductor fuses and reorders float arithmetic, so agreement is close, not bitwise.
    for a, b in zip(h_eager.train_loss + h_eager.test_loss, h_comp.train_loss + h_comp.test_loss):
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


def test_batched_augmentation_runs_on_the_loaders_device_without_host_copies():
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    loader = data.TensorLoader(x, torch.arange(32), 8, shuffle=True, transform=data.BatchTransform(True))
    xb, yb = next(iter(loader))
    assert xb.device == loader.x.device and xb.dtype == torch.float32 and yb.device == loader.y.device
