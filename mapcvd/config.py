"""Campaign configuration: TOML files checked against a declared schema.

A configuration is a TOML document of sections (``[campaign]``, ``[structures]``,
...), each a table of keys. Every key is declared in :data:`SCHEMA` with its type,
default, allowed range and a one-line description; an unknown section or key, a
wrong type or a value out of range is refused before any work starts, with a
one-line :class:`~mapcvd.errors.ConfigError` naming the key and what is allowed.

Later layers add their sections to :data:`SCHEMA` (one declaration per key, one
place to read what a config may hold).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mapcvd.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """Declaration of one configuration key.

    Attributes
    ----------
    type
        Python type of the value (``int``, ``float``, ``str``, ``bool``); an ``int``
        is accepted where a ``float`` is declared.
    default
        Value used when the key is absent.
    doc
        One-line description, shown in error messages and ``mapcvd config show``.
    min, max
        Inclusive bounds for numbers.
    choices
        Allowed values for strings.
    """

    type: type
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None

    def describe(self) -> str:
        """What values are allowed, in words."""
        parts = [self.type.__name__]
        if self.choices:
            parts = ["one of " + ", ".join(repr(c) for c in self.choices)]
        if self.min is not None:
            parts.append(f">= {self.min}")
        if self.max is not None:
            parts.append(f"<= {self.max}")
        return " ".join(parts)

    def check(self, name: str, value: Any) -> Any:
        """Return ``value`` (converted int -> float where declared) or raise ConfigError."""
        ok = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(
                f"config key '{name}' must be {self.describe()} ({self.doc}), got {type(value).__name__} {value!r}"
            )
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"config key '{name}' must be {self.describe()}, got {value!r}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ConfigError(f"config key '{name}' must be {self.describe()} ({self.doc}), got {value!r}")
        return value


#: Every section and key a campaign configuration may hold.
SCHEMA: dict[str, dict[str, Key]] = {
    "campaign": {
        "name": Key(str, "demo", "campaign name, shown in the dashboard and report"),
        "seed": Key(int, 2026, "master random seed of the campaign", min=0),
        "site": Key(str, "local", "Parsl site: threads, local, slurm, pbs or a path to a site file"),
        "store": Key(str, "runs/demo.zarr", "path of the Zarr campaign store"),
    },
    "structures": {
        "silica_water": Key(
            str,
            "silica-192-water.extxyz",
            "silica with one water: a packaged structure name or a file path",
        ),
        "moo3_mo": Key(int, 16, "Mo atoms in the MoO3 slab (2 per in-plane cell)", min=2, max=100_000),
        "moo3_vacuum_A": Key(float, 15.0, "vacuum above the MoO3 slab (A)", min=6.0, max=500.0),
        "gas_S2": Key(int, 4, "S2 molecules inserted for the smoke run", min=0, max=100_000),
        "gas_H2S": Key(int, 4, "H2S molecules inserted for the smoke run", min=0, max=100_000),
        "gas_H2": Key(int, 4, "H2 molecules inserted for the smoke run", min=0, max=100_000),
    },
    "smoke": {
        "water_actions": Key(int, 10, "tether moves (+x) of the water in the smoke run", min=1, max=100_000),
        "steps_per_action": Key(int, 20, "MD steps after each tether move", min=1, max=1_000_000),
        "tether_step_A": Key(float, 0.25, "tether displacement per move (A)", min=1e-3, max=5.0),
        "tether_k_eV_A2": Key(float, 5.0, "tether spring constant (eV/A^2)", min=1e-3, max=1e4),
        "water_temperature_K": Key(float, 10.0, "NVT temperature of the silica+water run (K)", min=1.0, max=10_000.0),
        "water_timestep_fs": Key(float, 0.5, "MD timestep of the silica+water run (fs)", min=0.01, max=5.0),
        "moo3_steps": Key(int, 400, "NVT steps of the MoO3 + gas run", min=1, max=10_000_000),
        "moo3_temperature_K": Key(float, 1500.0, "NVT temperature of the MoO3 + gas run (K)", min=1.0, max=10_000.0),
        "moo3_timestep_fs": Key(float, 0.25, "MD timestep of the MoO3 + gas run (fs)", min=0.01, max=5.0),
    },
    # [map]: the MAP pathfinder (mapcvd map ...); see mapcvd/map/settings.py
    "map": {},
    # [cvd]: the MoO3 slab and the staged reactive-MD runs (mapcvd cvd rmd)
    "cvd": {},
    # [cvd_learning]: the CVD dataset, NADE-CVD, REINFORCE agent and validation
    "cvd_learning": {},
}


def defaults() -> dict[str, dict[str, Any]]:
    """The configuration with every key at its default."""
    return {section: {k: key.default for k, key in keys.items()} for section, keys in SCHEMA.items()}


def validate(raw: Mapping[str, Any], schema: Mapping[str, Mapping[str, Key]] = SCHEMA) -> dict[str, dict[str, Any]]:
    """Check ``raw`` against ``schema`` and fill in defaults.

    Raises
    ------
    ConfigError
        On an unknown section or key, a wrong type or a value out of range.
    """
    config = {section: {k: key.default for k, key in keys.items()} for section, keys in schema.items()}
    for section, table in raw.items():
        if section not in schema:
            raise ConfigError(f"unknown config section [{section}]; allowed: {', '.join(schema)}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"config section [{section}] must be a table of keys, got {table!r}")
        for name, value in table.items():
            keys = schema[section]
            if name not in keys:
                raise ConfigError(
                    f"unknown config key '{section}.{name}'; allowed in [{section}]: {', '.join(keys)}"
                )
            config[section][name] = keys[name].check(f"{section}.{name}", value)
    return config


def load_config(path: str | Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Read and validate a TOML configuration; ``None`` gives the packaged demo config.

    Parameters
    ----------
    path
        TOML file, or ``None`` for ``configs/demo.toml``.
    overrides
        ``{section: {key: value}}`` applied on top of the file (command-line options).

    Raises
    ------
    ConfigError
        If the file is missing or malformed, or a key fails :func:`validate`.
    """
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    raw = copy.deepcopy(raw)
    for section, table in (overrides or {}).items():
        raw.setdefault(section, {}).update({k: v for k, v in table.items() if v is not None})
    return validate(raw)


def default_config_path() -> Path:
    """Path of the packaged demo configuration."""
    from mapcvd.configs import config_path  # noqa: PLC0415

    return config_path("demo.toml")
