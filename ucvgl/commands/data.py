"""``ucvgl data``: check a dataset folder and document the supported layouts."""

from __future__ import annotations

import json
from pathlib import Path

import typer

FORMATS_HELP = """\
Supported dataset layouts (paths relative to --data):

cvusa   splits/train-19zl.csv, splits/val-19zl.csv (no header), each line
        bingmap/19/<id>.jpg,streetview/panos/<id>.jpg,streetview/annotations/<id>.png
        Satellite 750x750, panorama 1232x224 horizon band. Splits: train, val.

cvact   ACT_data.mat (panoIds, utm, trainSet.trainInd, valSet.valInd; 1-based),
        ANU_data_small/streetview/<id>_grdView.jpg,
        ANU_data_small/satview_polish/<id>_satView_polish.jpg
        (or streetview/ and satview_polish/ directly under the root).
        Optional CVACT_test: ANU_data_test/{streetview,satview_polish}/ (paired by id).
        Splits: train, val, test.

vigor   <City>/panorama/<panoid>,<lat>,<lon>,.jpg, <City>/satellite/satellite_<lat>_<lon>.png,
        splits/<City>/satellite_list.txt, same_area_balanced_{train,test}.txt,
        pano_label_balanced.txt; lines: <pano> <pos> <dy> <dx> then 3 x (<semi> <dy> <dx>).
        Cities: Chicago, NewYork, SanFrancisco, Seattle (those present).
        --protocol same_area (train/test, gallery = all tiles of the cities) or
        cross_area (train NewYork+Seattle, test SanFrancisco+Chicago).

folder  ground/ (360-degree equirectangular panoramas, 2:1, north at the centre column)
        and satellite/ (tiles) with .jpg/.jpeg/.png/.webp/.tif images. Optional CSVs
        with a header row: satellite_coords.csv (name,lat,lon or name,x,y,crs),
        ground_meta.csv (name[,heading_deg][,lat,lon][,split]),
        pairs.csv (ground,satellite[,split]) for known pairs.
        Splits from the split columns (train/val/test), else everything is train.

Problems (missing files, malformed lines, duplicate ids) stop the load and are listed;
--skip-invalid drops the bad entries instead. --validate-images also opens every image.
"""


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to ``app``."""
    data_app = typer.Typer(help="Check dataset folders and list the supported layouts.")

    @data_app.command("check")
    def check(
        data: Path = typer.Option(..., "--data", help="The dataset folder."),
        format: str = typer.Option(
            "auto", "--format", help="cvusa, cvact, vigor, folder, or auto (detect)."
        ),
        skip_invalid: bool = typer.Option(
            False, "--skip-invalid", help="Drop bad entries instead of failing."
        ),
        validate_images: bool = typer.Option(
            False, "--validate-images", help="Also open every image header (slower)."
        ),
        cities: str = typer.Option(
            "", "--cities", help="VIGOR only: comma-separated cities (default: all present)."
        ),
        protocol: str = typer.Option(
            "", "--protocol", help="VIGOR only: same_area (default) or cross_area."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Read a dataset, print the counts per split and the validation report."""
        from ucvgl.commands._progress import CliProgress
        from ucvgl.services.datasets import load_dataset
        from ucvgl.shared.errors import UcvglError

        options: dict[str, str] = {}
        if cities:
            options["cities"] = cities
        if protocol:
            options["protocol"] = protocol
        progress = CliProgress("data check", disable=as_json)
        try:
            dataset = load_dataset(
                data,
                format,
                skip_invalid=skip_invalid,
                validate_images=validate_images,
                progress=progress,
                **options,
            )
        except UcvglError as exc:
            progress.close()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        progress.close()
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "name": dataset.name,
                        "format": dataset.format,
                        "root": str(dataset.root),
                        "panorama": dataset.panorama,
                        "splits": dataset.counts(),
                        "report": dataset.report.to_dict(),
                    },
                    indent=2,
                )
            )
            return
        typer.echo(f"{dataset.format} dataset {dataset.name!r} at {dataset.root}")
        typer.echo(f"panoramas: {dataset.panorama}")
        typer.echo(f"{'split':<8} {'ground':>9} {'satellite':>10} {'known pairs':>12}")
        for split, counts in dataset.counts().items():
            typer.echo(
                f"{split:<8} {counts['ground']:>9} {counts['satellite']:>10} "
                f"{counts['known_pairs']:>12}"
            )
        typer.echo(f"validation: {dataset.report.summary(limit=20)}")

    @data_app.command("formats")
    def formats() -> None:
        """Describe the dataset layouts that ``--format`` accepts."""
        typer.echo(FORMATS_HELP)

    app.add_typer(data_app, name="data")
