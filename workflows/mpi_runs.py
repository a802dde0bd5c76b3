"""Running one piece of mapcvd on several MPI ranks of this node: the launcher and the rank side.

A staged reactive-MD run (:mod:`mapcvd.workflows.rmd_ranks`) or a MAP actor
(:mod:`mapcvd.workflows.actor_ranks`) on R ranks runs the same Python on every rank
(SPMD): each rank's LAMMPS joins ``MPI_COMM_WORLD``, every LAMMPS call is collective and
every read of atoms gathers all of them. The app that wants it calls :func:`spmd`, which
writes the piece's inputs to a folder as JSON, starts ``mpiexec -n R python -m MODULE
FOLDER`` and, when the ranks are done, hands back the folder where rank 0 wrote the
result (JSON and plain arrays, never pickles); a MapcvdError of rank 0 comes back with
its type. No Parsl here: the apps call it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["RUN_FILE", "launcher", "rank", "spmd", "write_error"]

#: The inputs of the piece, written by :func:`spmd` into the run folder.
RUN_FILE = "run.json"
_ERROR_FILE = "error.json"

#: Environment variables of an enclosing MPI or batch job that would make ``mpiexec``
#: spread the ranks over the job's nodes or join the job's PMI instead of this node.
_FOREIGN_ENV = ("PMI_", "PMIX_", "SLURM_", "PBS_", "OMPI_", "HYDRA_")

#: Runs the rest of its command line after asking Linux to SIGKILL it when its parent
#: (the app) dies (``PR_SET_PDEATHSIG``, kept across ``exec``), so that a killed worker
#: takes its ``mpiexec`` with it; a shim instead of ``preexec_fn``, which is unsafe in a
#: process with threads (Parsl workers, the campaign driver).
_DIE_WITH_PARENT = [sys.executable, "-c", "import ctypes, os, signal, sys; "
                    "ctypes.CDLL(None).prctl(1, signal.SIGKILL); os.execvp(sys.argv[1], sys.argv[1:])"]


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


@contextlib.contextmanager
def spmd(module: str, spec: dict, ranks: int, *, what: str) -> Iterator[Path]:
    """Run ``python -m module FOLDER`` on ``ranks`` ranks; yield FOLDER once rank 0 has written its result.

    Parameters
    ----------
    module : str
        The rank-side module; its ``main(folder)`` reads :data:`RUN_FILE` (``spec``).
    spec : dict
        The piece's inputs (JSON).
    ranks : int
        MPI ranks.
    what : str
        What runs, for messages ("staged run", "actor 3").

    Raises
    ------
    MDError
        The ranks failed: the error of rank 0, with its type when it is one of
        mapcvd's, or ``mpiexec``'s exit status and the end of its output.
    """
    from mapcvd import errors  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="mapcvd-ranks-") as name:
        folder = Path(name)
        (folder / RUN_FILE).write_text(json.dumps(spec))
        # Parsl's prefix names the job's nodes and relies on the job's environment; our own
        # mpiexec must not see an enclosing job's, or it would spread the ranks over it
        keep = bool(os.environ.get("PARSL_MPI_PREFIX"))
        env = {k: v for k, v in os.environ.items() if keep or not k.startswith(_FOREIGN_ENV)}
        env["OMP_NUM_THREADS"] = "1"
        cmd = [*launcher(ranks), sys.executable, "-m", module, str(folder)]
        done = subprocess.run([*_DIE_WITH_PARENT, *cmd], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if (folder / _ERROR_FILE).is_file():
            error = json.loads((folder / _ERROR_FILE).read_text())
            kind = getattr(errors, error["type"], None)
            kind = kind if isinstance(kind, type) and issubclass(kind, errors.MapcvdError) else errors.MDError
            raise kind(f"{what} on {ranks} ranks: {error['message']}")
        if done.returncode != 0:
            tail = " ".join(done.stderr.split()[-40:])
            raise errors.MDError(f"{what} on {ranks} ranks: {' '.join(cmd[:-4])} exited with {done.returncode}: "
                                 f"{tail}")
        yield folder


def rank() -> int:
    """This process's rank in its ``mpiexec`` job (0 outside one)."""
    for name in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def write_error(folder: str | os.PathLike, exc: BaseException) -> None:
    """Rank 0's report of a failure, read back by :func:`spmd`."""
    (Path(folder) / _ERROR_FILE).write_text(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
