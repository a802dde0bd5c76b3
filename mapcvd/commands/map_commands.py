"""``mapcvd map train|evaluate|scaling|ablation``: the MAP pathfinder."""

from __future__ import annotations

from mapcvd.commands.groups import map_group  # noqa: F401
