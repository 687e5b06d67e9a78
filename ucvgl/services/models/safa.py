"""Spatial-aware feature aggregation (SAFA, Shi et al., NeurIPS 2019).

A CNN feature map ``F`` [B, C, h, w] is turned into ``num_branches`` spatial weight maps
computed from its channel-wise maximum, and each map pools ``F`` into a C-vector:

    m = max_c F[b, c, :]                                  [B, hw]
    A[b, k] = (m W1[k] + b1[k]) W2[k] + b2[k]             [B, K, hw]   (k = 1..K)
    out[b, c, k] = sum_p F[b, c, p] * A[b, k, p]          [B, C, K] -> [B, C*K]

Each branch is two fully connected layers hw -> hw/2 -> hw with NO activation between them,
exactly as in the SAFA reference code (and the UCVGL authors' PyTorch port). The K branches
are vectorised as batched weights ``w1`` [K, hw, hw/2], ``w2`` [K, hw/2, hw] (hw/2 rounded
down, at least 1, so a 1x1 feature map still works). Weights are
initialised from N(0, 0.005^2) and biases to 0.1 (SAFA: truncated normal, std 0.005,
constant 0.1), so every map starts close to a uniform 0.1 weighting of all positions.
The output is NOT normalised here; the encoder L2-normalises it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SAFA_WEIGHT_STD = 0.005
SAFA_BIAS_INIT = 0.1


class SAFA(nn.Module):
    """Spatial-aware feature aggregation head.

    Args:
        in_hw: number of spatial positions h*w of the feature maps it will receive.
        num_branches: number K of spatial weight maps (the paper uses 8).

    Shapes:
        forward(x [B, C, h, w]) -> [B, C * K] (channel-major: index c * K + k).
    """

    def __init__(self, in_hw: int, num_branches: int = 8) -> None:
        super().__init__()
        if in_hw < 1:
            raise ValueError(f"SAFA in_hw must be >= 1 (got {in_hw})")
        if num_branches < 1:
            raise ValueError(f"SAFA num_branches must be >= 1 (got {num_branches})")
        self.in_hw = int(in_hw)
        self.num_branches = int(num_branches)
        self.hidden = max(1, self.in_hw // 2)
        self.w1 = nn.Parameter(torch.empty(num_branches, self.in_hw, self.hidden))
        self.b1 = nn.Parameter(torch.empty(num_branches, self.hidden))
        self.w2 = nn.Parameter(torch.empty(num_branches, self.hidden, self.in_hw))
        self.b2 = nn.Parameter(torch.empty(num_branches, self.in_hw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weights ~ N(0, 0.005^2) truncated at 2 std, biases = 0.1 (as SAFA)."""
        for w in (self.w1, self.w2):
            nn.init.trunc_normal_(
                w, mean=0.0, std=SAFA_WEIGHT_STD, a=-2 * SAFA_WEIGHT_STD, b=2 * SAFA_WEIGHT_STD
            )
        for b in (self.b1, self.b2):
            nn.init.constant_(b, SAFA_BIAS_INIT)

    @property
    def out_multiplier(self) -> int:
        """The output has ``C * out_multiplier`` dimensions."""
        return self.num_branches

    def spatial_maps(self, x: Tensor) -> Tensor:
        """Spatial weight maps A [B, K, hw] of a feature map x [B, C, h, w]."""
        b, _, h, w = x.shape
        if h * w != self.in_hw:
            raise ValueError(
                f"SAFA was built for feature maps with {self.in_hw} positions but got "
                f"{h}x{w}={h * w}; build the encoder for this input size"
            )
        m = x.amax(dim=1).reshape(b, h * w)  # [B, hw]
        hid = torch.einsum("bp,kpj->bkj", m, self.w1) + self.b1  # [B, K, hw/2]
        return torch.einsum("bkj,kjp->bkp", hid, self.w2) + self.b2  # [B, K, hw]

    def forward(self, x: Tensor) -> Tensor:
        """Pool x [B, C, h, w] with K spatial maps -> [B, C*K]."""
        b, c, h, w = x.shape
        maps = self.spatial_maps(x)  # [B, K, hw]
        pooled = torch.einsum("bcp,bkp->bck", x.reshape(b, c, h * w), maps)  # [B, C, K]
        return pooled.reshape(b, c * self.num_branches)

    def extra_repr(self) -> str:
        return f"in_hw={self.in_hw}, hidden={self.hidden}, num_branches={self.num_branches}"
