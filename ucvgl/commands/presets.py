"""``ucvgl presets list | show``: the named presets and the settings a run would use."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ucvgl.commands.pipeline import CONFIG_OPT, SET_OPT, WEIGHTS_OPT, cli_overrides

FORMATS = ("cvusa", "cvact", "vigor", "folder")


def register(app: typer.Typer) -> None:
    """Add the ``presets`` command group to ``app``."""
    presets_app = typer.Typer(help="Named settings bundles and their resolved values.")
    app.add_typer(presets_app, name="presets")

    @presets_app.command("list")
    def list_presets() -> None:
        """The preset names."""
        from ucvgl.services.presets import PRESETS

        for name in PRESETS:
            typer.echo(name)

    @presets_app.command("show")
    def show(
        name: str = typer.Argument(..., help="Preset name (ucvgl presets list)."),
        format: str = typer.Option(
            None, "--format", help="Dataset format the run is for: " + ", ".join(FORMATS)
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the settings as JSON."),
        sets: list[str] = SET_OPT,
        config: Path = CONFIG_OPT,
        weights: str = WEIGHTS_OPT,
    ) -> None:
        """Print the resolved settings of a preset (with --format, --config and --set)."""
        from ucvgl.services.preset_overrides import resolve_preset, settings_json
        from ucvgl.shared.errors import UcvglError

        if format is not None and format not in FORMATS:
            raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
        try:
            preset = resolve_preset(name, format, cli_overrides(sets, weights), config)
        except UcvglError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=1) from None
        settings = settings_json(preset)
        if as_json:
            typer.echo(json.dumps(settings, indent=2))
            return
        width = max(len(k) for k in settings)
        for key, value in settings.items():
            typer.echo(f"{key:<{width}}  {json.dumps(value)}")
