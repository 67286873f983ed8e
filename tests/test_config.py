import pytest

from tlcourse import config
from tlcourse.errors import ConfigError


def test_profiles_change_sizes_only():
    smoke, quick, full = (config.get_config(p, device="cpu") for p in ("smoke", "quick", "full"))
    assert (smoke.train_size, smoke.test_size, smoke.epochs) == (500, 200, 1)
    assert (quick.train_size, quick.test_size) == (10_000, 2_000)
    assert full.train_size is None and full.test_size is None and full.epochs == 10
    assert smoke.lr_head == quick.lr_head == full.lr_head == 1e-3
    assert smoke.batch_size == full.batch_size == 128 and smoke.num_workers == 0


def test_environment_then_arguments(monkeypatch):
    monkeypatch.setenv("TLCOURSE_PROFILE", "smoke")
    monkeypatch.setenv("TLCOURSE_BACKBONE", "efficientnet_lite0")
    monkeypatch.setenv("TLCOURSE_DATA_DIR", "/some/where")
    cfg = config.get_config(device="cpu")
    assert (cfg.profile, cfg.backbone, str(cfg.data_dir)) == ("smoke", "efficientnet_lite0", "/some/where")
    cfg = config.get_config("quick", backbone="resnet18", device="cpu", image_size=64)
    assert (cfg.profile, cfg.backbone, cfg.image_size) == ("quick", "resnet18", 64)


def test_default_profile_follows_the_device(monkeypatch):
    monkeypatch.delenv("TLCOURSE_PROFILE", raising=False)
    assert config.get_config(device="cpu").profile == "quick"
    assert config.get_config(device="cuda").profile == "full"


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"profile": "huge"}, "TLCOURSE_PROFILE"),
        ({"backbone": "vgg"}, "TLCOURSE_BACKBONE"),
        ({"learning_rate": 1}, "unknown setting"),
    ],
)
def test_bad_settings_name_the_fix(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        config.get_config(device="cpu", **kwargs)


def test_replace_returns_a_copy():
    cfg = config.get_config("smoke", device="cpu")
    other = cfg.replace(image_size=96)
    assert (cfg.image_size, other.image_size) == (32, 96)
