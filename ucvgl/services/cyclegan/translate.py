"""Applying the trained imaging projection: BEV images -> fake satellite images."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from ucvgl.services.progress import NullProgress, Progress, report_count
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.fileio import atomic_write_bytes

from .checkpoint import load_generator
from .data import image_to_tensor, load_rgb_image, tensor_to_image

STAGE = "cyclegan-translate"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def translate(
    checkpoint: Path,
    bev_paths: list[Path],
    out_dir: Path,
    *,
    device: str = "cpu",
    batch_size: int = 16,
    out_size: int | None = None,
    progress: Progress = NullProgress(),
) -> list[Path]:
    """Run the A->B generator on each BEV image and write ``out_dir/<stem>.png``.

    Each BEV is resized to the training size of the checkpoint, translated, and (when
    ``out_size`` is given) resized bicubically to ``out_size`` x ``out_size``. Outputs that
    already exist are skipped, so an interrupted run resumes where it stopped.

    Args:
        checkpoint: ``cyclegan_last.pt`` from :func:`train_cyclegan`.
        bev_paths: BEV images; their file stems must be unique.
        out_dir: receives one PNG per input (created if missing).
        device: ``"cpu"`` or ``"cuda[:N]"`` (float16 autocast on CUDA).
        batch_size: images per forward pass.
        out_size: side of the written images; ``None`` keeps the training size.
        progress: receives ``("cyclegan-translate", fraction)`` per batch; cancellable
            between batches.

    Returns:
        The output paths, in the order of ``bev_paths``.

    Raises:
        ConfigError: missing or corrupt checkpoint, duplicate stems, bad sizes.
        DatasetError: a BEV image is missing or unreadable.
    """
    if batch_size < 1:
        raise ConfigError(f"translate batch_size must be >= 1, got {batch_size}")
    if out_size is not None and out_size < 1:
        raise ConfigError(f"translate out_size must be >= 1 or None, got {out_size}")
    out_dir = Path(out_dir)
    outputs = [out_dir / f"{Path(p).stem}.png" for p in bev_paths]
    seen: dict[Path, Path] = {}
    for src, dst in zip(bev_paths, outputs, strict=True):
        if dst in seen:
            raise ConfigError(
                f"BEV images {seen[dst]} and {src} would both be written to {dst}; "
                f"give the inputs unique file names"
            )
        seen[dst] = Path(src)
    todo = [i for i, dst in enumerate(outputs) if not dst.exists()]
    if not todo:
        progress.update(STAGE, 1.0, f"all {len(outputs)} fake satellite images exist")
        return outputs

    dev = torch.device(device)
    generator = load_generator(checkpoint, dev)
    size = int(getattr(generator, "translate_size", generator.train_size))
    out_dir.mkdir(parents=True, exist_ok=True)
    done = len(outputs) - len(todo)
    for start in range(0, len(todo), batch_size):
        progress.check_cancelled()
        chunk = todo[start : start + batch_size]
        batch = torch.stack([image_to_tensor(load_rgb_image(bev_paths[i]), size) for i in chunk])
        with (
            torch.inference_mode(),
            torch.autocast(dev.type, dtype=torch.float16, enabled=dev.type == "cuda"),
        ):
            fakes = generator(batch.to(dev)).float().cpu()
        for i, fake in zip(chunk, fakes, strict=True):
            image = tensor_to_image(fake)
            if out_size is not None and out_size != size:
                image = image.resize((out_size, out_size), Image.Resampling.BICUBIC)
            atomic_write_bytes(outputs[i], _png_bytes(image))
        done += len(chunk)
        report_count(progress, STAGE, done, len(outputs), "images", f"{done}/{len(outputs)} images")
    return outputs
