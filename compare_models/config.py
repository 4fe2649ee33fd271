"""Build typed configuration objects from YAML files and command-line overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["read_yaml_section", "build_config", "config_from_file_and_flags", "shipped_config"]

T = TypeVar("T")


def shipped_config(name: str) -> Path:
    """Path of a configuration file shipped with the package (``compare_models/configs/NAME``),
    wherever the command runs from."""
    from importlib.resources import files

    path = Path(str(files("compare_models").joinpath("configs", name)))
    if not path.is_file():
        raise ConfigError(f"{path}: the package's configuration {name!r} is missing (a broken install?)")
    return path


def read_yaml_section(path, section: str | None = None) -> dict[str, Any]:
    """Read a YAML mapping (or one top-level ``section`` of it) with ``yaml.safe_load``."""
    import yaml

    path = Path(path)
    try:
        with path.open() as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if section is not None:
        data = data.get(section, {}) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: section '{section}' must be a mapping")
    return data


def build_config(cls: type[T], *sources: dict[str, Any] | None, where: str = "") -> T:
    """Merge ``sources`` left to right (None values skipped) into ``cls`` and validate it.

    A key that is not a field of ``cls`` is an error naming the key and the valid ones, so a
    misspelt setting fails at once instead of being ignored.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    merged: dict[str, Any] = {}
    for source in sources:
        for key, value in (source or {}).items():
            key = key.replace("-", "_")
            if key not in names:
                prefix = f"{where}: " if where else ""
                raise ConfigError(
                    f"{prefix}unknown setting '{key}' for {cls.__name__}; valid: {', '.join(sorted(names))}"
                )
            if value is not None:
                merged[key] = value
    try:
        config = cls(**merged)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc
    validate = getattr(config, "validate", None)
    return validate() if validate is not None else config


def config_from_file_and_flags(cls: type[T], config_path, section: str, flags: dict[str, Any]) -> T:
    """``cls`` from the ``section`` of the YAML at ``config_path`` (or its flat keys when it
    has no such section; nothing when ``config_path`` is None), overridden by ``flags``."""
    from_file: dict[str, Any] = {}
    if config_path:
        data = read_yaml_section(config_path)
        from_file = data[section] or {} if section in data else data
        if not isinstance(from_file, dict):
            raise ConfigError(f"{config_path}: section '{section}' must be a mapping")
    return build_config(cls, from_file, flags, where=config_path or "options")
