"""Preset overrides: ``--set key=value``, ``--config FILE.yaml`` and ``params.overrides``.

:func:`resolve_preset` gives the settings a run uses: the named preset, its form for the
dataset format (``Preset.for_format``), then the YAML file's values, then the overrides
(the last wins). Every key must be a preset field; every value is parsed by the field's
type (bool, int, float, str, tuple, dict, Optional). Importable without torch (the API
validates job parameters with it).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ucvgl.services.presets import Preset, get_preset
from ucvgl.shared.errors import ConfigError

FIXED_FIELDS = frozenset({"name"})
"""Preset fields no override may change (choose another preset instead)."""
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NULL = {"none", "null", "~", ""}


class OverrideError(ConfigError):
    """An override names an unknown setting or gives a value of the wrong type.

    Attributes:
        key: the setting at fault.
        detail: what is wrong with it.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"preset setting {key!r}: {message}")
        self.key = key
        self.detail = message


def allowed_keys() -> list[str]:
    """The preset fields an override may set, sorted."""
    return sorted(f.name for f in dataclasses.fields(Preset) if f.name not in FIXED_FIELDS)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Preset)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if typing.get_origin(tp) is None else str(tp)


def _parse_scalar(tp: type, value: Any) -> Any:
    """``value`` as a bool / int / float / str (strings are parsed), or ValueError."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("expected true or false")
    if isinstance(value, bool):
        raise ValueError(f"expected {tp.__name__}, got a boolean")
    if tp is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise ValueError("expected an integer")
    if tp is float:
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise ValueError("expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    raise ValueError(f"unsupported type {tp}")


def _parse_text(value: str) -> Any:
    """A YAML flow value ('{cvusa: 0.05}', '[224, 448]'); plain text stays text."""
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ValueError(f"cannot parse {value!r}: {exc}") from None


def parse_value(tp: Any, value: Any) -> Any:
    """``value`` converted to the field type ``tp``, or ValueError saying what was expected."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.strip().lower() in _NULL)
        ):
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return parse_value(a, value)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors) + " (or none)")
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip()
            value = (
                _parse_text(text)
                if text[:1] in "[("
                else [v for v in text.replace("x", ",").split(",") if v.strip()]
            )
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list like 224,448, got {value!r}")
        items = args[:-1] if len(args) == 2 and args[1] is Ellipsis else args
        if args and (len(args) != 2 or args[1] is not Ellipsis) and len(value) != len(args):
            raise ValueError(f"expected {len(args)} values, got {len(value)}")
        elem = [items[0]] * len(value) if len(items) == 1 else list(items)
        return tuple(parse_value(t, v) for t, v in zip(elem, value, strict=True))
    if origin is dict:
        if isinstance(value, str):
            value = _parse_text(value)
        if not isinstance(value, Mapping):
            raise ValueError(f"expected a mapping like {{cvact: 0.025}}, got {value!r}")
        kt, vt = args or (Any, Any)
        return {parse_value(kt, k): parse_value(vt, v) for k, v in value.items()}
    if tp in (bool, int, float, str):
        try:
            return _parse_scalar(tp, value)
        except ValueError:
            raise ValueError(f"expected {_type_name(tp)}, got {value!r}") from None
    raise ValueError(f"unsupported setting type {tp}")


def parse_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check keys and parse values of an override mapping (values may be strings).

    Raises:
        OverrideError: an unknown key (the allowed ones are listed) or a wrong value.
    """
    hints = _field_types()
    allowed = allowed_keys()
    out: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or key not in allowed:
            fixed = " (choose another preset instead)" if key in FIXED_FIELDS else ""
            raise OverrideError(str(key), f"unknown{fixed}; allowed: {', '.join(allowed)}")
        try:
            out[key] = parse_value(hints[key], value)
        except ValueError as exc:
            raise OverrideError(key, f"{exc} (type {_type_name(hints[key])})") from None
    return out


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """``['a=1', 'b=x']`` (repeated ``--set``) -> ``{'a': '1', 'b': 'x'}`` (values unparsed)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OverrideError(item, "--set takes key=value, e.g. --set batch_size=64")
        out[key.strip()] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of settings in a YAML (or JSON) file (keys checked by the caller)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of preset settings at the top")
    try:
        return parse_overrides(data)
    except OverrideError as exc:
        raise OverrideError(exc.key, f"in {path}: {exc.detail}") from None


def apply_overrides(preset: Preset, overrides: Mapping[str, Any] | None) -> Preset:
    """``preset`` with parsed ``overrides`` applied (the preset's own checks run again)."""
    parsed = parse_overrides(overrides)
    return preset.replace(**parsed) if parsed else preset


def resolve_preset(
    name: str | Preset,
    fmt: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
) -> Preset:
    """The settings of a run: preset ``name`` for format ``fmt``, then the file, then overrides.

    Raises:
        ConfigError: unknown preset, unreadable file; OverrideError for a bad key or value.
    """
    preset = get_preset(name)
    if fmt is not None:
        preset = preset.for_format(fmt)
    if config_file is not None:
        preset = apply_overrides(preset, read_config_file(config_file))
    return apply_overrides(preset, overrides)


def settings_json(preset: Preset) -> dict[str, Any]:
    """The preset as JSON values (tuples as lists), as ``presets show --json`` prints it."""
    import json

    return json.loads(json.dumps(preset.to_dict()))


def preset_from_settings(name: str, settings: Mapping[str, Any], fmt: str | None) -> Preset:
    """Rebuild a run's preset from its saved settings (run.json ``preset_settings``).

    Fields missing from ``settings`` (older run folders) keep the named preset's values.
    """
    saved = {k: v for k, v in settings.items() if k not in FIXED_FIELDS and k in allowed_keys()}
    return resolve_preset(name, fmt, overrides=saved)
