"""Helpers of the memory benchmark and the rehearsal: process-tree memory, step caps, worlds.

Peak memory of a stage is measured two ways, both printed: ``ru_maxrss`` of the stage's own
process (peak RSS; shared-memory pages it touched count in full) and the peak over time of
the proportional set size (PSS) of the process plus its DataLoader workers, sampled every
0.2 s from ``/proc/<pid>/smaps_rollup`` (shared pages split between the processes that map
them, so the sum is the memory the stage really holds).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ucvgl.shared.errors import JobCancelled


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    return out


def tree_pss_mb(pid: int | None = None) -> float:
    """PSS of ``pid`` (default this process) and all its descendants, in MB."""
    pid = os.getpid() if pid is None else pid
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _pss_kib(p)
        todo.extend(_children(p))
    return total / 1024.0


def rss_mb(pid: int | None = None) -> float:
    """Current resident set of one process (VmRSS), MB."""
    try:
        with open(f"/proc/{os.getpid() if pid is None else pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class TreeMemory:
    """Samples :func:`tree_pss_mb` and this process's RSS in a thread (peaks so far).

    ``peak_mb``: the process tree's PSS; ``peak_rss_mb``: this process's RSS;
    ``max_processes``: the most processes seen (this one plus DataLoader workers).
    :meth:`reset` starts new peaks (one per stage).
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak_mb, self.max_processes = interval, 0.0, 1
        self.peak_rss_mb = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def reset(self) -> None:
        """Start new peaks from the current values."""
        with self._lock:
            self.peak_mb, self.peak_rss_mb, self.max_processes = tree_pss_mb(), rss_mb(), 1

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            pss, rss, n, todo = tree_pss_mb(me), rss_mb(me), 0, [me]
            while todo:
                n += 1
                todo.extend(_children(todo.pop()))
            with self._lock:  # a reset() meanwhile must not inherit the old peak
                self.peak_mb = max(self.peak_mb, pss)
                self.peak_rss_mb = max(self.peak_rss_mb, rss)
                self.max_processes = max(self.max_processes, n)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class StepCap:
    """A Progress that stops a training stage after ``steps`` optimiser steps.

    The stage runs its real code on its full dataset and sampler; after ``steps`` progress
    updates the next ``check_cancelled`` raises ``JobCancelled`` (caught by the caller).
    """

    def __init__(self, steps: int) -> None:
        self.steps, self.done = steps, 0
        self.started = time.perf_counter()
        self.step_times: list[float] = []

    def update(self, stage: str, fraction: float, message: str = "") -> None:
        self.done += 1
        self.step_times.append(time.perf_counter())

    def check_cancelled(self) -> None:
        if self.done >= self.steps:
            raise JobCancelled(f"step cap of {self.steps} reached")


def run_capped(fn, steps: int) -> StepCap:
    """Call ``fn(progress)`` with a :class:`StepCap`; return it after the cap stops it."""
    cap = StepCap(steps)
    try:
        fn(cap)
    except JobCancelled:
        pass
    return cap


def subset_split(split, n_ground: int):
    """The first ``n_ground`` panoramas of ``split`` and the tiles they pair with.

    Needs ground truth (``positives``); tiles keep their order.
    """
    from ucvgl.services.datasets.index import ViewSplit

    n = min(n_ground, split.num_ground)
    pos = np.asarray(split.positives[:n])
    tiles = np.unique(pos[pos >= 0])
    remap = np.full(split.num_satellite, -1, dtype=np.int64)
    remap[tiles] = np.arange(len(tiles))

    def g(a):
        return None if a is None else np.asarray(a)[:n]

    def s(a):
        return None if a is None else np.asarray(a)[tiles]

    return ViewSplit(
        list(split.ground_ids[:n]),
        list(split.ground_paths[:n]),
        [split.satellite_ids[i] for i in tiles],
        [split.satellite_paths[i] for i in tiles],
        positives=np.where(pos >= 0, remap[np.maximum(pos, 0)], -1),
        satellite_latlon=s(split.satellite_latlon),
        satellite_xy=s(split.satellite_xy),
        ground_latlon=g(split.ground_latlon),
        ground_xy=g(split.ground_xy),
        ground_heading_deg=g(split.ground_heading_deg),
    )


def ensure_scenes(scenes: Path, count: int = 256) -> Path:
    """Render ``count`` small CVACT-layout scenes into ``scenes`` unless some are there.

    The source that ``replicate_world`` copies: 48x96 panoramas and 48 px tiles, about a
    minute on 2 cores, resumable.
    """
    if not (scenes / "ACT_data.mat").exists() and not any(scenes.glob("ANU_data_small/*/*")):
        from ucvgl.services.synth.generate import generate_world

        generate_world(scenes, "cvact", count, 0, pano_size=(48, 96), sat_size=48, workers=1)
    return scenes


