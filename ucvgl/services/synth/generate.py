"""Generate a synthetic cross-view dataset on disk: build maps, render, write the layout.

Each chunk's map is built in this process; its images are rendered by a pool of forked
worker processes that inherit the map (copy-on-write, nothing is pickled). Every image
has its own random stream seeded by ``(seed, location, view)``, so the bytes do not
depend on the number of workers. Images are written atomically, so an interrupted run
is resumed by calling again with the same parameters: existing images are kept.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ucvgl.services.progress import NullProgress, Progress, report_count
from ucvgl.services.synth.city import build_city
from ucvgl.services.synth.render import (
    panorama_look,
    render_panorama,
    render_satellite,
    satellite_look,
)
from ucvgl.services.synth.settings import WorldSettings
from ucvgl.services.synth.world import World
from ucvgl.services.synth.writers import (
    VIGOR_DEFAULT_CITIES,
    ChunkPlan,
    RenderTask,
    SynthSpec,
    apply_gps_offset,
    make_writer,
)
from ucvgl.shared.errors import ConfigError
from ucvgl.shared.fileio import atomic_write_text

META_FILE = "synth_meta.json"
GENERATOR = "ucvgl.synth"
GENERATOR_VERSION = 1
STAGE = "synth"


def render_task_image(world: World, task: RenderTask, spec: SynthSpec) -> np.ndarray:
    """Render one task's image with its per-view appearance: uint8 [h, w, 3]."""
    rng = np.random.default_rng([spec.seed, *task.key])
    ws = spec.world
    if task.kind == "satellite":
        tile = render_satellite(world, task.x, task.y, spec.sat_size, extent_m=ws.tile_extent)
        return satellite_look(tile, rng, ws.satellite_jitter)
    pano = render_panorama(
        world,
        task.x,
        task.y,
        spec.pano_size,
        heading_deg=task.heading_deg,
        camera_height_m=ws.camera_height_m,
        pitch_deg=ws.camera_pitch_deg,
        rows=task.rows,
    )
    return panorama_look(pano, rng, ws.panorama_jitter)


def encode_image(pixels: np.ndarray, suffix: str, jpeg_quality: int = 90) -> bytes:
    """Encode uint8 [h, w, 3] as JPEG or PNG (by ``suffix``), deterministically."""
    buf = io.BytesIO()
    img = Image.fromarray(pixels, mode="RGB")
    if suffix.lower() == ".png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, format="JPEG", quality=jpeg_quality, subsampling=0)
    return buf.getvalue()


