"""Small helpers shared by the CLI modules: timestamped log lines and the rich console."""

from __future__ import annotations

import time
from pathlib import Path

import click


def console():
    """A rich console on stdout (no syntax highlighting)."""
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=False, highlight=False)


def log(message: str) -> None:
    """Print ``[HH:MM:SS] message``."""
    stamp = time.strftime("%H:%M:%S")
    click.echo(f"[{stamp}] {message}")


def config_for(config_file, store_path, overrides: dict | None = None, *,
               sections: tuple[str, ...] | None = None) -> dict:
    """``--config``, else the configuration stored in the campaign at ``store_path``, else the demo; validated.

    ``overrides`` (``{section: {key: value}}``, None values ignored) go on top; with
    ``sections``, only those sections of a stored configuration are kept (a MAP
    command is not stopped by another section that another mapcvd version wrote).
    """
    from mapcvd.config import config_from_stored, load_config  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    if config_file is not None:
        return load_config(config_file, overrides=overrides)
    store_path = None if store_path is None else Path(store_path)
    if store_path is not None and store_path.is_dir() and any(store_path.iterdir()):
        return config_from_stored(open_campaign(store_path, "r").attrs.get("config", {}), overrides,
                                  sections=sections, where=str(store_path))
    return load_config(None, overrides=overrides)
