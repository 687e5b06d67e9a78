"""Zero-shot recall of a source model on a target world, its inputs shown four ways.

    .venv/bin/python benchmarks/zero_shot_views.py runs/adaptation_layout/runs/source \\
        --target runs/adaptation_layout/worlds/report-1 --format cvact --results NAME

Why is a source model at chance on another world (issue 13 part 1)? Val R@1 of the
source's selected model on the target's val split with:
- the panoramas and tiles as they are (the zero-shot row of ``adaptation.py``);
- the panoramas cut to the rows spanning the source's elevations (what an adapted run reads
  with ``init_match_layout``, ``ucvgl.services.panorama_view``);
- the tiles resampled to the source's ground extent per tile (from both worlds'
  ``synth_meta.json`` ``tile_extent_m``, or ``--tile-extents``: a smaller target tile is
  shrunk into a black border, a larger one has its centre cut), with and without the
  panorama cut. The
  pipeline does NOT resample tiles; this row measures what it would be worth.
Measurement only: no run is changed. Prints the table and writes
``benchmarks/results/<--results>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json  # noqa: E402


def tile_extent(root: Path) -> float | None:
    """``tile_extent_m`` of a synthetic world (None for other datasets)."""
    meta = root / "synth_meta.json"
    if not meta.is_file():
        return None
    value = json.loads(meta.read_text()).get("tile_extent_m")
    return None if value is None else float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source_run", type=Path)
    parser.add_argument("--target", type=Path, required=True, help="target dataset folder")
    parser.add_argument("--format", required=True, help="target dataset format")
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--tile-extents",
        default=None,
        help="SOURCE,TARGET ground extent of a tile in metres, for worlds whose metadata "
        "leaves it out (record_geometry false: report-1, report-4)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default="zero_shot_views", help="JSON name (no .json)")
    args = parser.parse_args()

    import torch

    from ucvgl.services.datasets import load_dataset
    from ucvgl.services.evaluation import recall_at_k
    from ucvgl.services.init_source import resolve_source
    from ucvgl.services.models import load_model
    from ucvgl.services.panorama_view import source_view_rows
    from ucvgl.services.training.embed import embed_split

    torch.set_num_threads(args.threads)
    source = resolve_source(args.source_run)
    model, _ = load_model(source.model_file)
    model.eval()
    target = load_dataset(args.target, args.format)
    split = target.split(args.split)
    view, rows = source_view_rows(source.dataset, source.encoder.get("ground_rows"), target)
    if args.tile_extents:
        extents = tuple(float(v) for v in args.tile_extents.split(","))
    else:
        extents = (tile_extent(Path(source.dataset["data"])), tile_extent(args.target))
    ratio = None if None in extents else extents[0] / extents[1]
    results = []
    for cut in (False, True):
        if cut and rows is None:
            continue
        model.config = model.config.model_copy(update={"ground_rows": rows if cut else None})
        ground = embed_split(model, split, "ground", batch_size=64)
        for scale in (1.0, *([] if ratio in (None, 1.0) else [ratio])):
            # EncoderConfig.satellite_scale: the pipeline's own loader resamples the tiles
            model.config = model.config.model_copy(
                update={"satellite_scale": None if scale == 1.0 else scale}
            )
            tiles = embed_split(model, split, "satellite", batch_size=64)
            recall = recall_at_k(ground, tiles, split.positives)
            results.append(
                {
                    "panoramas": "cut to the source's rows" if cut else "as they are",
                    "tiles": "as they are"
                    if scale == 1.0
                    else f"resampled to the source's extent (x{scale:.3f})",
                    **{k: recall[k] for k in ("r1", "r5", "r10", "r1p")},
                }
            )
    columns = ["panoramas", "tiles", "r1", "r5", "r10", "r1p"]
    print(f"source {source.run_dir} -> {args.target} ({args.split}, {split.num_satellite} tiles)")
    table = print_table(results, columns)
    write_json(
        args.results,
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "ground_view": view,
            "tile_extents_m": {"source": extents[0], "target": extents[1]},
            "rows": results,
            "table": table,
        },
    )


if __name__ == "__main__":
    main()
