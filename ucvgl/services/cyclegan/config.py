"""Settings of the imaging projection (CycleGAN BEV -> satellite).

The defaults are small enough to train in minutes on a CPU; :meth:`CycleGANConfig.paper`
gives the settings of the UCVGL authors (the original CycleGAN settings at 320 px).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ucvgl.services.presets import PRESETS
from ucvgl.shared.errors import ConfigError

#: Fields that fix the shapes of the networks: a checkpoint only resumes with the same values.
ARCHITECTURE_FIELDS = ("ngf", "ndf", "n_blocks", "n_layers")


def patch_output_size(size: int, n_layers: int) -> int:
    """Side of the PatchGAN score map for a ``size`` x ``size`` input (4x4 kernels, padding 1:
    ``n_layers`` stride-2 convolutions, then two stride-1 ones)."""
    for _ in range(n_layers):
        size = (size + 2 - 4) // 2 + 1
    return size - 2


@dataclass(frozen=True)
class CycleGANConfig:
    """Hyper-parameters of one CycleGAN training run.

    Attributes:
        size: side of the square training images in pixels (both domains are resized to
            it, or cropped to it from ``load_size``).
        load_size: None resizes every image straight to ``size``; otherwise images are
            resized to ``load_size`` and a random ``size`` crop is taken (the original
            CycleGAN's ``resize_and_crop``: 360 then 320), and translation runs on the
            whole BEV resized to ``load_size`` (the scale the generator was trained at).
        ngf: base filters of the ResNet generators (64 in the paper).
        ndf: base filters of the PatchGAN discriminators (64 in the paper).
        n_blocks: residual blocks of each generator (9 in the paper).
        n_layers: stride-2 layers of each discriminator (3 = the 70x70 PatchGAN).
        epochs: total epochs, constant learning rate then linear decay.
        batch_size: images per step (1 in the paper).
        lr: Adam learning rate of generators and discriminators.
        beta1: Adam beta1 (beta2 is 0.999).
        lambda_cycle: weight of each direction's cycle-consistency L1 loss.
        lambda_identity: identity-loss weight RELATIVE to ``lambda_cycle``: the identity
            term of each direction is ``lambda_identity * lambda_cycle * L1``, as in the
            original implementation (0.5 * 10 = 5). 0 disables it.
        pool_size: size of each discriminator's history of generated images (0 = no pool).
        decay_epochs: epochs at the end over which the learning rate falls linearly towards
            zero; ``None`` means the second half of ``epochs`` (the original 100 + 100).
        seed: seeds initial weights, data order, flips and the image pools.
        max_images_per_epoch: cap on the images of domain A drawn per epoch (a fresh random
            subset each epoch); ``None`` = one pass over max(len(A), len(B)) images.
        num_workers: DataLoader worker processes for image decoding.
    """

    size: int = 64
    load_size: int | None = None
    ngf: int = 16
    ndf: int = 16
    n_blocks: int = 3
    n_layers: int = 3
    epochs: int = 5
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    decay_epochs: int | None = None
    seed: int = 0
    max_images_per_epoch: int | None = None
    num_workers: int = 0

    def __post_init__(self) -> None:
        positive = ("size", "ngf", "ndf", "epochs", "batch_size")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"CycleGANConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16 or self.size % 4:
            raise ConfigError(
                f"CycleGANConfig.size must be a multiple of 4 and >= 16 (the generator halves it "
                f"twice), got {self.size}"
            )
        if self.load_size is not None and (self.load_size < self.size or self.load_size % 4):
            raise ConfigError(
                f"CycleGANConfig.load_size must be None or a multiple of 4 >= size "
                f"({self.size}), got {self.load_size}"
            )
        for name in ("n_blocks", "pool_size", "num_workers"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"CycleGANConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.n_layers < 1:
            raise ConfigError(f"CycleGANConfig.n_layers must be >= 1, got {self.n_layers}")
        if patch_output_size(self.size, self.n_layers) < 1:
            raise ConfigError(
                f"CycleGANConfig.size={self.size} is too small for a PatchGAN with "
                f"n_layers={self.n_layers} (empty score map); raise size or lower n_layers"
            )
        if not self.lr > 0 or not 0 <= self.beta1 < 1:
            raise ConfigError(
                f"CycleGANConfig needs lr > 0 and 0 <= beta1 < 1, got {self.lr}, {self.beta1}"
            )
        if self.lambda_cycle < 0 or self.lambda_identity < 0:
            raise ConfigError("CycleGANConfig.lambda_cycle and lambda_identity must be >= 0")
        if self.decay_epochs is not None and not 0 <= self.decay_epochs <= self.epochs:
            raise ConfigError(
                f"CycleGANConfig.decay_epochs must be in [0, epochs={self.epochs}] or None, "
                f"got {self.decay_epochs}"
            )
        if self.max_images_per_epoch is not None and self.max_images_per_epoch < 1:
            raise ConfigError(
                f"CycleGANConfig.max_images_per_epoch must be >= 1 or None, "
                f"got {self.max_images_per_epoch}"
            )

    @property
    def translate_size(self) -> int:
        """Side at which whole images are translated: ``load_size``, else ``size``."""
        return self.size if self.load_size is None else self.load_size

    @property
    def resolved_decay_epochs(self) -> int:
        """Epochs of linear learning-rate decay (default: the second half)."""
        return self.epochs // 2 if self.decay_epochs is None else self.decay_epochs

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier during 0-based ``epoch`` (the original ``linear`` policy).

        Constant for the first ``epochs - decay`` epochs, then
        ``1 - (epoch + 1 - constant) / (decay + 1)``, so the last epoch still trains at
        ``1 / (decay + 1)`` of the base rate.
        """
        decay = self.resolved_decay_epochs
        constant = self.epochs - decay
        return 1.0 - max(0, epoch + 1 - constant) / float(decay + 1)

    @classmethod
    def paper(cls, **overrides: Any) -> CycleGANConfig:
        """The authors' settings: 9 blocks, 64 filters, 320 px, batch 1, lambda 10, identity 0.5,
        pool 50, Adam 2e-4 / 0.5, 50 epochs (paper Sec. 4.2) decaying over the last 25, random
        320 crops of images resized to 360.

        Sizes, networks, epochs, batch and pool are the ``paper-small`` preset's ``cyclegan``
        (the one source, checked against docs/paper-settings.md); the optimiser and loss
        weights are given here."""
        base = cls(
            **PRESETS["paper-small"].cyclegan,
            lr=2e-4,
            beta1=0.5,
            lambda_cycle=10.0,
            lambda_identity=0.5,
        )
        return replace(base, **overrides)

    @classmethod
    def cpu_quick(cls, **overrides: Any) -> CycleGANConfig:
        """CPU preset for a 1,000-location world: the stage in about 4 minutes on 2 cores.

        64 px, 8 filters, 2 residual blocks, batch 4, 4 epochs (the last two decaying).
        Measured on this project's 2-core machine with one torch thread: about 45-55 ms of
        CPU per image per epoch, so 4 epochs of 1,000 images take about 3.5 minutes, plus
        about 25 s to translate 1,000 BEVs. On a 500-location synthetic world it raised the
        raw-pixel retrieval R@1 of BEV vs satellite from 28.0 % (BEV) to 36.4 % (fakes).
        The default config (16 filters, 3 blocks, batch 1) costs about 150 ms per image.
        """
        base = cls(size=64, ngf=8, ndf=8, n_blocks=2, epochs=4, batch_size=4)
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for checkpoints and JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CycleGANConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown CycleGANConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)
