"""What every Parsl site of mapcvd shares: executor labels, worker start-up, the Config.

Used by :mod:`mapcvd.workflows.sites` (the built-in ``threads`` and ``local`` sites, the
registry and :func:`~mapcvd.workflows.sites.load_site`) and
:mod:`mapcvd.workflows.cluster_sites` (``slurm`` and ``pbs``).
"""

from __future__ import annotations

import os
import sys

from parsl.config import Config

__all__ = ["CPU", "EXECUTOR_LABELS", "GPU", "POLL_MS", "SINGLE_THREAD_INIT", "build_config", "cores",
           "interchange_cmd", "join_init"]

#: The executor labels that workflows target: ``"cpu"`` on every site, ``"gpu"``
#: where the site has one (see :func:`has_gpu_executor`).
EXECUTOR_LABELS: tuple[str, str] = ("cpu", "gpu")
CPU, GPU = EXECUTOR_LABELS

#: Shell lines run before every ``"cpu"`` worker pool: one thread per worker.
SINGLE_THREAD_INIT = "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"
#: Milliseconds between the polls of Parsl's interchange and worker pools. Parsl's
#: default, 10 ms, kept them busy: 1.2% of the laptop demo's CPU, 0.4% at 100 ms
#: (benchmarks/campaign_overhead.py); mapcvd's tasks run seconds to hours, so 100 ms
#: more latency per task costs nothing.
POLL_MS = 100


def cores() -> int:
    """Return the number of cores of this machine (at least 1)."""
    return os.cpu_count() or 1


def interchange_cmd() -> list[str] | None:
    """Return the command that starts the HighThroughputExecutor interchange.

    Parsl runs ``interchange.py`` from ``PATH`` by default, which fails when the
    environment is used without being activated (``/path/to/venv/bin/mapcvd``).
    Run the script of this interpreter's environment with this interpreter instead.

    Returns
    -------
    list of str or None
        ``[sys.executable, ".../bin/interchange.py"]``, or None (Parsl's default)
        when the script is not next to the interpreter.
    """
    script = os.path.join(os.path.dirname(sys.executable), "interchange.py")
    return [sys.executable, script] if os.path.isfile(script) else None


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
    )
