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


def refuse_changed_map_config(store_path, config: dict) -> None:
    """Stop, in one line naming the keys, when ``config`` is not the ``[campaign]``/``[map]``
    configuration the MAP training in the store at ``store_path`` ran with
    (:func:`mapcvd.config.refuse_changed_config`); nothing to check before MAP started."""
    from mapcvd.config import config_from_stored, refuse_changed_config  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415
    from mapcvd.store.layout import MAP_STRUCTURE_PATH  # noqa: PLC0415

    store_path = Path(store_path)
    if not store_path.is_dir() or not any(store_path.iterdir()):
        return
    root = open_campaign(store_path, "r")
    if MAP_STRUCTURE_PATH not in root:
        return
    stored = config_from_stored(root.attrs.get("config", {}), sections=("campaign", "map"), where=str(store_path))
    refuse_changed_config(stored, config, str(store_path))


def open_for_run(store_path, config: dict | None = None):
    """Open the campaign store at ``store_path`` for a run of this command and take it (a new run token).

    With ``config``, a missing store is created with it. The store is then claimed
    (:func:`mapcvd.workflows.run_guard.claim_store`): a run of this host that still
    holds it stops the command with one line; processes an earlier, killed run left
    are ended; every write of this run is fenced by the new token.

    Returns
    -------
    tuple of (zarr.Group, bool)
        The root, read-write and fenced, and whether the store was created now.
    """
    from mapcvd.store import open_or_create_campaign  # noqa: PLC0415
    from mapcvd.workflows.run_guard import claim_store  # noqa: PLC0415

    created = False
    if config is not None:
        _, created = open_or_create_campaign(store_path, config=config, seeds={"campaign": config["campaign"]["seed"]})
    return claim_store(store_path), created
