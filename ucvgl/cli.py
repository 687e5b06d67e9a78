"""The ``ucvgl`` command line (typer). Each command lives in ``ucvgl/commands/<name>.py``."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="ucvgl",
    help="Unsupervised cross-view geo-localization: data, projection, training, service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """ucvgl: unsupervised cross-view geo-localization (UCVGL, CVPR 2024) as a service."""


def _register() -> None:
    """Import every command module; each adds its commands to ``app``."""
    from ucvgl.commands import register_all

    register_all(app)


_register()

if __name__ == "__main__":  # pragma: no cover
    app()
