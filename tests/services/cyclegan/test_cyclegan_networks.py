"""Shapes, receptive field, size and init of the CycleGAN networks."""

from __future__ import annotations

import pytest
import torch

from ucvgl.services.cyclegan import PatchDiscriminator, ResnetGenerator, build_networks
from ucvgl.services.cyclegan.config import CycleGANConfig, patch_output_size


@pytest.mark.parametrize("size", [32, 64, 72])
def test_generator_keeps_shape_and_range(size: int) -> None:
    gen = ResnetGenerator(3, 3, ngf=8, n_blocks=1)
    out = gen(torch.randn(2, 3, size, size) * 3)
    assert out.shape == (2, 3, size, size)
    assert out.abs().max() <= 1.0


@pytest.mark.parametrize(("size", "n_layers"), [(32, 3), (64, 3), (70, 3), (256, 3), (64, 2)])
def test_patch_discriminator_map_size(size: int, n_layers: int) -> None:
    disc = PatchDiscriminator(3, ndf=8, n_layers=n_layers)
    out = disc(torch.randn(1, 3, size, size))
    side = patch_output_size(size, n_layers)
    assert out.shape == (1, 1, side, side)
    assert side >= 1


def test_known_patch_map_sizes() -> None:
    # the original 70x70 PatchGAN gives a 30x30 map on 256 px images
    assert patch_output_size(256, 3) == 30
    assert patch_output_size(32, 3) == 2


def test_patchgan_receptive_field_is_70() -> None:
    disc = PatchDiscriminator(3, ndf=4, n_layers=3).double()
    # instance norm mixes all positions through its statistics: drop it to see the convs' field
    for i, layer in enumerate(disc.model):
        if isinstance(layer, torch.nn.InstanceNorm2d):
            disc.model[i] = torch.nn.Identity()
    x = torch.randn(1, 3, 140, 140, dtype=torch.float64, requires_grad=True)
    out = disc(x)
    h = out.shape[-1] // 2
    out[0, 0, h, h].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3)) > 0).flatten()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
    assert int(rows.max() - rows.min()) + 1 == 70
    assert int(cols.max() - cols.min()) + 1 == 70


def test_paper_sizes_match_the_original_parameter_counts() -> None:
    # ResnetGenerator(ngf=64, 9 blocks) and NLayerDiscriminator(ndf=64, 3 layers) of
    # junyanz/pytorch-CycleGAN-and-pix2pix with instance norm.
    gen = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
    disc = PatchDiscriminator(3, ndf=64, n_layers=3)
    assert sum(p.numel() for p in gen.parameters()) == 11_378_179
    assert sum(p.numel() for p in disc.parameters()) == 2_764_737


def test_init_is_normal_002_and_seeded() -> None:
    cfg = CycleGANConfig(size=32, ngf=16, ndf=16, n_blocks=2, seed=3)
    nets = build_networks(cfg)
    weights = torch.cat(
        [m.weight.flatten() for m in nets["g_ab"].modules() if isinstance(m, torch.nn.Conv2d)]
    )
    assert abs(float(weights.detach().mean())) < 2e-3
    assert float(weights.detach().std()) == pytest.approx(0.02, rel=0.05)
    biases = [m.bias for m in nets["d_b"].modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(float(b.detach().abs().max()) == 0.0 for b in biases)
    again = build_networks(cfg)
    other = build_networks(CycleGANConfig(size=32, ngf=16, ndf=16, n_blocks=2, seed=4))
    for name in nets:
        same = zip(nets[name].state_dict().values(), again[name].state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in same)
    assert not torch.equal(nets["g_ab"].model[1].weight, other["g_ab"].model[1].weight)
    # the two generators of one run start from different weights
    assert not torch.equal(nets["g_ab"].model[1].weight, nets["g_ba"].model[1].weight)
