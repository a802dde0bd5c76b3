"""Sub-command groups of the ``mapcvd`` CLI (``map``, ``cvd``), registered by :func:`register`.

Each module holds the commands of one area; the group objects live in
:mod:`mapcvd.commands.groups` so that several modules can add commands to one group.
"""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the ``map`` and ``cvd`` groups, with all their commands, to ``cli``."""
    from mapcvd.commands import cvd_learning, cvd_md, cvd_surrogate, map_commands, neb_commands  # noqa: F401, PLC0415
    from mapcvd.commands.groups import cvd, map_group  # noqa: PLC0415

    cli.add_command(map_group)
    cli.add_command(cvd)
    for command in getattr(neb_commands, "TOP_LEVEL", ()):  # mapcvd neb, mapcvd tst
        cli.add_command(command)
