"""Backbone weights: a hub cache, a file and a folder written here, loaded by the real code.

The hub test runs in a fresh interpreter with ``HF_HOME`` (a temporary folder holding a
cache this test writes in huggingface_hub's layout) and ``HF_HUB_OFFLINE=1``, as a user
without internet would run it: huggingface_hub reads both at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ucvgl.services.models import EncoderConfig, build_model
from ucvgl.services.models.weights import (
    folder_candidates,
    parse_weights_spec,
    resolve_weights,
)
from ucvgl.shared.errors import ConfigError

ARCH, TAG = "test_convnext", "r160_in1k"  # the tiny preset's backbone and its timm tag
SIZES = dict(ground_size=(32, 64), satellite_size=(32, 32))


@pytest.fixture(autouse=True)
def _single_torch_thread(one_torch_thread):
    """Two shared cores: one torch thread."""


def random_weights(seed: int) -> dict[str, torch.Tensor]:
    """A full timm state dict of ARCH (classifier included) with random values."""
    import timm

    model = timm.create_model(f"{ARCH}.{TAG}", pretrained=False)
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
        for k, v in model.state_dict().items()
    }


def save_weights(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def assert_backbone_holds(backbone: torch.nn.Module, written: dict[str, torch.Tensor]) -> None:
    """Every tensor of the backbone (classifier removed) equals the written one."""
    own = backbone.state_dict()
    assert len(own) >= len(written) - 2  # all but head.fc.weight / head.fc.bias
    for key, value in own.items():
        torch.testing.assert_close(value, written[key], rtol=0, atol=0, msg=key)


def write_hub_cache(hf_home: Path, repo: str, state: dict[str, torch.Tensor]) -> Path:
    """huggingface_hub's cache layout: hub/models--org--name/{refs/main, snapshots/REV/}."""
    revision = hashlib.sha1(repo.encode()).hexdigest()
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)
    return save_weights(state, root / "snapshots" / revision / "model.safetensors")


HUB_SCRIPT = r"""
import json, sys
import torch
from safetensors.torch import save_file
from ucvgl.services.models import EncoderConfig, build_model
from ucvgl.services.models.weights import resolve_weights
from ucvgl.shared.errors import ConfigError

torch.set_num_threads(1)
out = {}
w = resolve_weights("test_convnext", "hub")
out["resolved"] = w.to_dict()
model = build_model(EncoderConfig(backbone="test_convnext", ground_size=(32, 64),
    satellite_size=(32, 32), weights=w.file, weights_tag=w.tag))
save_file({k: v.contiguous() for k, v in model.ground_encoder.backbone.state_dict().items()},
          sys.argv[1])
out["mean"] = list(model.data_config["mean"])
try:
    resolve_weights("convnext_atto", "hub")  # nothing of it in the cache
except ConfigError as exc:
    out["error"] = str(exc)
print("RESULT " + json.dumps(out))
"""


