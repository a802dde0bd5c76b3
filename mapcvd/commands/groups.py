"""The click groups that command modules add their commands to."""

from __future__ import annotations

import click


@click.group("map")
def map_group():
    """MAP: train the pathfinder, evaluate it, and run the paper's experiments."""


@click.group("cvd")
def cvd():
    """CVD synthesis of MoS2: phases, staged reactive MD, dataset, NADE-CVD, agent, validation."""
