"""CycleGAN objectives (LSGAN, cycle, identity) and the discriminators' image history.

Naming: ``g_ab`` maps domain A (BEV) to B (satellite), ``g_ba`` maps B to A; ``d_b`` judges
images of domain B (real satellites vs ``g_ab`` outputs) and ``d_a`` judges domain A.
(The original code calls them G_A, G_B, D_A (judges B) and D_B (judges A).)

Generator objective, exactly as the original implementation:

    L_G = MSE(d_b(g_ab(a)), 1) + MSE(d_a(g_ba(b)), 1)                           (LSGAN)
        + lambda_cycle * (|g_ba(g_ab(a)) - a|_1 + |g_ab(g_ba(b)) - b|_1)         (cycle)
        + lambda_identity * lambda_cycle * (|g_ab(b) - b|_1 + |g_ba(a) - a|_1)   (identity)

``lambda_identity`` is relative to ``lambda_cycle`` (0.5 * 10 = 5 per direction), as in the
original ``--lambda_identity`` option. Each L1 and MSE is a mean over all elements.
Discriminator objective: ``0.5 * (MSE(d(real), 1) + MSE(d(fake), 0))`` per discriminator,
with ``fake`` drawn through an :class:`ImagePool`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lsgan_loss(prediction: Tensor, target_is_real: bool) -> Tensor:
    """Least-squares GAN loss: mean squared distance of the score map to 1 (real) or 0 (fake).

    Args:
        prediction: discriminator scores [B, 1, h, w].
        target_is_real: whether the judged images should be called real.
    """
    target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction.float(), target.float())


def generator_loss(
    *,
    real_a: Tensor,
    real_b: Tensor,
    rec_a: Tensor,
    rec_b: Tensor,
    d_b_on_fake_b: Tensor,
    d_a_on_fake_a: Tensor,
    idt_b: Tensor | None,
    idt_a: Tensor | None,
    lambda_cycle: float,
    lambda_identity: float,
) -> dict[str, Tensor]:
    """The weighted generator objective and its terms (module docstring formula).

    Args:
        real_a: BEV images [B, 3, H, W]. real_b: satellite images [B, 3, H, W].
        rec_a: ``g_ba(g_ab(real_a))``. rec_b: ``g_ab(g_ba(real_b))``.
        d_b_on_fake_b: ``d_b(g_ab(real_a))`` [B, 1, h, w]. d_a_on_fake_a: ``d_a(g_ba(real_b))``.
        idt_b: ``g_ab(real_b)`` (B should pass unchanged) or None when lambda_identity is 0.
        idt_a: ``g_ba(real_a)`` or None.
        lambda_cycle: weight of each cycle term.
        lambda_identity: identity weight relative to ``lambda_cycle``.

    Returns:
        Weighted terms ``gan_ab, gan_ba, cycle_a, cycle_b, idt_a, idt_b`` and their sum
        ``total`` (scalars; the identity terms are 0 when disabled).
    """
    terms = {
        "gan_ab": lsgan_loss(d_b_on_fake_b, True),
        "gan_ba": lsgan_loss(d_a_on_fake_a, True),
        "cycle_a": F.l1_loss(rec_a.float(), real_a.float()) * lambda_cycle,
        "cycle_b": F.l1_loss(rec_b.float(), real_b.float()) * lambda_cycle,
    }
    identity_weight = lambda_identity * lambda_cycle
    if identity_weight > 0:
        if idt_a is None or idt_b is None:
            raise ValueError("generator_loss needs idt_a and idt_b when lambda_identity > 0")
        terms["idt_b"] = F.l1_loss(idt_b.float(), real_b.float()) * identity_weight
        terms["idt_a"] = F.l1_loss(idt_a.float(), real_a.float()) * identity_weight
    else:
        zero = real_a.new_zeros((), dtype=torch.float32)
        terms["idt_b"] = zero
        terms["idt_a"] = zero
    terms["total"] = sum(terms.values(), real_a.new_zeros((), dtype=torch.float32))
    return terms


def discriminator_loss(on_real: Tensor, on_fake: Tensor) -> Tensor:
    """``0.5 * (MSE(on_real, 1) + MSE(on_fake, 0))`` for score maps [B, 1, h, w]."""
    return 0.5 * (lsgan_loss(on_real, True) + lsgan_loss(on_fake, False))


class ImagePool:
    """History of generated images shown to a discriminator (Shrivastava et al. 2017).

    While the pool holds fewer than ``pool_size`` images, each queried image is stored and
    returned unchanged. Once full, each queried image is, with probability 1/2, swapped with
    a random stored image (the stored one is returned, the new one takes its place), and
    otherwise returned unchanged. Randomness comes only from ``generator``.

    Args:
        pool_size: capacity; 0 disables the pool (``query`` returns its input).
        generator: CPU random generator that drives the swaps.
    """

    def __init__(self, pool_size: int, generator: torch.Generator) -> None:
        if pool_size < 0:
            raise ValueError(f"ImagePool.pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.generator = generator
        self.images: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: Tensor) -> Tensor:
        """Images to show the discriminator [B, C, H, W] for freshly generated ``images``."""
        if self.pool_size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.pool_size:
                self.images.append(image.clone())
                out.append(image)
                continue
            swap = torch.rand((), generator=self.generator).item() > 0.5
            if swap:
                slot = int(torch.randint(self.pool_size, (), generator=self.generator))
                out.append(self.images[slot].to(image.device, image.dtype))
                self.images[slot] = image.clone()
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Tensor | int]:
        """Pool contents [N, C, H, W] on the CPU and the generator state, for checkpoints."""
        contents = torch.cat([im.cpu() for im in self.images], 0) if self.images else None
        return {
            "pool_size": self.pool_size,
            "images": contents if contents is not None else torch.empty(0),
            "rng_state": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        """Restore :meth:`state_dict` output, placing images on ``device``."""
        images = state["images"]
        self.images = [im.unsqueeze(0).to(device) for im in images] if images.numel() else []
        self.images = self.images[: self.pool_size]
        self.generator.set_state(state["rng_state"])
