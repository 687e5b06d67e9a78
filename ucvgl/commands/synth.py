"""``ucvgl synth``: generate a synthetic cross-view dataset to try the system in minutes."""

from __future__ import annotations

from pathlib import Path

import typer


def _parse_size(text: str) -> tuple[int, int]:
    """'128x256' -> (128, 256) as (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected HxW like 128x256, got {text!r}") from None
    return h, w


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @app.command("synth")
    def synth(
        out: Path = typer.Option(
            ..., "--out", help="Output folder (new, empty, or a run to resume)."
        ),
        format: str = typer.Option("cvact", "--format", help="cvusa, cvact, vigor or folder."),
        train: int = typer.Option(1000, "--train", min=0, help="Training locations."),
        val: int = typer.Option(500, "--val", min=0, help="Validation (VIGOR: test) locations."),
        seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same bytes."),
        pano_size: str = typer.Option(
            "128x256", "--pano-size", help="Full panorama HxW (CVUSA keeps a horizon band)."
        ),
        sat_size: int = typer.Option(128, "--sat-size", min=8, help="Satellite tile side (px)."),
        workers: int = typer.Option(2, "--workers", min=1, help="Rendering processes."),
        cities: str = typer.Option(
            "", "--cities", help="VIGOR only: comma-separated cities (default Chicago)."
        ),
    ) -> None:
        """Render a procedural city as satellite tiles and ground panoramas, written in the
        chosen dataset layout (readable by `ucvgl data check`)."""
        import time

        from ucvgl.commands._progress import TqdmProgress
        from ucvgl.services.synth import META_FILE, generate_world
        from ucvgl.shared.errors import UcvglError

        size = _parse_size(pano_size)
        city_list = [c.strip() for c in cities.split(",") if c.strip()] or None
        progress = TqdmProgress()
        start = time.perf_counter()
        try:
            generate_world(
                out,
                format,
                train,
                val,
                seed=seed,
                pano_size=size,
                sat_size=sat_size,
                workers=workers,
                progress=progress,
                cities=city_list,
            )
        except UcvglError as exc:
            progress.close()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        progress.close()
        seconds = time.perf_counter() - start
        n = train + val
        typer.echo(
            f"wrote a synthetic {format} dataset to {out}: {train} train + {val} val locations, "
            f"panoramas {size[0]}x{size[1]}, tiles {sat_size}x{sat_size}, seed {seed}"
        )
        typer.echo(f"time: {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} locations/s)")
        typer.echo(f"geometry and counts: {out / META_FILE}")
        typer.echo(f"check it with: ucvgl data check --data {out} --format {format}")
