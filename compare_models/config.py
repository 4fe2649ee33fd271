"""Typed configuration: one place for every setting, and building the objects from YAML files
and command-line flags.

Every command's settings are one frozen dataclass. Each field states its default once, and its
help text, with :func:`setting`; the command-line flags and their help are derived from the
fields (``compare_models.cli``), and a ``--config`` YAML file takes the same keys. A key that
names no setting is refused, naming the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "setting",
    "describe_default",
    "setting_keys",
    "read_yaml_section",
    "build_config",
    "config_from_file_and_flags",
    "shipped_config",
]

T = TypeVar("T")


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - the word the CLI uses
    *,
    default_text: str | None = None,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    cli: bool = True,
    default_factory: Any = dataclasses.MISSING,
):
    """A configuration field: its default, stated here and nowhere else, and what the CLI says.

    Parameters
    ----------
    default
        The default value (or ``default_factory``).
    help : str
        One or two sentences for ``--help``; the default is appended to it
        (:func:`describe_default`).
    default_text : str, optional
        How to state the default when the value alone does not say it (a None that means
        "derived from the data", say).
    flag : str, optional
        The flag's name (default: the field's name with dashes, ``--patch-size``).
    aliases : tuple of str
        Other accepted spellings, hidden from ``--help`` (PtychoPINN's underscore names).
    choices : tuple of str, optional
        The accepted values.
    metavar : str, optional
        The value's name in ``--help``.
    cli : bool
        False for a setting read from ``--config`` files only.
    """
    metadata = {
        "help": help,
        "default_text": default_text,
        "flag": flag,
        "aliases": tuple(aliases),
        "choices": None if choices is None else tuple(choices),
        "metavar": metavar,
        "cli": cli,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def describe_default(field: dataclasses.Field) -> str:
    """The default of a configuration field in words: its ``default_text``, or the value
    ("on"/"off" for a flag, "none" for None, a number as written)."""
    text = field.metadata.get("default_text")
    if text:
        return text
    if field.default is dataclasses.MISSING:
        if field.default_factory is dataclasses.MISSING:
            return "required"
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (tuple, list)):
        return " ".join(_number(v) if isinstance(v, float) else str(v) for v in value) or "none"
    return str(value)


def _number(value: float) -> str:
    """A float as a person writes it: 0.75, 10000, 1e6, 1e-08."""
    text = f"{value:g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def setting_keys(cls) -> dict[str, str]:
    """Every key a ``--config`` file may use for ``cls``, mapped to its field: the field's name
    and its flag's spellings, with underscores (``max_shift`` for ``--max-shift``, field
    ``max_shift_px``)."""
    keys: dict[str, str] = {}
    for field in dataclasses.fields(cls):
        keys[field.name] = field.name
        for spelling in (field.metadata.get("flag"), *field.metadata.get("aliases", ())):
            if spelling:
                keys.setdefault(spelling.lstrip("-").replace("-", "_"), field.name)
    return keys


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


def build_config(cls: type[T], *sources: dict[str, Any] | None, where: str = "", keys: dict[str, str] | None = None) -> T:
    """Merge ``sources`` left to right (None values skipped) into ``cls`` and validate it.

    Keys are the field names or their flags' spellings (:func:`setting_keys`, plus ``keys``:
    more spellings, mapped to field names). A key that names no setting of ``cls`` is an error
    naming the key and the valid ones, so a misspelt setting fails at once instead of being
    ignored; so is a required setting that no source gives.
    """
    keys = {**setting_keys(cls), **(keys or {})}
    merged: dict[str, Any] = {}
    for source in sources:
        for key, value in (source or {}).items():
            name = keys.get(str(key).replace("-", "_"))
            if name is None:
                prefix = f"{where}: " if where else ""
                valid = sorted(f.name for f in dataclasses.fields(cls))
                raise ConfigError(f"{prefix}unknown setting '{key}' for {cls.__name__}; valid: {', '.join(valid)}")
            if value is not None:
                merged[name] = value
    missing = [
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in merged
    ]
    if missing:
        prefix = f"{where}: " if where else ""
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ConfigError(f"{prefix}missing setting(s) {', '.join(missing)} (options {flags}, or keys in --config)")
    try:
        config = cls(**merged)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc
    validate = getattr(config, "validate", None)
    return validate() if validate is not None else config


def config_from_file_and_flags(
    cls: type[T], config_path, section: str, flags: dict[str, Any], *, keys: dict[str, str] | None = None
) -> T:
    """``cls`` from the ``section`` of the YAML at ``config_path`` (or its flat keys when it
    has no such section; nothing when ``config_path`` is None), overridden by ``flags``."""
    from_file: dict[str, Any] = {}
    if config_path:
        data = read_yaml_section(config_path)
        from_file = data[section] or {} if section in data else data
        if not isinstance(from_file, dict):
            raise ConfigError(f"{config_path}: section '{section}' must be a mapping")
    return build_config(cls, from_file, flags, where=config_path or "options", keys=keys)
