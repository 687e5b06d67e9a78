"""CycleGANConfig: the authors' preset, the original linear schedule, validation."""

from __future__ import annotations

import pytest

from ucvgl.services.cyclegan import CycleGANConfig
from ucvgl.shared.errors import ConfigError


def test_paper_preset_has_the_authors_settings() -> None:
    cfg = CycleGANConfig.paper()
    assert (cfg.size, cfg.ngf, cfg.ndf, cfg.n_blocks, cfg.n_layers) == (320, 64, 64, 9, 3)
    assert (cfg.batch_size, cfg.lr, cfg.beta1) == (1, 2e-4, 0.5)
    assert (cfg.lambda_cycle, cfg.lambda_identity, cfg.pool_size) == (10.0, 0.5, 50)
    assert CycleGANConfig.paper(epochs=20, decay_epochs=10).epochs == 20


def test_the_paper_presets_train_the_authors_cyclegan() -> None:
    from ucvgl.services.presets import PRESETS

    for name in ("paper-small", "paper-base"):
        assert PRESETS[name].cyclegan_config() == CycleGANConfig.paper(), name


def _original_linear(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    # junyanz/pytorch-CycleGAN-and-pix2pix networks.get_scheduler('linear'), epoch_count=1
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


@pytest.mark.parametrize(("epochs", "decay"), [(200, None), (10, 4), (5, None), (1, None)])
def test_lr_schedule_is_the_original_linear_policy(epochs: int, decay: int | None) -> None:
    cfg = CycleGANConfig(epochs=epochs, decay_epochs=decay)
    n_decay = epochs // 2 if decay is None else decay
    for e in range(epochs):
        assert cfg.lr_factor(e) == pytest.approx(_original_linear(e, epochs - n_decay, n_decay))
    assert cfg.lr_factor(0) == 1.0
    assert cfg.lr_factor(epochs - 1) > 0


def test_roundtrip_and_unknown_fields() -> None:
    cfg = CycleGANConfig(size=48, max_images_per_epoch=10)
    assert CycleGANConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        CycleGANConfig.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"size": 30}, "size"),
        ({"size": 20}, "size"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"decay_epochs": 9, "epochs": 5}, "decay_epochs"),
        ({"max_images_per_epoch": 0}, "max_images_per_epoch"),
        ({"pool_size": -1}, "pool_size"),
        ({"lambda_identity": -0.5}, "lambda"),
    ],
)
def test_invalid_values_raise_config_error(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        CycleGANConfig(**kwargs)


def test_cpu_quick_preset_is_small_and_overridable() -> None:
    cfg = CycleGANConfig.cpu_quick()
    assert (cfg.size, cfg.ngf, cfg.ndf, cfg.n_blocks, cfg.batch_size, cfg.epochs) == (
        64, 8, 8, 2, 4, 4,
    )  # fmt: skip
    assert CycleGANConfig.cpu_quick(epochs=2).epochs == 2


def test_load_size_is_checked_and_paper_crops_320_of_360():
    assert (CycleGANConfig.paper().load_size, CycleGANConfig.paper().size) == (360, 320)
    assert CycleGANConfig.paper().translate_size == 360
    assert CycleGANConfig(size=32).translate_size == 32
    for bad in (28, 42):  # smaller than size; not a multiple of 4
        with pytest.raises(ConfigError, match="load_size"):
            CycleGANConfig(size=32, load_size=bad)