def _write_image(target: Path, data: bytes) -> None:
    """Write to a temporary file beside ``target`` and rename it into place.

    Unlike :func:`ucvgl.shared.fileio.atomic_write_bytes` there is no fsync: an image is
    reproducible from the seed, so a power cut may lose it but never leaves a truncated
    file under its name (a resume re-renders it), and thousands of fsyncs cost seconds.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_task(world: World, task: RenderTask, spec: SynthSpec, out: Path) -> str:
    target = out / task.path
    data = encode_image(render_task_image(world, task, spec), target.suffix, spec.jpeg_quality)
    _write_image(target, data)
    return task.path


# Worker-process state: set once per forked worker by the pool initializer.
_WORKER: dict = {}


def _init_worker(world: World, spec: SynthSpec, out: Path) -> None:
    _WORKER.update(world=world, spec=spec, out=out)


def _worker_task(task: RenderTask) -> str:
    return _write_task(_WORKER["world"], task, _WORKER["spec"], _WORKER["out"])


def _render_tasks(
    world: World,
    tasks: list[RenderTask],
    spec: SynthSpec,
    out: Path,
    workers: int,
    on_done,
) -> None:
    """Render and write ``tasks``; ``on_done()`` after each (it may raise JobCancelled)."""
    use_pool = (
        workers > 1
        and len(tasks) >= 16
        and "fork" in mp.get_all_start_methods()
        and not mp.current_process().daemon  # daemonic pool workers may not have children
    )
    if not use_pool:
        for task in tasks:
            _write_task(world, task, spec, out)
            on_done()
        return
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(world, spec, out)) as pool:
        for _ in pool.imap_unordered(_worker_task, tasks, chunksize=4):
            on_done()  # leaving the with-block terminates the pool on cancellation


def _check_output(out: Path, spec: SynthSpec) -> None:
    """Refuse a non-empty folder unless it is an earlier run of the same spec (resume)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"synth output {out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    meta_path = out / META_FILE
    if not meta_path.is_file():
        raise ConfigError(
            f"synth output folder {out} is not empty and has no {META_FILE}: "
            "choose an empty or new folder"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{meta_path} is unreadable ({exc}); choose a new folder") from exc
    old = dict(meta.get("params", {}))
    new = spec.params()
    if "params" in meta and "world" not in old:  # written before the world knobs existed
        old["world"] = WorldSettings().params()
    if meta.get("generator") != GENERATOR or old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ConfigError(
            f"synth output folder {out} holds a dataset generated with other parameters "
            f"(differing: {', '.join(diff) or 'generator'}); choose a new folder or the same "
            "parameters to resume it"
        )


def _meta(spec: SynthSpec, writer, counts: dict | None, complete: bool) -> str:
    meta = {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "complete": complete,
        "params": spec.params(),
        "format": spec.format,
        "seed": spec.seed,
        "counts": counts,
        **writer.describe(),
    }
    return json.dumps(meta, indent=2, sort_keys=True) + "\n"


def generate_world(
    out: Path,
    format: str = "cvact",
    n_train: int = 1000,
    n_val: int = 500,
    *,
    seed: int = 0,
    pano_size: tuple[int, int] = (128, 256),
    sat_size: int = 128,
    workers: int = 2,
    progress: Progress = NullProgress(),
    band_deg: tuple[float, float] = (38.6, -26.9),
    cities: Sequence[str] | None = None,
    origin: tuple[float, float] | None = None,
    jpeg_quality: int = 90,
    world: WorldSettings | None = None,
    n_test: int = 0,
) -> Path:
    """Generate a synthetic cross-view dataset in one of the public layouts.

    Args:
        out: the output folder (created; must be empty, or an earlier run of the same
            parameters, which is then completed).
        format: "cvusa", "cvact", "vigor" or "folder".
        n_train: training locations (panoramas).
        n_val: validation locations (VIGOR: same-area test panoramas).
        seed: everything follows from it; same seed -> byte-identical files.
        pano_size: (H, W) of the full equirectangular panorama (CVUSA keeps a horizon
            band of it, see ``band_deg``).
        sat_size: S, the side of the satellite tiles in pixels.
        workers: rendering processes.
        progress: receives ("synth", fraction, message) and is checked for cancellation.
        band_deg: (top, bottom) elevations in degrees of the CVUSA horizon band. The
            default +38.6 .. -26.9 (65.5 degrees, CVUSA's 1232x224 aspect) puts the horizon a
            little below the strip's middle, as in real CVUSA strips and the authors'
            padding offset. The rows kept are written to synth_meta.json.
        cities: VIGOR cities (default ("Chicago",)); locations are split evenly.
        origin: (lat, lon) of the map centre; default per format (see ``geo.ORIGINS``).
        jpeg_quality: JPEG quality of the written images.
        world: the world's scene and camera knobs (:class:`WorldSettings`; None: the
            defaults, which reproduce the original world byte for byte). Recorded in
            synth_meta.json's ``params.world``.
        n_test: CVACT only: CVACT_test locations, written to ``ANU_data_test/`` (read as
            split "test"; in neither split struct of ACT_data.mat).

    Returns:
        ``out``.

    Raises:
        ConfigError: bad parameters, or ``out`` holds something else.
        JobCancelled: when ``progress`` asks to stop (written images stay; call again).
    """
    fmt = str(format).strip().lower()
    spec = SynthSpec(
        format=fmt,
        n_train=int(n_train),
        n_val=int(n_val),
        seed=int(seed),
        pano_size=(int(pano_size[0]), int(pano_size[1])),
        sat_size=int(sat_size),
        band_deg=(float(band_deg[0]), float(band_deg[1])),
        cities=tuple(cities) if cities else (VIGOR_DEFAULT_CITIES if fmt == "vigor" else ()),
        origin=(float(origin[0]), float(origin[1])) if origin is not None else None,
        jpeg_quality=int(jpeg_quality),
        world=world if world is not None else WorldSettings(),
        n_test=int(n_test),
    )
    out = Path(out)
    _check_output(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    writer = make_writer(out, spec)
    atomic_write_text(out / META_FILE, _meta(spec, writer, None, complete=False))

    chunks: list[ChunkPlan] = writer.chunks()
    total = float(spec.n_train + spec.n_val + spec.n_test)
    done_locations = 0
    for n, chunk in enumerate(chunks):
        progress.check_cancelled()
        where = f"{chunk.group} " if chunk.group else ""
        progress.update(
            STAGE, done_locations / total, f"{where}map {n + 1}/{len(chunks)}: building"
        )
        rng = np.random.default_rng([spec.seed, chunk.group_index, chunk.index])
        city = build_city(chunk.count, rng, writer.city_config())
        tasks = apply_gps_offset(writer.chunk_tasks(chunk, city), spec)
        todo = [t for t in tasks if not (out / t.path).is_file()]
        counter = {"done": len(tasks) - len(todo)}

        def on_done(chunk=chunk, tasks=tasks, counter=counter, base=done_locations, n=n) -> None:
            counter["done"] += 1
            frac = (base + chunk.count * counter["done"] / max(len(tasks), 1)) / total
            report_count(
                progress,
                STAGE,
                round(frac * total),
                int(total),
                "locations",
                f"map {n + 1}/{len(chunks)}: rendering",
            )
            progress.check_cancelled()

        _render_tasks(city.world, todo, spec, out, workers, on_done)
        done_locations += chunk.count
        del city

    counts = writer.finish()
    atomic_write_text(out / META_FILE, _meta(spec, writer, counts, complete=True))
    progress.update(STAGE, 1.0, "done")
    return out
