"""Sub-command groups of the ``mapcvd`` CLI (``map``, ``cvd``), registered by :func:`register`.

Each module holds the commands of one area as plain ``click`` commands; this module
says, in one explicit list, which command goes where (the group objects live in
:mod:`mapcvd.commands.groups`).
"""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the ``map`` and ``cvd`` groups, with all their commands, and ``neb``/``tst`` to ``cli``."""
    from mapcvd.commands import cvd_learning, cvd_md, cvd_surrogate, map_commands, neb_commands  # noqa: PLC0415
    from mapcvd.commands.groups import cvd, map_group  # noqa: PLC0415

    commands = {
        map_group: (map_commands.map_train, map_commands.map_evaluate, map_commands.map_scaling,
                    map_commands.map_ablation, neb_commands.map_paths),
        cvd: (cvd_md.phases, cvd_md.rmd, cvd_learning.dataset_command, cvd_learning.nade_command,
              cvd_learning.agent_command, cvd_learning.validate_command, cvd_surrogate.predict_command,
              cvd_surrogate.optimise_command),
        cli: (map_group, cvd, neb_commands.neb, neb_commands.tst),
    }
    for group, members in commands.items():
        for command in members:
            group.add_command(command)
