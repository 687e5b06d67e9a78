"""CLI commands, one module per group. Each module defines ``register(app)``."""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "project",
    "data",
    "service",
    "synth",
    "pipeline",
    "presets",
    "query",
)
"""Modules under ``ucvgl.commands`` whose ``register(app)`` adds commands."""


def register_all(app: typer.Typer) -> None:
    """Register every command module's commands on ``app``."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"ucvgl.commands.{name}").register(app)
