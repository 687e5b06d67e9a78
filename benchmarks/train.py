"""Issue 5: training throughput of our training step vs a bare timm loop, same batch, same run.

    .venv/bin/python benchmarks/train.py --preset cpu --batch 32 --steps 12

"ours" is the real :class:`StageRunner` step (both encoders with SAFA, gathered symmetric
InfoNCE with the learnable temperature, AdamW, warm-up/cosine schedule, gradient
clipping, AMP + channels_last on CUDA, progress and cancellation checks). "bare timm" is
the same two backbones from timm with global pooling, a plain InfoNCE on their pooled
features, backward and AdamW: the floor any training loop pays.

What it does NOT measure: both loops train on ONE in-memory batch of random tensors, so
image decoding, the DataLoader and the augmentations are not in either number; the ratio
is the training step's own overhead (loop, SAFA, loss, optimiser, schedule) over the bare
backbones. ``--steps`` counts all steps, the first ``--warmup`` are not timed. Prints
images per second (ground + satellite images) and writes benchmarks/results/train.json
(``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


class _Clock:
    """A Progress that timestamps every step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.times.append(time.perf_counter())

    def check_cancelled(self) -> None:
        return None


def _batch(preset, batch: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    ground = torch.randn(batch, 3, *preset.ground_size, generator=g)
    sat = torch.randn(batch, 3, preset.satellite_size, preset.satellite_size, generator=g)
    positive = torch.ones(batch, dtype=torch.bool)
    return ground.to(device), sat.to(device), positive.to(device)


def ours(preset, batch: int, steps: int, warmup: int, device: torch.device, tmp: Path) -> float:
    """Images/s of the StageRunner step."""
    from ucvgl.services.models import build_model
    from ucvgl.services.training.trainer import StageConfig, StageRunner, contrastive_loss

    torch.manual_seed(0)
    model = build_model(preset.encoder_config())
    data = _batch(preset, batch, device)

    def epoch_batches(epoch: int):
        for _ in range(steps):
            yield data

    def loss_fn(step_module, b):
        (ge,), (se,), log_scale = step_module(ground=[b[0]], satellite=[b[1]])
        return contrastive_loss(ge, se, log_scale, 0.1)

    clock = _Clock()
    cfg = StageConfig("bench", 1, 1e-4)
    StageRunner(model, cfg, tmp, device=str(device), progress=clock).run(
        epoch_batches, steps, loss_fn
    )
    t = clock.times
    return (len(t) - warmup) * 2 * batch / (t[-1] - t[warmup - 1])


def bare_timm(preset, batch: int, steps: int, warmup: int, device: torch.device) -> float:
    """Images/s of a bare two-backbone timm loop (global pooling, plain InfoNCE, AdamW)."""
    import timm

    torch.manual_seed(0)
    g_net = timm.create_model(preset.backbone, pretrained=False, num_classes=0).to(device)
    s_net = timm.create_model(preset.backbone, pretrained=False, num_classes=0).to(device)
    params = list(g_net.parameters()) + list(s_net.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    ground, sat, _ = _batch(preset, batch, device)
    labels = torch.arange(batch, device=device)
    times = []
    for _ in range(steps):
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            q = F.normalize(g_net(ground), dim=-1)
            r = F.normalize(s_net(sat), dim=-1)
            logits = 14.3 * q @ r.T
            loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return (len(times) - warmup) * 2 * batch / (times[-1] - times[warmup - 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "train.json",
    )
    args = parser.parse_args(argv)
    import tempfile

    from ucvgl.services.presets import get_preset

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        # bare, ours, bare again: the two bare runs show the noise of a shared machine.
        bare1 = bare_timm(preset, args.batch, args.steps, args.warmup, device)
        mine = ours(preset, args.batch, args.steps, args.warmup, device, Path(tmp) / "s")
        bare2 = bare_timm(preset, args.batch, args.steps, args.warmup, device)
    bare = (bare1 + bare2) / 2
    result = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "preset": preset.name,
        "backbone": preset.backbone,
        "ground_size": list(preset.ground_size),
        "satellite_size": preset.satellite_size,
        "batch_pairs": args.batch,
        "timed_steps": args.steps - args.warmup,
        "measures": "training step on one in-memory batch: no decoding, DataLoader or augmentation",
        "ours_images_per_s": round(mine, 2),
        "bare_timm_images_per_s": [round(bare1, 2), round(bare2, 2)],
        "ours_vs_bare": round(mine / bare, 3),
    }
    print(f"{'loop':<28} {'images/s':>10}")
    print(f"{'bare timm (before)':<28} {bare1:>10.1f}")
    print(f"{'ours (StageRunner + SAFA)':<28} {mine:>10.1f}")
    print(f"{'bare timm (after)':<28} {bare2:>10.1f}")
    print(f"ours / bare = {mine / bare:.3f} on {result['device']}, {result['threads']} threads")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