def test_hub_weights_load_from_an_offline_cache_and_a_missing_one_is_a_clear_error(tmp_path):
    from safetensors.torch import load_file

    written = random_weights(seed=1)
    cached = write_hub_cache(tmp_path / "hf", f"timm/{ARCH}.{TAG}", written)
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("HF_HUB_CACHE", None)
    loaded_file = tmp_path / "loaded.safetensors"
    proc = subprocess.run(
        [sys.executable, "-c", HUB_SCRIPT, str(loaded_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    resolved = out["resolved"]
    assert resolved["source"] == "hub" and resolved["tag"] == TAG
    assert Path(resolved["file"]) == cached.absolute()
    assert resolved["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    loaded = load_file(str(loaded_file))
    assert len(loaded) >= len(written) - 2
    for key, value in loaded.items():
        torch.testing.assert_close(value, written[key], rtol=0, atol=0, msg=key)
    assert out["mean"] == [0.5, 0.5, 0.5]  # timm's data config of the tag
    error = out["error"]
    assert "convnext_atto.d2_in1k" in error  # the tag
    assert str(tmp_path / "hf" / "hub" / "models--timm--convnext_atto.d2_in1k") in error
    assert "HF_HUB_OFFLINE" in error and "--weights none" in error


def test_weights_file_loads_its_values_and_records_its_sha256(tmp_path):
    written = random_weights(seed=2)
    path = save_weights(written, tmp_path / "my backbone.safetensors")
    w = resolve_weights(ARCH, str(path))
    assert (w.source, w.tag, w.file) == ("file", None, path.absolute())
    assert w.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    model = build_model(EncoderConfig(backbone=ARCH, **SIZES, weights=w.file))
    assert_backbone_holds(model.ground_encoder.backbone, written)
    assert_backbone_holds(model.satellite_encoder.backbone, written)
    with pytest.raises(ConfigError, match=r"does not exist.*--weights none"):
        resolve_weights(ARCH, str(tmp_path / "nowhere.safetensors"))


def test_folder_finds_files_by_timm_name_and_tag(tmp_path):
    flat = tmp_path / "flat"
    written = random_weights(seed=3)
    save_weights(written, flat / f"{ARCH}.{TAG}.safetensors")
    w = resolve_weights(ARCH, str(flat))  # timm's default tag of the backbone
    assert (w.source, w.tag) == ("folder", TAG)
    model = build_model(EncoderConfig(backbone=ARCH, **SIZES, weights=w.file, weights_tag=w.tag))
    assert_backbone_holds(model.ground_encoder.backbone, written)

    # `hf download timm/NAME.TAG --local-dir FOLDER/NAME.TAG` layout, tag named explicitly
    nested = tmp_path / "nested"
    other = random_weights(seed=4)
    save_weights(other, nested / f"{ARCH}.{TAG}" / "model.safetensors")
    w = resolve_weights(ARCH, f"{nested}:{TAG}")
    assert w.file == (nested / f"{ARCH}.{TAG}" / "model.safetensors").absolute()
    model = build_model(EncoderConfig(backbone=ARCH, **SIZES, weights=w.file))
    assert_backbone_holds(model.satellite_encoder.backbone, other)

    with pytest.raises(ConfigError) as info:
        resolve_weights(ARCH, f"{nested}:other_tag")
    for candidate in folder_candidates(nested, ARCH, "other_tag"):
        assert str(candidate) in str(info.value)
    assert "--weights none" in str(info.value)


def test_hub_weights_come_from_the_weights_dir_first(tmp_path):
    written = random_weights(seed=5)
    path = save_weights(written, tmp_path / "dir" / f"{ARCH}.{TAG}.pth.tar")
    w = resolve_weights(ARCH, "hub", weights_dir=tmp_path / "dir")
    assert (w.source, w.tag, w.file) == ("folder", TAG, path.absolute())


def test_unknown_hub_tag_lists_timm_tags():
    with pytest.raises(ConfigError, match=r"no pretrained tag test_convnext.nope.*r160_in1k"):
        resolve_weights(ARCH, "hub:nope")


def test_weights_spec_grammar(tmp_path):
    assert parse_weights_spec("none").kind == "none"
    assert parse_weights_spec(None).kind == "none"
    assert parse_weights_spec("hub") == parse_weights_spec("hub")
    assert parse_weights_spec("hub:fb_in22k_ft_in1k").tag == "fb_in22k_ft_in1k"
    assert parse_weights_spec(str(tmp_path)).kind == "folder"
    spec = parse_weights_spec(f"{tmp_path}:fb_in1k")
    assert (spec.kind, spec.tag, spec.path) == ("folder", "fb_in1k", tmp_path)
    assert parse_weights_spec(str(tmp_path / "w.pth")).kind == "file"
    with pytest.raises(ConfigError, match="hub:"):
        parse_weights_spec("hub:")
