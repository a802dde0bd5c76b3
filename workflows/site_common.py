"""What every Parsl site of mapcvd shares: executor labels, worker start-up, the Config.

Used by :mod:`mapcvd.workflows.sites` (the built-in ``threads`` and ``local`` sites, the
registry and :func:`~mapcvd.workflows.sites.load_site`) and
:mod:`mapcvd.workflows.cluster_sites` (``slurm`` and ``pbs``).
"""

from __future__ import annotations

import logging
import os
import sys

from parsl.config import Config
from parsl.executors import HighThroughputExecutor, MPIExecutor

__all__ = ["CPU", "EXECUTOR_LABELS", "GPU", "HEARTBEAT", "MPI", "POLL_MS", "SINGLE_THREAD_INIT", "build_config",
           "cores", "htex", "interchange_cmd", "join_init", "mpi_executor", "one_node_ranks", "retry_lost_pool"]

logger = logging.getLogger(__name__)

#: The executor labels that workflows target: ``"cpu"`` on every site, ``"gpu"``
#: where the site has one (see :func:`has_gpu_executor`).
EXECUTOR_LABELS: tuple[str, str] = ("cpu", "gpu")
CPU, GPU = EXECUTOR_LABELS
#: The executor of apps that run on several MPI ranks, where a cluster site has one.
MPI = "mpi"

#: Shell lines run before every ``"cpu"`` worker pool: one thread per worker.
SINGLE_THREAD_INIT = "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"
#: Milliseconds between the polls of Parsl's interchange and worker pools. Parsl's
#: default, 10 ms, kept them busy: 1.2% of the laptop demo's CPU, 0.4% at 100 ms
#: (benchmarks/campaign_overhead.py); mapcvd's tasks run seconds to hours, so 100 ms
#: more latency per task costs nothing.
POLL_MS = 100
#: Lost worker pools a task survives (walltimes, cancelled blocks, lost nodes): it
#: runs again on the next block each time (:func:`retry_lost_pool`), then fails.
LOST_POOL_RETRIES = 10
#: Heartbeats between worker pools and their interchange (seconds). A pool that hears
#: nothing from its interchange for ``heartbeat_threshold`` ends itself and its
#: workers; the interchange ends as soon as its driver is gone
#: (:mod:`mapcvd.workflows.interchange_guard`). So the Parsl processes of a killed
#: driver are gone within about 40 s instead of Parsl's default 120 s (or never, for
#: the interchange).
HEARTBEAT = dict(heartbeat_period=10, heartbeat_threshold=40)


def cores() -> int:
    """Return the number of cores of this machine (at least 1)."""
    return os.cpu_count() or 1


def interchange_cmd() -> list[str]:
    """Return the command that starts the HighThroughputExecutor interchange.

    Parsl runs ``interchange.py`` from ``PATH`` by default, which fails when the
    environment is used without being activated (``/path/to/venv/bin/mapcvd``), and
    the interchange outlives a killed driver. Run it with this interpreter under
    :mod:`mapcvd.workflows.interchange_guard`, which ends it when the driver is gone.

    Returns
    -------
    list of str
        ``[sys.executable, "-m", "mapcvd.workflows.interchange_guard", SCRIPT]``, SCRIPT
        being the ``interchange.py`` next to the interpreter, or the name alone (found
        on ``PATH``) when there is none.
    """
    script = os.path.join(os.path.dirname(sys.executable), "interchange.py")
    return [sys.executable, "-m", "mapcvd.workflows.interchange_guard",
            script if os.path.isfile(script) else "interchange.py"]


