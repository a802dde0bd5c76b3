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
writes the run's inputs to a folder, starts ``mpiexec -n R python -m
mapcvd.workflows.rmd_ranks FOLDER`` (or ``$PARSL_MPI_PREFIX`` when Parsl's MPI support
gives one) and reads back what rank 0 wrote: plain arrays and JSON, never pickles. No
Parsl here: the app calls it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["launcher", "run_on_ranks"]

#: Environment variables of an enclosing MPI or batch job that would make ``mpiexec``
#: spread the ranks over the job's nodes or join the job's PMI instead of this node.
_FOREIGN_ENV = ("PMI_", "PMIX_", "SLURM_", "PBS_", "OMPI_", "HYDRA_")


def launcher(ranks: int) -> list[str]:
    """The command prefix that starts ``ranks`` ranks on this node.

    ``$PARSL_MPI_PREFIX`` when Parsl's MPI support set one for the task, else the
    ``mpiexec`` next to this interpreter (the ``mpich`` wheel's hydra, which matches the
    MPI library LAMMPS is linked with), or on ``PATH``, with its fork launcher.
    """
    prefix = os.environ.get("PARSL_MPI_PREFIX")
    if prefix:
        return shlex.split(prefix)
    local = Path(sys.executable).with_name("mpiexec")
    return [str(local) if local.is_file() else "mpiexec", "-launcher", "fork", "-n", str(int(ranks))]


#: Runs the rest of its command line after asking Linux to SIGKILL it when its parent
#: (the app) dies (``PR_SET_PDEATHSIG``, kept across ``exec``), so that a killed worker
#: takes its ``mpiexec`` with it; a shim instead of ``preexec_fn``, which is unsafe in a
#: process with threads (Parsl workers, the campaign driver).
_DIE_WITH_PARENT = [sys.executable, "-c", "import ctypes, os, signal, sys; "
                    "ctypes.CDLL(None).prctl(1, signal.SIGKILL); os.execvp(sys.argv[1], sys.argv[1:])"]


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
        The run failed (the error of rank 0, with its type when it is one of mapcvd's),
        or ``mpiexec`` could not start the ranks.
    """
    from mapcvd import errors  # noqa: PLC0415
    from mapcvd.cvd.rmd import RmdResult  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="mapcvd-ranks-") as folder:
        run = Path(folder)
        (run / "run.json").write_text(json.dumps({
            "schedule": np.asarray(schedule, dtype=np.float64).tolist(), "cvd_table": dict(cvd_table),
            "seed": int(seed), "stages": None if stages is None else stages.__getstate__()}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV)}
        env["OMP_NUM_THREADS"] = "1"
        cmd = [*launcher(ranks), sys.executable, "-m", "mapcvd.workflows.rmd_ranks", str(run)]
        done = subprocess.run([*_DIE_WITH_PARENT, *cmd], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if (run / "error.json").is_file():
            error = json.loads((run / "error.json").read_text())
            kind = getattr(errors, error["type"], None)
            kind = kind if isinstance(kind, type) and issubclass(kind, errors.MapcvdError) else errors.MDError
            raise kind(f"on {ranks} ranks: {error['message']}")
        if done.returncode != 0 or not (run / "result.json").is_file():
            tail = " ".join(done.stderr.split()[-40:])
            raise errors.MDError(f"{' '.join(cmd[:-4])} exited with {done.returncode} before the run ended: {tail}")
        scalars = json.loads((run / "result.json").read_text())
        with np.load(run / "result.npz", allow_pickle=False) as arrays:
            return RmdResult(**{name: arrays[name] for name in arrays.files}, **scalars)


class _LoadOnly:
    """A row's stage checkpoint as ranks other than 0 see it: they read it, never write."""

    def __init__(self, stages) -> None:
        self._stages = stages

    def load(self, key):
        return self._stages.load(key)

    def save(self, *args, **kwargs) -> None:
        return None


def _rank() -> int:
    for name in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def main(folder: str) -> int:
    """The body of every rank: run the staged run in ``folder/run.json``; rank 0 writes the result."""
    import dataclasses  # noqa: PLC0415

    from mapcvd.errors import MapcvdError  # noqa: PLC0415
    from mapcvd.store.stage_checkpoints import StageCheckpoints  # noqa: PLC0415
    from mapcvd.workflows.cvd_dataset import run_rmd  # noqa: PLC0415

    run, rank = Path(folder), _rank()
    spec = json.loads((run / "run.json").read_text())
    stages = None if spec["stages"] is None else StageCheckpoints(**spec["stages"])
    if stages is not None and rank != 0:
        stages = _LoadOnly(stages)
    table = {**spec["cvd_table"], "ranks_per_run": 1}  # each rank runs the plain run: LAMMPS spans the ranks
    try:
        result = run_rmd(np.asarray(spec["schedule"]), table, spec["seed"], stages=stages)
    except MapcvdError as exc:
        if rank == 0:
            (run / "error.json").write_text(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        return 1
    if rank == 0:
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "frames"}
        arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
        np.savez(run / "result.npz", **arrays)
        scalars = {k: v for k, v in fields.items() if k not in arrays}
        (run / "result.json").write_text(json.dumps(scalars, default=lambda v: v.item()))  # numpy scalars
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
