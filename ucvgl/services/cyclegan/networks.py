"""CycleGAN networks: ResNet generator and PatchGAN discriminator (Zhu et al. 2017).

Layer by layer as in the original implementation (junyanz/pytorch-CycleGAN-and-pix2pix,
``networks.py``) with instance normalisation (no affine parameters, so every convolution
has a bias) and no dropout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import patch_output_size

__all__ = [
    "PatchDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "init_weights",
    "patch_output_size",
]


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with a skip connection: ``x + F(x)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=True),
            _norm(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=True),
            _norm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, d(2ngf), d(4ngf), n_blocks x R(4ngf), u(2ngf), u(ngf), c7s1-3, tanh.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output image.
        ngf: filters of the first layer.
        n_blocks: residual blocks at 1/4 resolution (9 in the paper, 6 for 128 px images).
    """

    def __init__(
        self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9
    ) -> None:
        super().__init__()
        if ngf < 1 or n_blocks < 0:
            raise ValueError(
                f"ResnetGenerator needs ngf >= 1 and n_blocks >= 0, got {ngf}, {n_blocks}"
            )
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=True),
            _norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):  # downsampling
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                _norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):  # upsampling
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult,
                    ngf * mult // 2,
                    3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                    bias=True,
                ),
                _norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """[B, in, H, W] in [-1, 1] -> [B, out, H, W] in [-1, 1] (H, W multiples of 4)."""
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a map of real/fake scores, one per overlapping patch (70x70 for n_layers=3).

    C64 (no norm) - C128 - C256 - C512 (stride 1) - 1 channel, 4x4 kernels, LeakyReLU 0.2.

    Args:
        in_channels: channels of the judged image.
        ndf: filters of the first layer.
        n_layers: stride-2 layers; the output map of an H x W input is about H / 2**n_layers - 2.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if ndf < 1 or n_layers < 1:
            raise ValueError(
                f"PatchDiscriminator needs ndf >= 1 and n_layers >= 1, got {ndf}, {n_layers}"
            )
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True),
                _norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True),
            _norm(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, 1, h, w] raw scores (LSGAN: no sigmoid)."""
        return self.model(x)


def init_weights(module: nn.Module, generator: torch.Generator, gain: float = 0.02) -> None:
    """The original ``normal`` init: conv weights ~ N(0, gain), biases 0.

    Draws from ``generator`` so that initial weights depend on the run's seed only.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            with torch.no_grad():
                m.weight.copy_(
                    torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype) * gain
                )
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.weight is not None:
            with torch.no_grad():
                m.weight.copy_(1.0 + torch.randn(m.weight.shape, generator=generator) * gain)
                m.bias.zero_()
