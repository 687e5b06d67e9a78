"""A run trained from a backbone weights file is evaluated where that file is not.

After ``select`` every stage loads the selected model, so the backbone's pretrained file
(a hub cache or a file on the training machine) is not needed to evaluate or index the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ucvgl.services.models import load_model
from ucvgl.services.pipeline import run_pipeline


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread."""


def _weights_file(path: Path) -> Path:
    """Random ``test_convnext`` weights (the tiny preset's backbone) as a safetensors file."""
    import timm
    from safetensors.torch import save_file

    model = timm.create_model("test_convnext.r160_in1k", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_a_finished_run_evaluates_a_new_split_without_its_backbone_file(tmp_path):
    from ucvgl.services.synth import generate_world

    world = generate_world(
        tmp_path / "w",
        "cvact",
        16,
        8,
        seed=3,
        pano_size=(32, 64),
        sat_size=32,
        workers=1,
        n_test=8,
    )
    weights = _weights_file(tmp_path / "backbone.safetensors")
    out = tmp_path / "run"
    settings = {"weights": str(weights)}
    first = run_pipeline(
        world, "cvact", "supervised", "tiny", out, device="cpu", overrides=settings
    )
    assert first["weights"]["ground"]["file"] == str(weights)
    assert set(first["recall_per_split"]) == {"val"}
    weights.unlink()  # the machine that evaluates has no such file
    again = run_pipeline(
        world,
        "cvact",
        "supervised",
        "tiny",
        out,
        device="cpu",
        overrides=settings,
        eval_splits=["val", "test"],
    )
    assert set(again["recall_per_split"]) == {"val", "test"}
    assert again["recall_per_split"]["val"] == first["recall_per_split"]["val"]
    assert again["recall_per_split"]["test"]["evaluated"] == 8
    # the evaluated model is the selected one, whatever the backbone file held
    model, _ = load_model(out / "model" / "selected.pt")
    assert torch.isfinite(next(model.parameters())).all()
