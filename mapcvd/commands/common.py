"""Small helpers shared by the CLI modules: timestamped log lines and the rich console."""

from __future__ import annotations

import time

import click


def console():
    """A rich console on stdout (no syntax highlighting)."""
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=False, highlight=False)


def log(message: str) -> None:
    """Print ``[HH:MM:SS] message``."""
    stamp = time.strftime("%H:%M:%S")
    click.echo(f"[{stamp}] {message}")


def config_for(config_file, store_path) -> dict:
    """``--config``, else the configuration stored in the campaign at ``store_path``, else the demo; validated."""
    from mapcvd.config import config_from_stored, load_config  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    if config_file is not None:
        return load_config(config_file)
    if store_path is not None and store_path.is_dir() and any(store_path.iterdir()):
        return config_from_stored(open_campaign(store_path, "r").attrs.get("config", {}), where=str(store_path))
    return load_config(None)
