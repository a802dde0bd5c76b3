"""Running one piece of mapcvd on several MPI ranks of this node: the launcher and the rank side.

A staged reactive-MD run (:mod:`mapcvd.workflows.rmd_ranks`) or a MAP actor
(:mod:`mapcvd.workflows.actor_ranks`) on R ranks runs the same Python on every rank
(SPMD): each rank's LAMMPS joins ``MPI_COMM_WORLD``, every LAMMPS call is collective and
every read of atoms gathers all of them. The app that wants it calls :func:`spmd`, which
writes the piece's inputs to a folder as JSON, starts ``mpiexec -n R python -m MODULE
FOLDER`` and, when the ranks are done, hands back the folder where rank 0 wrote the
result (JSON and plain arrays, never pickles); a MapcvdError of rank 0 comes back with
its type. The ranks start as :mod:`mapcvd.md.mpi_launch` starts them (Parsl's
``$PARSL_MPI_PREFIX`` on its MPI executor, else our own ``mpiexec``), and die with the
app. No Parsl here: the apps call it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mapcvd.md.mpi_launch import DIE_WITH_PARENT, rank_command, rank_environment

__all__ = ["RUN_FILE", "rank", "spmd", "write_error"]

#: The inputs of the piece, written by :func:`spmd` into the run folder.
RUN_FILE = "run.json"
_ERROR_FILE = "error.json"


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
        cmd = rank_command(ranks, [sys.executable, "-m", module, str(folder)])
        done = subprocess.run(cmd, env=rank_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if (folder / _ERROR_FILE).is_file():
            error = json.loads((folder / _ERROR_FILE).read_text())
            kind = getattr(errors, error["type"], None)
            kind = kind if isinstance(kind, type) and issubclass(kind, errors.MapcvdError) else errors.MDError
            raise kind(f"{what} on {ranks} ranks: {error['message']}")
        if done.returncode != 0:
            tail = " ".join(done.stderr.split()[-40:])
            started = cmd[len(DIE_WITH_PARENT):-4]
            raise errors.MDError(f"{what} on {ranks} ranks: {' '.join(started)} exited with {done.returncode}: "
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
