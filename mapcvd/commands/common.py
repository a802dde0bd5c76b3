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
