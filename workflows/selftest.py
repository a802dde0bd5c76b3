"""A trivial Parsl app, to check that a site starts and runs tasks.

The plain functions live in this installed module so that HighThroughputExecutor
workers import them by name instead of unpickling their code; the apps are built from
them with :func:`parsl.python_app` for a chosen executor label.

Examples
--------
>>> from mapcvd.workflows.sites import load_site, run_parsl
>>> from mapcvd.workflows.selftest import check_site
>>> with run_parsl(load_site("threads")) as dfk:  # doctest: +SKIP
...     check_site(dfk)
{'cpu': (49, 12345)}
"""

from __future__ import annotations

import os
import platform
import time

import parsl
from parsl.app.python import PythonApp

__all__ = ["batch_job", "check_site", "site_report", "square", "square_app", "square_with_pid", "worker_report"]


def square(x: float) -> float:
    """Return ``x * x``.

    Parameters
    ----------
    x : float
        A number.

    Returns
    -------
    float
        Its square.
    """
    return x * x


def _one_rank(label: str) -> dict:
    """Keywords of a check task on executor ``label``: Parsl's MPI mode (``"mpi"``) requires a
    resource specification, here one rank on one node."""
    from mapcvd.workflows.site_common import MPI, one_node_ranks  # noqa: PLC0415

    return {"parsl_resource_specification": one_node_ranks(1)} if label == MPI else {}


def square_with_pid(x: float, parsl_resource_specification: dict | None = None) -> tuple[float, int]:
    """Return ``x * x`` and the id of the process that computed it.

    Parameters
    ----------
    x : float
        A number.
    parsl_resource_specification : dict, optional
        Parsl's, on the ``"mpi"`` executor; unused here.

    Returns
    -------
    tuple of (float, int)
        The square and ``os.getpid()`` of the worker.
    """
    return square(x), os.getpid()


def square_app(label: str = "cpu", *, with_pid: bool = False) -> PythonApp:
    """Build the Parsl app of :func:`square` (or :func:`square_with_pid`).

    Parameters
    ----------
    label : str, optional
        Executor label the app runs on. Default ``"cpu"``.
    with_pid : bool, optional
        Return ``(square, worker pid)`` instead of the square.

    Returns
    -------
    parsl.app.python.PythonApp
        Calling it returns an ``AppFuture``.
    """
    return parsl.python_app(square_with_pid if with_pid else square, executors=[label])


def check_site(dfk, x: float = 7, timeout: float = 120.0) -> dict[str, tuple[float, int]]:
    """Run :func:`square_with_pid` once on every executor of a loaded kernel.

    Parameters
    ----------
    dfk : parsl.dataflow.dflow.DataFlowKernel
        The loaded kernel (from :func:`mapcvd.workflows.sites.run_parsl`).
    x : float, optional
        The number to square.
    timeout : float, optional
        Seconds to wait for each result.

    Returns
    -------
    dict
        Executor label -> ``(x * x, worker pid)``.

    Raises
    ------
    ValueError
        A worker returned a wrong result.
    """
    labels = [label for label in dfk.executors if not label.startswith("_")]
    futures = {label: square_app(label, with_pid=True)(x, **_one_rank(label)) for label in labels}
    results = {label: tuple(f.result(timeout=timeout)) for label, f in futures.items()}
    for label, (value, _) in results.items():
        if value != x * x:
            raise ValueError(f"executor {label!r} returned {value!r} for {x!r} squared")
    return results


def batch_job() -> str | None:
    """The batch job this process runs in, as its scheduler names it, or None outside one.

    Returns
    -------
    str or None
        ``"Slurm job 123 on node n1"`` or ``"PBS job 123.server"``.
    """
    if os.environ.get("SLURM_JOB_ID"):
        node = os.environ.get("SLURMD_NODENAME")
        return f"Slurm job {os.environ['SLURM_JOB_ID']}" + (f" on node {node}" if node else "")
    if os.environ.get("PBS_JOBID"):
        return f"PBS job {os.environ['PBS_JOBID']}"
    return None


def worker_report(parsl_resource_specification: dict | None = None) -> dict:
    """What a worker sees: host, cores, LAMMPS and its packages, torch and its devices.

    Run on each executor by :func:`site_report`, so that a site file whose
    ``worker_init`` misses a module or the environment fails here, in seconds, rather
    than hours into a campaign. On the ``"mpi"`` executor (submitted with a
    ``parsl_resource_specification``, which Parsl's MPI mode requires) it also reports
    the ``$PARSL_MPI_PREFIX`` that Parsl composed for the task.
    """
    import torch  # noqa: PLC0415

    from mapcvd.md.lammps_loader import new_lammps  # noqa: PLC0415

    lmp = new_lammps()
    try:
        lammps = {"version": lmp.version(), "packages": sorted(lmp.installed_packages)}
    finally:
        lmp.close()
    return {"host": platform.node(), "pid": os.getpid(), "cores": os.cpu_count(),
            "python": platform.python_version(), "lammps": lammps, "torch": torch.__version__, "batch_job": batch_job(),
            "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "mpi_prefix": os.environ.get("PARSL_MPI_PREFIX")}


def site_report(dfk, timeout: float = 600.0) -> dict[str, dict]:
    """Run :func:`worker_report` once on every executor of a loaded kernel.

    Parameters
    ----------
    dfk : parsl.dataflow.dflow.DataFlowKernel
        The loaded kernel.
    timeout : float, optional
        Seconds to wait for each executor (a batch job may queue first).

    Returns
    -------
    dict
        Executor label -> the worker's report, or ``{"error": message}`` for an
        executor whose task failed or did not start within ``timeout``.
    """
    labels = [label for label in dfk.executors if not label.startswith("_")]
    futures = {label: parsl.python_app(worker_report, executors=[label])(**_one_rank(label)) for label in labels}
    reports: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    for label, future in futures.items():
        try:
            reports[label] = future.result(timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            reports[label] = {"error": f"no result within {timeout:g} s (is its batch job still queued?)"}
        except Exception as exc:  # noqa: BLE001 - reported per executor
            text = " ".join(str(exc).split()) or type(exc).__name__
            reports[label] = {"error": f"{type(exc).__name__}: {text}"}
    return reports