def replicate_world(
    scenes: Path,
    out: Path,
    n_train: int,
    n_val: int,
    *,
    pano_size: tuple[int, int],
    sat_size: int,
    max_scenes: int = 256,
    quality: int = 90,
    spacing_m: float = 30.0,
) -> dict[str, float]:
    """A CVACT-layout world of ``n_train + n_val`` locations from rendered scenes.

    Rendering costs ~0.1-0.3 s a location on 2 shared cores (hours at CVACT's 44k), and
    encoding a paper-size JPEG ~45 ms. So up to ``max_scenes`` (panorama, tile) pairs of
    an already rendered CVACT world ``scenes`` (``ucvgl synth``, any size) are resized to
    ``pano_size`` / ``sat_size`` (bicubic, plus Gaussian grain of sd 4 at paper size so the
    files carry a photo's entropy, ~200 KB a 384x768 panorama) and encoded once; location
    ``i`` gets a byte copy of scene ``i mod scenes``: every file is its own file on disk,
    decoded like any other, but places repeat (matching has ties). Locations lie on a
    ``spacing_m`` grid (UTM), the last ``n_val`` are the validation split. Resumable.

    Returns:
        {"scenes", "locations", "files_written", "seconds"}.
    """
    import io
    import shutil

    from PIL import Image
    from scipy.io import savemat

    t0 = time.perf_counter()
    grd = sorted((scenes / "ANU_data_small" / "streetview").glob("*_grdView.jpg"))
    pairs = []
    for g in grd:
        ident = g.name[: -len("_grdView.jpg")]
        sat = scenes / "ANU_data_small" / "satview_polish" / f"{ident}_satView_polish.jpg"
        if sat.exists():
            pairs.append((g, sat))
        if len(pairs) == max_scenes:
            break
    if not pairs:
        raise FileNotFoundError(f"{scenes}: no rendered CVACT (panorama, tile) pairs found")
    base = out / "_scenes"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    encoded = []
    for k, (g, sat) in enumerate(pairs):
        names = []
        for src, (h, w), tag in ((g, pano_size, "g"), (sat, (sat_size, sat_size), "s")):
            dst = base / f"{k:04d}{tag}.jpg"
            names.append(dst)
            if dst.exists():
                continue
            with Image.open(src) as im:
                big = np.asarray(im.convert("RGB").resize((w, h), Image.BICUBIC), np.float32)
            if h * w >= 128 * 128:
                big = big + rng.normal(0, 4, big.shape).astype(np.float32)
            Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(dst, quality=quality)
        encoded.append(names)
    n = n_train + n_val
    ids = [f"L{i:07d}" for i in range(n)]
    streetview = out / "ANU_data_small" / "streetview"
    satview = out / "ANU_data_small" / "satview_polish"
    streetview.mkdir(parents=True, exist_ok=True)
    satview.mkdir(parents=True, exist_ok=True)
    written = 0
    for i, ident in enumerate(ids):
        g_src, s_src = encoded[i % len(encoded)]
        for src, dst in (
            (g_src, streetview / f"{ident}_grdView.jpg"),
            (s_src, satview / f"{ident}_satView_polish.jpg"),
        ):
            if not dst.exists():
                shutil.copyfile(src, dst)
                written += 1
    side = int(np.ceil(np.sqrt(n)))
    utm = np.stack(
        [
            500_000 + spacing_m * (np.arange(n) % side),
            6_000_000 + spacing_m * (np.arange(n) // side),
        ],
        axis=1,
    ).astype(np.float64)
    mdict = {
        "panoIds": np.asarray(ids),
        "utm": utm,
        "trainSet": {
            "trainNum": np.int32(n_train),
            "trainInd": np.arange(1, n_train + 1, dtype=np.int32).reshape(-1, 1),
        },
        "valSet": {
            "valNum": np.int32(n_val),
            "valInd": np.arange(n_train + 1, n + 1, dtype=np.int32).reshape(-1, 1),
        },
    }
    buf = io.BytesIO()
    savemat(buf, mdict, do_compression=False)
    (out / "ACT_data.mat").write_bytes(buf.getvalue())
    return {
        "scenes": len(encoded),
        "locations": n,
        "files_written": written,
        "seconds": time.perf_counter() - t0,
    }


def peak_rss_children_mb() -> float:
    """Largest peak RSS of any finished child process (DataLoader workers), MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def flops_per_image(preset, views: Sequence[str] = ("ground", "satellite")) -> dict[str, float]:
    """Forward FLOPs of one image through ``preset``'s encoders (torch's flop counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ucvgl.services.models import build_model

    model = build_model(preset.encoder_config()).eval()
    out = {}
    with torch.no_grad():
        for view in views:
            if view == "ground":
                x = torch.zeros(1, 3, *preset.ground_size)
                fn = model.embed_ground
            else:
                x = torch.zeros(1, 3, preset.satellite_size, preset.satellite_size)
                fn = model.embed_satellite
            counter = FlopCounterMode(display=False)
            with counter:
                fn(x)
            out[view] = float(counter.get_total_flops())
    return out
