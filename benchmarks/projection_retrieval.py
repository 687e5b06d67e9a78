"""Benchmark: how well raw BEV pixels retrieve satellite tiles on a synthetic world.

    .venv/bin/python benchmarks/projection_retrieval.py --locations 500

Generates a synthetic world per format (``ucvgl.services.synth.generate_world``: camera
2 m high, tiles 45.7 m wide, what a 170-degree BEV covers), projects every panorama to a
BEV and ranks all tiles by the cosine of 24x24 colour thumbnails (no learning, see
``ucvgl.services.projection.pixel_retrieval``). Rows:

* ``bev (dataset params)``: the parameters ``bev_params_for_dataset`` picks (FOV and band
  placement from synth_meta.json): the projection as the pipeline uses it;
* ``bev fov 175`` / ``bev authors' cvusa defaults``: the paper's CVUSA settings, which
  assume another camera/tile geometry (a scale mismatch here);
* ``bev band centred``: a band panorama wrongly centred on the horizon;
* ``panorama pixels``: no projection at all (the panorama's own thumbnail), the control.

Prints a table and writes benchmarks/results/projection_retrieval.json.

``--real-pairs DIR`` (e.g. ``../shared/data/real-pairs``) instead checks the projection on
the real CVUSA and CVACT pairs there (no rendering, seconds): each panorama's BEV (64 px,
the dataset's default parameters) against every tile of its dataset, with two
descriptors, the 8x8 mean-centred colour thumbnail of
``tests/services/projection/test_real_pairs.py`` and the projection prior's standardised
24 px thumbnail (``ucvgl.services.pixel_prior``), on the whole tile and on its central
60%: mean cosine to the own tile vs the others, mean rank of the own tile (chance
(n + 1) / 2) and R@1. Writes benchmarks/results/projection_real_pairs.json.

Measured with the defaults (500 locations, 128x256 panoramas, 128 px tiles and BEVs,
seed 0; chance R@1 0.2 %): R@1 / R@5 / R@10 =
CVACT-like 29.4 / 44.0 / 51.8 (FOV 175: 3.2 / 9.0 / 12.4; panorama pixels 0.2 / 1.6 / 2.2);
CVUSA-like band 25.8 / 40.6 / 46.6 (authors' CVUSA defaults 3.8 / 10.4 / 12.6; band
centred 0.4 / 3.4 / 6.0; panorama pixels 0.2 / 0.8 / 2.0) on 2026-12-06. About 2 to 5
minutes on 2 CPU cores, mostly rendering the worlds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json  # noqa: E402


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def panorama_pixel_retrieval(dataset, split: str, size: int) -> dict:
    """Control: thumbnails of the panoramas themselves (no projection) against the tiles."""
    import numpy as np
    import torch

    from ucvgl.services.datasets import load_panorama
    from ucvgl.services.evaluation import recall_at_k
    from ucvgl.services.projection import thumbnail_descriptors
    from ucvgl.services.projection.baseline import tile_descriptors

    view = dataset.split(split)
    query = []
    for i, path in enumerate(view.ground_paths):
        heading = None if view.ground_heading_deg is None else float(view.ground_heading_deg[i])
        pixels = np.asarray(load_panorama(path, heading), dtype=np.uint8).copy()
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        query.append(thumbnail_descriptors(x, size)[0])
    gallery = tile_descriptors(view.satellite_paths, size=size)
    return dict(recall_at_k(torch.stack(query), gallery, view.positives, ks=(1, 5, 10)))


def _descriptor(image, kind: str):
    """An [S, S, 3] uint8 image as a unit vector: 'thumb8' (8x8 mean-centred, as the
    real-pair test) or 'prior24' (24x24 box-averaged, standardised per channel, as the
    projection prior)."""
    import numpy as np
    from PIL import Image

    if kind == "thumb8":
        v = np.asarray(Image.fromarray(image).resize((8, 8), Image.BILINEAR), dtype=np.float64)
        v = v.reshape(-1) / 255.0
        v -= v.mean()
    else:
        t = np.asarray(Image.fromarray(image).resize((24, 24), Image.BOX), dtype=np.float64)
        t = t / 255.0
        v = ((t - t.mean(axis=(0, 1))) / (t.std(axis=(0, 1)) + 1e-3)).reshape(-1)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def real_pair_rows(folder: Path, bev_size: int = 64) -> list[dict]:
    """The BEV-vs-tile check on the real pairs of ``folder`` (see the module docstring)."""
    import csv

    import numpy as np
    import torch
    from PIL import Image

    from ucvgl.services.projection import default_bev_params, panorama_to_bev

    with open(folder / "pairs.csv", newline="") as fh:
        pairs = list(csv.DictReader(fh))
    rows = []
    for dataset in ("CVUSA", "CVACT"):
        chosen = [r for r in pairs if r["dataset"] == dataset]
        params = default_bev_params(dataset.lower(), bev_size)
        bevs, tiles = [], []
        for row in chosen:
            pano = np.asarray(Image.open(folder / row["ground"]).convert("RGB"))
            x = torch.from_numpy(pano.copy()).permute(2, 0, 1)[None].float() / 255
            bev = panorama_to_bev(x, params)[0].permute(1, 2, 0).numpy()
            bevs.append((bev * 255).round().clip(0, 255).astype(np.uint8))
            tiles.append(Image.open(folder / row["satellite"]).convert("RGB"))
        n = len(bevs)
        for fraction, area in ((1.0, "whole tile"), (0.6, "tile centre 60%")):
            crops = []
            for tile in tiles:
                w, h = tile.size
                box = (
                    round(w * (1 - fraction) / 2),
                    round(h * (1 - fraction) / 2),
                    round(w * (1 + fraction) / 2),
                    round(h * (1 + fraction) / 2),
                )
                crops.append(np.asarray(tile.crop(box).resize((bev_size, bev_size))))
            for kind in ("thumb8", "prior24"):
                b = np.stack([_descriptor(x, kind) for x in bevs])
                t = np.stack([_descriptor(x, kind) for x in crops])
                sim = b @ t.T
                own = np.diag(sim)
                rank = (sim > own[:, None]).sum(1) + 1
                rows.append(
                    {
                        "dataset": dataset,
                        "pairs": n,
                        "tile": area,
                        "descriptor": kind,
                        "own": float(own.mean()),
                        "others": float((sim.sum(1) - own).mean() / (n - 1)),
                        "mean_rank": float(rank.mean()),
                        "chance_rank": (n + 1) / 2,
                        "r1": float(100.0 * (rank == 1).mean()),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--locations", type=int, default=500)
    parser.add_argument("--formats", default="cvact,cvusa", help="comma-separated synth formats")
    parser.add_argument("--pano", type=_size, default=(128, 256), help="full panorama HxW")
    parser.add_argument("--sat", type=int, default=128, help="satellite tile side")
    parser.add_argument("--bev", type=int, default=128, help="BEV side")
    parser.add_argument("--thumb", type=int, default=24, help="thumbnail side of descriptors")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--world-dir", type=Path, default=None, help="keep/reuse worlds here")
    parser.add_argument(
        "--real-pairs", type=Path, default=None, help="check the real pairs of this folder"
    )
    args = parser.parse_args()
    if args.real_pairs is not None:
        if not (args.real_pairs / "pairs.csv").exists():
            parser.error(f"--real-pairs: {args.real_pairs / 'pairs.csv'} does not exist")
        rows = real_pair_rows(args.real_pairs)
        columns = ["dataset", "pairs", "tile", "descriptor", "own", "others", "mean_rank"]
        table = print_table(rows, [*columns, "chance_rank", "r1"])
        write_json(
            "projection_real_pairs", {"folder": str(args.real_pairs), "rows": rows, "table": table}
        )
        return

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.projection import (
        bev_params_for_dataset,
        default_bev_params,
        pixel_retrieval,
    )
    from ucvgl.services.synth import generate_world

    base = args.world_dir or Path(tempfile.mkdtemp(prefix="ucvgl-projbench-"))
    rows = []
    for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
        root = base / f"{fmt}-{args.locations}-{args.pano[0]}x{args.pano[1]}-s{args.seed}"
        t0 = time.perf_counter()
        generate_world(
            root,
            fmt,
            args.locations,
            0,
            seed=args.seed,
            pano_size=args.pano,
            sat_size=args.sat,
            workers=args.workers,
        )
        gen_s = time.perf_counter() - t0
        dataset = load_dataset(root, fmt)
        params = bev_params_for_dataset(dataset, args.bev)
        variants = {"bev (dataset params)": params, "bev fov 175": replace(params, fov_deg=175.0)}
        if params.has_band_placement:
            variants["bev authors' cvusa defaults"] = default_bev_params("cvusa", args.bev)
            variants["bev band centred"] = replace(
                params,
                band_top_elevation_deg=None,
                band_bottom_elevation_deg=None,
                band_offset_px=None,
            )
        for name, p in variants.items():
            t0 = time.perf_counter()
            result = pixel_retrieval(dataset, p, split="train", size=args.thumb)
            rows.append(
                {
                    "format": fmt,
                    "descriptor": name,
                    **{k: result[k] for k in ("r1", "r5", "r10", "chance_r1", "chance_r5")},
                    "seconds": time.perf_counter() - t0,
                    "generate_s": gen_s,
                    "params": asdict(p),
                }
            )
            print(f"{fmt} {name}: R@1 {result['r1']:.1f} R@5 {result['r5']:.1f}", flush=True)
        t0 = time.perf_counter()
        control = panorama_pixel_retrieval(dataset, "train", args.thumb)
        n = dataset.split("train").num_satellite
        rows.append(
            {
                "format": fmt,
                "descriptor": "panorama pixels (no projection)",
                **{k: control[k] for k in ("r1", "r5", "r10")},
                "chance_r1": 100.0 / n,
                "chance_r5": 500.0 / n,
                "seconds": time.perf_counter() - t0,
                "generate_s": gen_s,
            }
        )
    columns = ["format", "descriptor", "r1", "r5", "r10", "chance_r1", "chance_r5", "seconds"]
    table = print_table(rows, columns)
    write_json(
        "projection_retrieval",
        {
            "locations": args.locations,
            "pano_size": list(args.pano),
            "sat_size": args.sat,
            "bev_size": args.bev,
            "thumb": args.thumb,
            "seed": args.seed,
            "rows": rows,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
