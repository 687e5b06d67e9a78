"""``ucvgl synth``: generate a synthetic cross-view dataset to try the system in minutes.

``--world NAME`` generates a world of the registry (:mod:`ucvgl.services.synth.family`:
``tune-*`` worlds for tuning, ``report-*`` worlds for reported quality), ``--set
knob=value`` changes one scene or camera knob (:class:`~ucvgl.services.synth.WorldSettings`)
and ``--list-worlds`` prints the registry.
"""

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


def parse_set_options(items: list[str]) -> dict[str, object]:
    """``["knob=value", ...]`` -> {knob: typed value}, validated against the knobs.

    Raises:
        ConfigError: a malformed item, an unknown knob (listing the allowed ones) or a
            value of the wrong type.
    """
    from ucvgl.services.synth.settings import coerce_knob, knob_names
    from ucvgl.shared.errors import ConfigError

    values: dict[str, object] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(
                f"--set expects knob=value, got {item!r}; knobs: {', '.join(knob_names())}"
            )
        values[name] = coerce_knob(name, value)
    return values


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @app.command("synth")
    def synth(
        out: Path | None = typer.Option(
            None, "--out", help="Output folder (new, empty, or a run to resume)."
        ),
        world: str | None = typer.Option(
            None,
            "--world",
            help="A registry world (tune-N or report-N; see --list-worlds): its format, seed, "
            "knobs and JPEG quality.",
        ),
        set_: list[str] = typer.Option(
            [],
            "--set",
            help="Change one world knob, knob=value (repeatable), e.g. camera_height_m=2.5, "
            "style=flat, record_geometry=false.",
        ),
        list_worlds: bool = typer.Option(
            False, "--list-worlds", help="Print the registry of named worlds and exit."
        ),
        format: str | None = typer.Option(
            None, "--format", help="cvusa, cvact, vigor or folder (default cvact)."
        ),
        train: int = typer.Option(1000, "--train", min=0, help="Training locations."),
        val: int = typer.Option(500, "--val", min=0, help="Validation (VIGOR: test) locations."),
        test: int = typer.Option(
            0, "--test", min=0, help="CVACT only: CVACT_test locations (ANU_data_test/)."
        ),
        seed: int | None = typer.Option(
            None, "--seed", help="Random seed (default 0); same seed, same bytes."
        ),
        pano_size: str | None = typer.Option(
            None,
            "--pano-size",
            help="Full panorama HxW (CVUSA keeps a horizon band); default 128x256.",
        ),
        sat_size: int | None = typer.Option(
            None, "--sat-size", min=8, help="Satellite tile side (px); default 128."
        ),
        jpeg_quality: int | None = typer.Option(
            None, "--jpeg-quality", min=1, max=100, help="JPEG quality (default 90)."
        ),
        workers: int = typer.Option(2, "--workers", min=1, help="Rendering processes."),
        cities: str = typer.Option(
            "", "--cities", help="VIGOR only: comma-separated cities (default Chicago)."
        ),
    ) -> None:
        """Render a procedural city as satellite tiles and ground panoramas, written in the
        chosen dataset layout (readable by `ucvgl data check`)."""
        import time

        from ucvgl.commands._progress import CliProgress
        from ucvgl.services.synth import META_FILE, generate_world
        from ucvgl.services.synth.family import get_world, registry_table
        from ucvgl.services.synth.settings import WorldSettings
        from ucvgl.shared.errors import ConfigError, UcvglError

        def fail(message: str) -> None:
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(code=1)

        if list_worlds:
            typer.echo(registry_table())
            typer.echo(
                "\nRule: presets are tuned on tune-* worlds only; quality is reported on "
                "report-* worlds only."
            )
            return
        if out is None:
            fail("--out is required (or use --list-worlds)")
        try:
            overrides = parse_set_options(set_)
            if world is not None:
                entry = get_world(world)
                fixed = [
                    flag
                    for flag, given in (
                        ("--format", format),
                        ("--seed", seed),
                        ("--cities", cities or None),
                        ("--jpeg-quality", jpeg_quality),
                    )
                    if given is not None
                ]
                if fixed:
                    fail(f"--world {world} fixes {', '.join(fixed)}; leave them out")
                settings = entry.settings.with_updates(overrides)
                fmt, seed_, city_list = entry.format, entry.seed, entry.cities
                quality, band = entry.jpeg_quality, entry.band_deg
                size = _parse_size(pano_size) if pano_size else entry.pano_size
                sat = sat_size if sat_size is not None else entry.sat_size
            else:
                settings = WorldSettings.from_dict(overrides)
                fmt, seed_ = format or "cvact", seed if seed is not None else 0
                city_list = [c.strip() for c in cities.split(",") if c.strip()] or None
                quality, band = jpeg_quality if jpeg_quality is not None else 90, (38.6, -26.9)
                size = _parse_size(pano_size) if pano_size else (128, 256)
                sat = sat_size if sat_size is not None else 128
        except ConfigError as exc:
            fail(str(exc))
        if world is not None and overrides:
            typer.echo(
                f"note: --set changes {', '.join(overrides)}: this is no longer {world} "
                "as registered",
                err=True,
            )
        progress = CliProgress("synth")
        start = time.perf_counter()
        try:
            generate_world(
                out,
                fmt,
                train,
                val,
                seed=seed_,
                pano_size=size,
                sat_size=sat,
                workers=workers,
                progress=progress,
                band_deg=band,
                cities=city_list,
                jpeg_quality=quality,
                world=settings,
                n_test=test,
            )
        except UcvglError as exc:
            progress.close()
            fail(str(exc))
        progress.close()
        seconds = time.perf_counter() - start
        n = train + val + test
        name = f"world {world} " if world else ""
        tests = f" + {test} test (ANU_data_test/)" if test else ""
        typer.echo(
            f"wrote a synthetic {fmt} dataset ({name}seed {seed_}) to {out}: {train} train + "
            f"{val} val{tests} locations, panoramas {size[0]}x{size[1]}, tiles {sat}x{sat}"
        )
        changed = settings.changed()
        if changed:
            typer.echo("knobs: " + " ".join(f"{k}={v}" for k, v in changed.items()))
        typer.echo(f"time: {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} locations/s)")
        typer.echo(f"geometry and counts: {out / META_FILE}")
        typer.echo(f"check it with: ucvgl data check --data {out} --format {fmt}")
