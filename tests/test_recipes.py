"""Named recipes: lookup, and one run end to end on the smoke data (sizes only; accuracy is a benchmark's job)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tlcourse import checkpoint, recipes
from tlcourse.__main__ import main


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="cpu-10min"):
        recipes.get_recipe("gpu-1min")


def test_run_recipe_trains_every_layer_and_saves_a_loadable_model(cfg, tmp_path):
    tiny = dataclasses.replace(recipes.get_recipe("cpu-10min"), image_size=32, head_epochs=1, epochs=1, lr=1e-3)
    clf, evaluation, seconds = recipes.run_recipe(tiny, cfg, tmp_path / "m.pt", progress=False, log=None)
    assert all(p.requires_grad for p in clf.model.parameters())  # the last stage trains everything
    assert {m.momentum for m in clf.model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {tiny.bn_momentum}
    assert len(evaluation.labels) == cfg.test_size and 0.0 <= evaluation.accuracy <= 1.0
    assert seconds["total"] >= seconds["all layers, end to end"] > 0
    assert checkpoint.read_model(tmp_path / "m.pt")[0].image_size == tiny.image_size


def test_head_only_recipe_leaves_the_body_frozen(cfg):
    head_only = dataclasses.replace(recipes.get_recipe("cpu-10min"), image_size=32, head_epochs=1, epochs=0)
    clf, evaluation, seconds = recipes.run_recipe(head_only, cfg, progress=False, log=None)
    assert "all layers, end to end" not in seconds and len(evaluation.labels) == cfg.test_size
    assert {n.split(".")[0] for n, p in clf.model.named_parameters() if p.requires_grad} == {"fc"}


def test_cli_recipe_unknown_name_is_one_line(capsys):
    assert main(["train", "--recipe", "nope", "--profile", "smoke"]) != 0
    assert "unknown recipe" in capsys.readouterr().err
