"""Parsl site configurations: where the apps of a campaign run.

A *site* is a factory ``fresh_config(**options) -> parsl.config.Config``. A loaded
Parsl ``Config`` cannot be loaded a second time, so every call builds a new one; keep
the factory, not the config. Sites by name (see :data:`SITES`):

``threads``
    One :class:`~parsl.executors.ThreadPoolExecutor` labelled ``"cpu"``. For tests
    only: threads never serialise arguments or results, so they hide pickling bugs,
    and LAMMPS cannot run in several threads of one process.
``local`` (the default)
    A :class:`~parsl.executors.HighThroughputExecutor` labelled ``"cpu"`` on this
    machine (:class:`~parsl.providers.LocalProvider`, loopback address), one worker
    process per core; with ``gpu=True`` also an executor ``"gpu"`` with one worker
    for the learner.
``slurm``
    ``"cpu"``: whole nodes from Slurm (:class:`~parsl.providers.SlurmProvider`),
    one worker pool per node started by ``srun`` (:class:`~parsl.launchers.SrunLauncher`),
    one worker per core. ``"gpu"``: a separate block on a GPU partition, one worker
    per GPU (each worker sees only its own GPU through ``CUDA_VISIBLE_DEVICES``).
``pbs``
    The same on PBS Pro (:class:`~parsl.providers.PBSProProvider`), worker pools
    started by ``mpiexec`` (:class:`~parsl.launchers.MpiExecLauncher`).

Every site has an executor labelled ``"cpu"`` (actors, NEB segments, reactive-MD
runs); cluster sites, and ``local`` with ``gpu=True``, also ``"gpu"`` (the learner and
surrogate training). Workflows check :func:`has_gpu_executor` and fall back to
``"cpu"``. :func:`load_site` takes a site name or the path of a user's Python file
that defines its own ``fresh_config(**options)`` (start from the examples in
``configs/sites/``).

Why one worker per core
-----------------------
An actor, a NEB segment or a reactive-MD run each owns one LAMMPS instance. LAMMPS is
not thread-safe, so the unit of parallelism is the process: one worker process per
core, each running its own serial LAMMPS instance (``cores_per_worker=1``). For the
same reason the ``"cpu"`` workers start with ``OMP_NUM_THREADS=1``, so that N workers
do not each start N OpenMP or BLAS threads. The learner's executor ``"gpu"`` has one
worker per GPU and keeps the default threading.

Cluster sites
-------------
``slurm`` and ``pbs`` are built in :mod:`mapcvd.workflows.cluster_sites`; what to set
on a real machine (partitions, ``cores_per_node``, the ``worker_init`` that loads
modules and activates the environment on the compute node, walltime, ``address``) is
explained beside a working example in ``configs/sites/slurm_example.py`` and
``configs/sites/pbs_example.py``.

Starting and stopping
---------------------
Use :func:`run_parsl`::

    from mapcvd.workflows.sites import load_site, run_parsl

    with run_parsl(load_site("local", run_dir="runs/demo/runinfo")) as dfk:
        ...  # submit apps, wait on their futures

It shuts Parsl down (executors, blocks, worker pools) on every way out of the block,
exceptions and Ctrl-C included. Parsl no longer does this at interpreter exit.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Callable

from parsl.config import Config
from parsl.executors import ThreadPoolExecutor
from parsl.launchers import SimpleLauncher
from parsl.providers import LocalProvider

from mapcvd.errors import InputError, one_line
from mapcvd.workflows.cluster_sites import check_cluster_config, pbs_config, slurm_config
from mapcvd.workflows.parsl_runtime import run_parsl
from mapcvd.workflows.site_common import (
    CPU,
    EXECUTOR_LABELS,
    GPU,
    MPI,
    SINGLE_THREAD_INIT,
    build_config,
    cores,
    htex,
    join_init,
    mpi_executor,
    one_node_ranks,
)

__all__ = [
    "DEFAULT_SITE",
    "EXECUTOR_LABELS",
    "SITES",
    "check_ranks",
    "has_gpu_executor",
    "load_site",
    "local_config",
    "local_mpi_slots",
    "node_cores",
    "pbs_config",
    "rank_placement",
    "run_parsl",
    "site_names",
    "slurm_config",
    "threads_config",
    "workload_site",
]

logger = logging.getLogger(__name__)

#: The site used when none is named.
DEFAULT_SITE = "local"

def threads_config(
    *, run_dir: str | os.PathLike = "runinfo", max_threads: int | None = None, gpu: bool = False
) -> Config:
    """Return a thread-pool configuration, for tests.

    Parameters
    ----------
    run_dir : str or path-like, optional
        Parsl's run directory. Default ``"runinfo"``.
    max_threads : int, optional
        Threads of the ``"cpu"`` executor. Default: the number of cores.
    gpu : bool, optional
        Also add a one-thread executor ``"gpu"``, to test workflows that use it.

    Returns
    -------
    parsl.config.Config
        A ThreadPoolExecutor labelled ``"cpu"`` (and ``"gpu"``).

    Notes
    -----
    Threads share one process: they never pickle arguments or results, and two
    LAMMPS instances must never run in two threads at once. Use this site to test the
    wiring of an app graph, and ``local`` to test that it really runs.
    """
    executors = [ThreadPoolExecutor(label=CPU, max_threads=max_threads or cores())]
    if gpu:
        executors.append(ThreadPoolExecutor(label=GPU, max_threads=1))
    return build_config(executors, run_dir)


def local_config(
    *,
    run_dir: str | os.PathLike = "runinfo",
    gpu: bool = False,
    max_workers: int | None = None,
    worker_init: str = "",
    mpi: int = 0,
) -> Config:
    """Return the configuration for this machine (the default site).

    Parameters
    ----------
    run_dir : str or path-like, optional
        Parsl's run directory. Default ``"runinfo"``.
    gpu : bool, optional
        Add an executor ``"gpu"`` with one worker, for the learner. The GPU is not
        probed (that would import torch here); say ``gpu=True`` when there is one.
        The worker inherits ``CUDA_VISIBLE_DEVICES`` from this process.
    max_workers : int, optional
        Workers of ``"cpu"``. Default: one per core, ``os.cpu_count()``; more than
        the cores share them (``cores_per_worker`` below 1).
    worker_init : str, optional
        Shell lines run before the worker pools start.
    mpi : int, optional
        With N > 0 (or True: 1), add the executor ``"mpi"`` (Parsl's MPIExecutor) for
        apps of several MPI ranks, N at a time on this machine (:func:`local_mpi_slots`).
        Parsl's MPI mode takes its nodes from a batch job's node list; here that is a
        node file naming this host N times (each app of one node takes one line),
        given to the pool as ``PBS_NODEFILE``, and the ranks start with hydra's fork
        launcher (:func:`rank_placement`). Default 0: none.

    Returns
    -------
    parsl.config.Config
        A HighThroughputExecutor ``"cpu"`` (and ``"gpu"``, ``"mpi"``) on a
        LocalProvider that listens on 127.0.0.1 only.

    Notes
    -----
    One worker per core, each a separate process with its own LAMMPS instance
    (LAMMPS is not thread-safe) and ``OMP_NUM_THREADS=1``. The worker pools run
    ``process_worker_pool.py`` from the environment of this Python interpreter, so
    they work even when that environment is not activated. HighThroughputExecutor
    takes a few seconds to start.
    """
    bin_dir = os.path.dirname(sys.executable)
    env_init = f'export PATH="{bin_dir}:$PATH"'
    workers = max_workers or cores()
    executors = [
        htex(
            CPU,
            address="127.0.0.1",
            # more workers than cores share them (HTEX would otherwise start one per core only)
            cores_per_worker=1 if workers <= cores() else cores() / (workers + 0.5),
            max_workers_per_node=workers,
            provider=LocalProvider(
                init_blocks=1,
                min_blocks=1,
                max_blocks=1,
                worker_init=join_init(env_init, worker_init, SINGLE_THREAD_INIT),
            ),
        )
    ]
    if gpu:
        executors.append(
            htex(
                GPU,
                address="127.0.0.1",
                cores_per_worker=1,
                max_workers_per_node=1,
                provider=LocalProvider(
                    init_blocks=1,
                    min_blocks=1,
                    max_blocks=1,
                    worker_init=join_init(env_init, worker_init),
                ),
            )
        )
    slots = int(mpi)
    if slots > 0:
        nodefile = Path(os.path.abspath(os.fspath(run_dir))) / "mpi_nodefile"
        nodefile.parent.mkdir(parents=True, exist_ok=True)
        nodefile.write_text((socket.gethostname() + "\n") * slots)
        provider = LocalProvider(init_blocks=0, min_blocks=0, max_blocks=1, launcher=SimpleLauncher(),
                                 worker_init=join_init(env_init, worker_init, SINGLE_THREAD_INIT,
                                                       f'export PBS_NODEFILE="{nodefile}"'))
        executors.append(mpi_executor(provider, address="127.0.0.1", workers=slots))
    return build_config(executors, run_dir)


SITES: dict[str, Callable[..., Config]] = {
    "threads": threads_config,
    "local": local_config,
    "slurm": slurm_config,
    "pbs": pbs_config,
}


def site_names() -> list[str]:
    """Return the names of the built-in sites, default first.

    Returns
    -------
    list of str
        ``["local", "threads", "slurm", "pbs"]``.
    """
    return [DEFAULT_SITE] + [name for name in SITES if name != DEFAULT_SITE]


def local_mpi_slots(ranks: int) -> int:
    """Apps of ``ranks`` MPI ranks that the ``local`` site runs at once: as many as fit
    this machine's cores, at least one (then sharing the cores); 0 for single-rank apps,
    which need no ``"mpi"`` executor."""
    return 0 if int(ranks) <= 1 else max(1, cores() // int(ranks))


def workload_site(site: str, run_dir: str, *, actors: int, workers: int, gpu: bool = True,
                  actors_hint: str = "map.actors = 1", mpi_ranks: int = 1) -> Config:
    """A fresh Parsl config for ``actors`` MAP actors (and other apps) on ``site``.

    On the built-in ``local`` site the learner gets its own executor (``"gpu"``, one
    worker: a dedicated process, on the GPU when torch sees one) when ``gpu``, and
    ``"cpu"`` has ``workers`` workers (callers ask for at least one per actor; more than
    the cores oversubscribes them, on purpose on a small machine). ``threads`` runs one
    app at a time (LAMMPS instances must not share a process) and refuses more than one
    actor, naming ``actors_hint`` as the fix. With ``mpi_ranks`` above 1 (the most
    ranks of any app to run), ``local`` also gets the executor ``"mpi"``
    (:func:`local_config`, :func:`local_mpi_slots`). Other sites are used as they are.
    """
    if site == "local":
        return load_site(site, run_dir=run_dir, gpu=gpu, max_workers=max(int(workers), int(actors), 1),
                         mpi=local_mpi_slots(mpi_ranks))
    if site == "threads":
        if actors > 1:
            raise InputError(f"the threads site runs one LAMMPS at a time: set {actors_hint} or use the local site")
        return load_site(site, run_dir=run_dir, gpu=True, max_threads=1)
    return load_site(site, run_dir=run_dir)


def node_cores(config: Config) -> int | None:
    """Cores of one node of the ``"cpu"`` executor of ``config``, or None when the site does not say.

    This machine's cores for thread pools and local providers; ``cores_per_node`` of a
    batch provider (Slurm, PBS) when the site file sets it.
    """
    from parsl.providers import LocalProvider  # noqa: PLC0415

    for executor in config.executors:
        if getattr(executor, "label", None) != CPU:
            continue
        provider = getattr(executor, "provider", None)
        if provider is None or isinstance(provider, LocalProvider):
            return cores()
        return getattr(provider, "cores_per_node", None)
    return None


def check_ranks(config: Config, ranks: int, *, key: str = "cvd.ranks_per_run") -> None:
    """Refuse, in one line, MPI runs of more ranks than one node of the site has cores.

    Raises
    ------
    InputError
        ``ranks`` is above :func:`node_cores` of ``config`` (unknown cores pass).
    """
    have = node_cores(config)
    if have is not None and int(ranks) > have:
        raise InputError(f"{key} = {int(ranks)} is more than the {have} cores of a node of this site: "
                         f"set it to {have} or fewer")


def rank_placement(config: Config, ranks: int) -> tuple[list[str], dict]:
    """Where an app of ``ranks`` MPI ranks goes, and the keywords it is called with.

    Returns
    -------
    executors : list of str
        ``["mpi"]`` for more than one rank on a site that has that executor (a cluster
        site with ``mpi_nodes``, or ``local`` with ``mpi``), else ``["cpu"]`` (the app
        then starts its own ``mpiexec`` on its worker's node).
    kwargs : dict
        ``parsl_resource_specification`` (one node, ``ranks`` ranks) for ``"mpi"``, else empty.
    """
    mpi = [ex for ex in config.executors if getattr(ex, "label", None) == MPI]
    if int(ranks) > 1 and mpi:
        spec = one_node_ranks(ranks)
        if isinstance(mpi[0].provider, LocalProvider):  # this machine: no remote shell to start ranks with
            spec["launcher_options"] = "-launcher fork"
        return [MPI], {"parsl_resource_specification": spec}
    return [CPU], {}


def has_gpu_executor(config: Config) -> bool:
    """Say whether a configuration has an executor labelled ``"gpu"``.

    Parameters
    ----------
    config : parsl.config.Config
        A site configuration.

    Returns
    -------
    bool
        True when apps can be sent to ``executors=["gpu"]``.
    """
    return any(getattr(ex, "label", None) == GPU for ex in config.executors)


def _known() -> str:
    """Return the one-line hint listing the built-in site names."""
    return (
        f"known sites: {', '.join(site_names())}; "
        "or the path of a Python file that defines fresh_config(**options)"
    )


def _load_site_file(path: Path) -> Callable[..., Config]:
    """Import a user's site file and return its ``fresh_config``.

    Parameters
    ----------
    path : pathlib.Path
        An existing Python file.

    Returns
    -------
    callable
        The file's ``fresh_config``.

    Raises
    ------
    mapcvd.errors.InputError
        The file cannot be imported or defines no callable ``fresh_config``.
    """
    module_name = f"mapcvd_site_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"site file {path} is not a Python file; {_known()}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is bad input
        raise InputError(f"site file {path} failed to load: {one_line(exc)}") from exc
    factory = getattr(module, "fresh_config", None)
    if not callable(factory):
        raise InputError(f"site file {path} defines no fresh_config(**options); {_known()}")
    return factory


def load_site(name_or_path: str | os.PathLike = DEFAULT_SITE, *, check: bool = True, **options) -> Config:
    """Build a fresh Parsl configuration for a site.

    Parameters
    ----------
    name_or_path : str or path-like, optional
        A built-in site name (:func:`site_names`; the names win over files of the
        same name) or the path of a Python file that defines
        ``fresh_config(**options) -> parsl.config.Config``. Default ``"local"``.
    check : bool, optional
        Ask the batch scheduler whether what the configuration requests exists (the
        partitions of Slurm blocks, :func:`~mapcvd.workflows.cluster_sites.check_cluster_config`),
        so that a bad partition fails here, before any work. Default True; False only
        builds the configuration (tests, or a machine without the scheduler).
    **options
        Keyword options passed to the factory (``run_dir``, ``gpu``, ``partition``,
        ...).

    Returns
    -------
    parsl.config.Config
        A new, not yet loaded configuration with an executor labelled ``"cpu"``.

    Raises
    ------
    mapcvd.errors.InputError
        Unknown name, missing file, a file without ``fresh_config``, an option the
        factory does not take, or a factory that fails or returns no ``Config``,
        or no executor labelled ``"cpu"``. The one-line message lists the known
        site names. With ``check``: a Slurm partition that does not exist, or a
        Slurm whose ``sinfo`` is missing or does not answer.
    """
    name = os.fspath(name_or_path)
    if name in SITES:
        factory = SITES[name]
        where = f"site {name!r}"
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            if path.suffix == ".py" or os.sep in name or (os.altsep and os.altsep in name):
                raise InputError(f"site file {name} not found; {_known()}")
            raise InputError(f"unknown site {name!r}; {_known()}")
        factory = _load_site_file(path)
        where = f"site file {path}"
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise InputError(f"{where} does not accept these options: {one_line(exc)}") from exc
    except ValueError:  # no signature available (builtins): let the call decide
        pass
    try:
        config = factory(**options)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing user factory is bad input
        raise InputError(f"{where} failed to build a config: {one_line(exc)}") from exc
    if not isinstance(config, Config):
        raise InputError(
            f"{where}: fresh_config returned {type(config).__name__}, "
            f"not a parsl.config.Config; {_known()}"
        )
    labels = [getattr(ex, "label", None) for ex in config.executors]
    if CPU not in labels:
        raise InputError(f"{where} has no executor labelled 'cpu' (labels: {labels})")
    if check:
        check_cluster_config(config)
    return config
