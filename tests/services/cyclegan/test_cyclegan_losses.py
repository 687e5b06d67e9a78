"""CycleGAN objectives against a NumPy reference, and the image pool's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ucvgl.services.cyclegan import ImagePool, discriminator_loss, generator_loss, lsgan_loss


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {
        "real_a": (2, 3, 8, 8),
        "real_b": (2, 3, 8, 8),
        "rec_a": (2, 3, 8, 8),
        "rec_b": (2, 3, 8, 8),
        "idt_a": (2, 3, 8, 8),
        "idt_b": (2, 3, 8, 8),
        "d_b_on_fake_b": (2, 1, 3, 3),
        "d_a_on_fake_a": (2, 1, 3, 3),
    }
    return {k: torch.rand(s, generator=g) * 2 - 1 for k, s in shapes.items()}


def _numpy_generator_loss(t: dict[str, np.ndarray], lam_cyc: float, lam_idt: float) -> float:
    """Written from the formula: LSGAN + lambda_cyc * L1 cycles + lambda_idt*lambda_cyc * L1 idt."""
    gan = np.mean((t["d_b_on_fake_b"] - 1) ** 2) + np.mean((t["d_a_on_fake_a"] - 1) ** 2)
    cyc = np.mean(np.abs(t["rec_a"] - t["real_a"])) + np.mean(np.abs(t["rec_b"] - t["real_b"]))
    idt = np.mean(np.abs(t["idt_b"] - t["real_b"])) + np.mean(np.abs(t["idt_a"] - t["real_a"]))
    return float(gan + lam_cyc * cyc + lam_idt * lam_cyc * idt)


@pytest.mark.parametrize(("lam_cyc", "lam_idt"), [(10.0, 0.5), (10.0, 0.0), (3.0, 1.0)])
def test_generator_loss_matches_hand_computation(lam_cyc: float, lam_idt: float) -> None:
    t = _tensors(0)
    terms = generator_loss(**t, lambda_cycle=lam_cyc, lambda_identity=lam_idt)
    expected = _numpy_generator_loss({k: v.numpy() for k, v in t.items()}, lam_cyc, lam_idt)
    assert float(terms["total"]) == pytest.approx(expected, rel=1e-5)
    # the parts add up to the total, and identity is weighted by lambda_idt * lambda_cyc
    parts = sum(float(v) for k, v in terms.items() if k != "total")
    assert parts == pytest.approx(float(terms["total"]), rel=1e-6)
    idt_b = np.mean(np.abs(t["idt_b"].numpy() - t["real_b"].numpy())) * lam_idt * lam_cyc
    assert float(terms["idt_b"]) == pytest.approx(idt_b, rel=1e-5)


def test_default_identity_weight_is_five_per_direction() -> None:
    real = torch.zeros(1, 3, 4, 4)
    idt = torch.full((1, 3, 4, 4), 0.2)  # L1 = 0.2
    ones = torch.ones(1, 1, 2, 2)  # perfect fool: GAN terms 0
    terms = generator_loss(
        real_a=real, real_b=real, rec_a=real, rec_b=real, d_b_on_fake_b=ones,
        d_a_on_fake_a=ones, idt_a=idt, idt_b=idt, lambda_cycle=10.0, lambda_identity=0.5,
    )  # fmt: skip
    assert float(terms["idt_a"]) == pytest.approx(0.2 * 5.0)
    assert float(terms["total"]) == pytest.approx(2 * 0.2 * 5.0)


def test_identity_needs_its_images() -> None:
    t = _tensors(1)
    t["idt_a"] = None
    with pytest.raises(ValueError, match="idt_a"):
        generator_loss(**t, lambda_cycle=10.0, lambda_identity=0.5)


def test_discriminator_and_lsgan_losses() -> None:
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    r, f = real.numpy(), fake.numpy()
    expected = 0.5 * (np.mean((r - 1) ** 2) + np.mean(f**2))
    assert float(discriminator_loss(real, fake)) == pytest.approx(expected, rel=1e-5)
    assert float(lsgan_loss(fake, False)) == pytest.approx(np.mean(f**2), rel=1e-5)


def _batch(value: float, n: int = 1) -> torch.Tensor:
    return torch.full((n, 3, 2, 2), value)


def test_pool_returns_inputs_until_full_then_mixes() -> None:
    pool = ImagePool(3, torch.Generator().manual_seed(0))
    for v in range(3):
        out = pool.query(_batch(float(v)))
        assert torch.equal(out, _batch(float(v)))  # not full: the input comes back
    assert len(pool) == 3
    returned = []
    for v in range(3, 43):
        out = pool.query(_batch(float(v)))
        returned.append(float(out[0, 0, 0, 0]))
        assert len(pool) == 3
    fresh = sum(r == v for r, v in zip(returned, range(3, 43), strict=True))
    old = len(returned) - fresh
    # about half are swapped for an older image (binomial(40, 0.5): 10..30 with p > 0.998)
    assert 10 <= old <= 30
    assert all(r < v for r, v in zip(returned, range(3, 43), strict=True) if r != v)
    stored = sorted(float(im[0, 0, 0, 0]) for im in pool.images)
    assert stored != [0.0, 1.0, 2.0]


def test_pool_batch_partly_filled_and_reproducible() -> None:
    def run(seed: int) -> list[float]:
        pool = ImagePool(2, torch.Generator().manual_seed(seed))
        first = pool.query(torch.stack([_batch(1.0)[0], _batch(2.0)[0], _batch(3.0)[0]]))
        values = [float(x[0, 0, 0]) for x in first]
        for v in range(4, 30):
            values.append(float(pool.query(_batch(float(v)))[0, 0, 0, 0]))
        return values

    a = run(5)
    assert a[:2] == [1.0, 2.0]  # the first two fill the pool and come back unchanged
    assert a == run(5)
    assert a != run(6)


def test_pool_size_zero_is_identity_and_state_roundtrip() -> None:
    x = torch.randn(2, 3, 2, 2)
    assert torch.equal(ImagePool(0, torch.Generator()).query(x), x)

    pool = ImagePool(4, torch.Generator().manual_seed(1))
    for v in range(6):
        pool.query(_batch(float(v)))
    state = pool.state_dict()
    copy = ImagePool(4, torch.Generator().manual_seed(99))
    copy.load_state_dict(state)
    for v in range(6, 20):
        assert torch.equal(pool.query(_batch(float(v))), copy.query(_batch(float(v))))
