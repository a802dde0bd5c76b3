"""One staged reactive-MD run on several MPI ranks: LAMMPS under ``mpiexec``, Python on every rank.

A staged run of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, is one LAMMPS ReaxFF instance driven from Python
(:func:`mapcvd.cvd.rmd.run_schedule`). On ``R`` ranks the same Python runs on every
rank (SPMD): each rank's LAMMPS joins ``MPI_COMM_WORLD``, every LAMMPS call is
collective, and every read of atoms gathers all of them (the engine uses
``gather_atoms``/``scatter_atoms`` by atom ID), so every rank sees the same positions,
draws the same random numbers and makes the same gas choices. Only rank 0 writes:
the stage checkpoints and the result.

:func:`run_on_ranks` (called by :func:`mapcvd.workflows.cvd_dataset.run_rmd` in the app)
starts the ranks through :func:`mapcvd.workflows.mpi_runs.spmd` and reads back what
rank 0 wrote: plain arrays and JSON, never pickles. No Parsl here: the app calls it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from mapcvd.workflows.mpi_runs import RUN_FILE, rank, spmd, write_error

__all__ = ["run_on_ranks"]


def run_on_ranks(schedule: np.ndarray, cvd_table: dict, seed: int, ranks: int, *, stages=None):
    """Run one staged run on ``ranks`` MPI ranks; return its :class:`~mapcvd.cvd.rmd.RmdResult`.

    Parameters
    ----------
    schedule, cvd_table, seed, stages
        As for :func:`mapcvd.workflows.cvd_dataset.run_rmd` (``stages``: the row's
        :class:`~mapcvd.store.stage_checkpoints.StageCheckpoints`; rank 0 writes it).
    ranks : int
        MPI ranks (``[cvd] ranks_per_run``).

    Returns
    -------
    mapcvd.cvd.rmd.RmdResult
        Without frames (the apps never return them).

    Raises
    ------
    MDError
        The run failed on the ranks (:func:`~mapcvd.workflows.mpi_runs.spmd`).
    """
    from mapcvd.cvd.rmd import RmdResult  # noqa: PLC0415

    spec = {"schedule": np.asarray(schedule, dtype=np.float64).tolist(), "cvd_table": dict(cvd_table),
            "seed": int(seed), "stages": None if stages is None else stages.__getstate__()}
    with spmd("mapcvd.workflows.rmd_ranks", spec, ranks, what="staged run") as folder:
        scalars = json.loads((folder / "result.json").read_text())
        with np.load(folder / "result.npz", allow_pickle=False) as arrays:
            return RmdResult(**{name: arrays[name] for name in arrays.files}, **scalars)


class _LoadOnly:
    """A row's stage checkpoint as ranks other than 0 see it: they read it, never write."""

    def __init__(self, stages) -> None:
        self._stages = stages

    def load(self, key):
        return self._stages.load(key)

    def save(self, *args, **kwargs) -> None:
        return None


def main(folder: str) -> int:
    """The body of every rank: run the staged run in ``folder/run.json``; rank 0 writes the result."""
    import dataclasses  # noqa: PLC0415

    from mapcvd.errors import MapcvdError  # noqa: PLC0415
    from mapcvd.store.stage_checkpoints import StageCheckpoints  # noqa: PLC0415
    from mapcvd.workflows.cvd_dataset import run_rmd  # noqa: PLC0415

    run, me = Path(folder), rank()
    spec = json.loads((run / RUN_FILE).read_text())
    stages = None if spec["stages"] is None else StageCheckpoints(**spec["stages"])
    if stages is not None and me != 0:
        stages = _LoadOnly(stages)
    table = {**spec["cvd_table"], "ranks_per_run": 1}  # each rank runs the plain run: LAMMPS spans the ranks
    try:
        result = run_rmd(np.asarray(spec["schedule"]), table, spec["seed"], stages=stages)
    except MapcvdError as exc:
        if me == 0:
            write_error(run, exc)
        return 1
    if me == 0:
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "frames"}
        arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
        np.savez(run / "result.npz", **arrays)
        scalars = {k: v for k, v in fields.items() if k not in arrays}
        (run / "result.json").write_text(json.dumps(scalars, default=lambda v: v.item()))  # numpy scalars
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
