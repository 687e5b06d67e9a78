"""``ucvgl project``: write the bird's-eye view (BEV) of every panorama of a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from ucvgl.shared.errors import UcvglError


def register(app: typer.Typer) -> None:
    """Add the ``project`` command to ``app``."""

    @app.command("project")
    def project(
        data: Path = typer.Option(..., "--data", help="Dataset root folder."),
        format: str = typer.Option(
            ..., "--format", help="Dataset layout: cvusa, cvact, vigor, folder (or auto)."
        ),
        out: Path = typer.Option(..., "--out", help="Output folder: <out>/<panorama stem>.png"),
        size: int = typer.Option(256, "--size", min=1, help="BEV side in pixels."),
        fov: float | None = typer.Option(
            None, "--fov", help="Full BEV field of view in degrees (default: per format)."
        ),
        split: list[str] | None = typer.Option(
            None, "--split", help="Split(s) to project, repeatable (default: all)."
        ),
        device: str | None = typer.Option(
            None, "--device", help="cpu, cuda, cuda:N (default: settings.device)."
        ),
        batch_size: int = typer.Option(16, "--batch-size", min=1),
        image_format: str = typer.Option("png", "--image-format", help="png or jpg."),
        skip_invalid: bool = typer.Option(
            False, "--skip-invalid", help="Skip dataset entries with missing/bad files."
        ),
    ) -> None:
        """Project ground panoramas to bird's-eye views (paper Eq. 2); resumable."""
        from dataclasses import replace

        from ucvgl.commands._progress import CliProgress
        from ucvgl.services.datasets import load_dataset
        from ucvgl.services.projection import bev_params_for_dataset, project_dataset
        from ucvgl.shared.config import get_settings

        progress = CliProgress("project")
        try:
            dataset = load_dataset(data, format, skip_invalid=skip_invalid)
            params = bev_params_for_dataset(dataset, size)
            if fov is not None:
                params = replace(params, fov_deg=fov)
            target = device or get_settings().torch_device()
            typer.echo(f"{dataset.name} ({dataset.format}, {dataset.panorama} panoramas): {params}")
            paths = project_dataset(
                dataset,
                out,
                params,
                splits=split or None,
                batch_size=batch_size,
                device=target,
                image_format=image_format,  # type: ignore[arg-type]
                progress=progress,
            )
        except (UcvglError, KeyError, ValueError) as exc:
            progress.close()
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=1) from exc
        progress.close()
        typer.echo(f"{len(paths)} BEV images in {out}")