def mpi_executor(provider, *, address: str | None, workers: int) -> MPIExecutor:
    """The ``"mpi"`` executor: Parsl's MPIExecutor, for apps of several MPI ranks (:data:`MPI`).

    Each of its ``workers`` runs one multi-rank app at a time on a node of its block;
    such an app is submitted with a ``parsl_resource_specification``
    (:func:`one_node_ranks`) and finds ``$PARSL_MPI_PREFIX`` (``mpiexec -n R -ppn R
    -hosts NODE``) in its environment (:func:`mapcvd.md.mpi_launch.launcher`). Parsl's
    MPI mode reads the node list of a batch job (Slurm, PBS); the ``local`` site hands
    its pool a node file of this host as ``PBS_NODEFILE``. The provider must use
    Parsl's SimpleLauncher.
    """
    executor = MPIExecutor(label=MPI, provider=provider, address=address, max_workers_per_block=int(workers),
                           mpi_launcher="mpiexec", poll_period=POLL_MS, **HEARTBEAT)
    # MPIExecutor's signature types this as a string, which Popen would take as a program name;
    # HighThroughputExecutor, which runs it, takes the list
    executor.interchange_launch_cmd = interchange_cmd()
    return executor


def one_node_ranks(ranks: int) -> dict:
    """Parsl's ``parsl_resource_specification`` of an app of ``ranks`` MPI ranks on one node."""
    return {"num_nodes": 1, "ranks_per_node": int(ranks), "num_ranks": int(ranks)}


def htex(label: str, **options) -> HighThroughputExecutor:
    """A HighThroughputExecutor with mapcvd's settings: :data:`POLL_MS`, :data:`HEARTBEAT`, :func:`interchange_cmd`.

    Parameters
    ----------
    label : str
        ``"cpu"`` or ``"gpu"``.
    **options
        Further arguments of :class:`~parsl.executors.HighThroughputExecutor`
        (provider, address, workers ...).
    """
    return HighThroughputExecutor(label=label, poll_period=POLL_MS, interchange_launch_cmd=interchange_cmd(),
                                  **HEARTBEAT, **options)


def join_init(*parts: str | None) -> str:
    """Join shell snippets with ``"; "``, skipping empty ones.

    Parameters
    ----------
    *parts : str or None
        Shell lines; ``None`` and blank strings are dropped.

    Returns
    -------
    str
        One line for a provider's ``worker_init``.
    """
    return "; ".join(p.strip().rstrip(";") for p in parts if p and p.strip())


def build_config(executors: list, run_dir: str | os.PathLike) -> Config:
    """Build the :class:`~parsl.config.Config` shared by all sites.

    Parameters
    ----------
    executors : list
        The executors, one labelled ``"cpu"``.
    run_dir : str or path-like
        Parsl's run directory (logs, submit scripts, worker logs); made absolute so
        that the worker pools of this run can be told apart from any other.

    Returns
    -------
    parsl.config.Config
        A fresh configuration, usage tracking off.
    """
    return Config(
        executors=executors,
        run_dir=os.path.abspath(os.fspath(run_dir)),
        usage_tracking=0,
        retries=LOST_POOL_RETRIES,
        retry_handler=retry_lost_pool,
    )


def retry_lost_pool(exception: BaseException, task_record: dict) -> float:
    """Parsl's retry handler of every site: run again a task that was lost with its worker pool.

    A batch job that reaches its walltime, is cancelled (``scancel``, ``qdel``) or loses
    its node takes its worker pool with it, and the pool's tasks fail with
    ``ManagerLost``. Such a task is launched again, on the next block Parsl starts, up
    to :data:`LOST_POOL_RETRIES` times. Every mapcvd app may run again: MAP actors
    continue from their commit counters and episode numbers until the same deadline,
    the learner from its checkpoint, and evaluation, NEB and reactive-MD apps only
    return results that the driver writes. An error raised by the task itself is not
    retried here (the reactive-MD runs have their own retries, ``cvd_learning.retries``).

    Parameters
    ----------
    exception : BaseException
        Why the try failed.
    task_record : dict
        Parsl's record of the task (``id``, ``func_name``, ``fail_count``).

    Returns
    -------
    float
        The cost of this failure: 1 for a lost pool, more than the retries otherwise.
    """
    from parsl.executors.high_throughput.errors import ManagerLost  # noqa: PLC0415

    if isinstance(exception, ManagerLost):
        logger.warning("task %s (%s) was lost with its worker pool (%s): running it again (try %d of at most %d)",
                       task_record.get("id"), task_record.get("func_name"), exception,
                       task_record.get("fail_count", 0) + 1, LOST_POOL_RETRIES + 1)
        return 1.0
    return float(LOST_POOL_RETRIES + 1)
