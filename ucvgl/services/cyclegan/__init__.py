"""Imaging projection (paper Sec. 3.1.1): an unpaired CycleGAN from BEV images to satellite
tiles, whose A->B generator turns each BEV into a "fake satellite" image."""

from .checkpoint import CHECKPOINT_NAME, load_checkpoint, load_generator
from .config import CycleGANConfig
from .data import UnpairedImageDataset
from .losses import ImagePool, discriminator_loss, generator_loss, lsgan_loss
from .networks import PatchDiscriminator, ResnetGenerator, patch_output_size
from .train import LOSSES_NAME, build_networks, train_cyclegan
from .translate import translate

__all__ = [
    "CHECKPOINT_NAME",
    "LOSSES_NAME",
    "CycleGANConfig",
    "ImagePool",
    "PatchDiscriminator",
    "ResnetGenerator",
    "UnpairedImageDataset",
    "build_networks",
    "discriminator_loss",
    "generator_loss",
    "load_checkpoint",
    "load_generator",
    "lsgan_loss",
    "patch_output_size",
    "train_cyclegan",
    "translate",
]
