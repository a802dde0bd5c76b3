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

``worker_init`` on clusters
---------------------------
On a cluster the worker pools start on compute nodes in a fresh batch-job shell. The
``worker_init`` string runs first in that shell: load the modules the environment
needs and activate the Python environment in which ``mapcvd`` is installed, for
example ``"module load gcc/12 openmpi; source /path/to/venv/bin/activate"``, so that
``process_worker_pool.py``, ``mapcvd`` and LAMMPS are found there. Set
``cores_per_node`` too: Parsl then asks Slurm for the cores explicitly and starts
exactly that many workers, instead of guessing from what the node reports
(hyper-threads included).

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
import sys
from pathlib import Path
from typing import Callable

from parsl.config import Config
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
from parsl.launchers import MpiExecLauncher, SrunLauncher
from parsl.providers import LocalProvider, PBSProProvider, SlurmProvider

from mapcvd.errors import InputError, one_line
from mapcvd.workflows.parsl_runtime import run_parsl

__all__ = [
    "DEFAULT_SITE",
    "EXECUTOR_LABELS",
    "SITES",
    "has_gpu_executor",
    "load_site",
    "local_config",
    "pbs_config",
    "run_parsl",
    "site_names",
    "slurm_config",
    "threads_config",
]

logger = logging.getLogger(__name__)

#: The executor labels that workflows target: ``"cpu"`` on every site, ``"gpu"``
#: where the site has one (see :func:`has_gpu_executor`).
EXECUTOR_LABELS: tuple[str, str] = ("cpu", "gpu")
CPU, GPU = EXECUTOR_LABELS

#: The site used when none is named.
DEFAULT_SITE = "local"

#: Shell lines run before every ``"cpu"`` worker pool: one thread per worker.
_SINGLE_THREAD_INIT = "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1"
#: Milliseconds between the polls of Parsl's interchange and worker pools. Parsl's
#: default, 10 ms, kept them busy: 1.2% of the laptop demo's CPU, 0.4% at 100 ms
#: (benchmarks/campaign_overhead.py); mapcvd's tasks run seconds to hours, so 100 ms
#: more latency per task costs nothing.
POLL_MS = 100


def _cores() -> int:
    """Return the number of cores of this machine (at least 1)."""
    return os.cpu_count() or 1


def _interchange_cmd() -> list[str] | None:
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


def _join_init(*parts: str | None) -> str:
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


def _config(executors: list, run_dir: str | os.PathLike) -> Config:
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
    executors = [ThreadPoolExecutor(label=CPU, max_threads=max_threads or _cores())]
    if gpu:
        executors.append(ThreadPoolExecutor(label=GPU, max_threads=1))
    return _config(executors, run_dir)


def local_config(
    *,
    run_dir: str | os.PathLike = "runinfo",
    gpu: bool = False,
    max_workers: int | None = None,
    worker_init: str = "",
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

    Returns
    -------
    parsl.config.Config
        A HighThroughputExecutor ``"cpu"`` (and ``"gpu"``) on a LocalProvider that
        listens on 127.0.0.1 only.

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
    workers = max_workers or _cores()
    executors = [
        HighThroughputExecutor(
            poll_period=POLL_MS,
            label=CPU,
            interchange_launch_cmd=_interchange_cmd(),
            address="127.0.0.1",
            # more workers than cores share them (HTEX would otherwise start one per core only)
            cores_per_worker=1 if workers <= _cores() else _cores() / (workers + 0.5),
            max_workers_per_node=workers,
            provider=LocalProvider(
                init_blocks=1,
                min_blocks=1,
                max_blocks=1,
                worker_init=_join_init(env_init, worker_init, _SINGLE_THREAD_INIT),
            ),
        )
    ]
    if gpu:
        executors.append(
            HighThroughputExecutor(
                poll_period=POLL_MS,
                label=GPU,
                interchange_launch_cmd=_interchange_cmd(),
                address="127.0.0.1",
                cores_per_worker=1,
                max_workers_per_node=1,
                provider=LocalProvider(
                    init_blocks=1,
                    min_blocks=1,
                    max_blocks=1,
                    worker_init=_join_init(env_init, worker_init),
                ),
            )
        )
    return _config(executors, run_dir)


#: Block settings of a cluster's ``"cpu"`` executor (``max_blocks`` is an option).
_CPU_BLOCKS = dict(init_blocks=1, min_blocks=0)
#: Block settings of a cluster's ``"gpu"`` executor: one node, requested only when a
#: GPU task waits.
_GPU_BLOCKS = dict(nodes_per_block=1, init_blocks=0, min_blocks=0, max_blocks=1)


def _cluster_executors(cpu_provider, gpu_provider, address, cores_per_node, gpus_per_node) -> list:
    """The ``"cpu"`` executor (one worker per core) and, with a GPU provider, ``"gpu"``.

    Parameters
    ----------
    cpu_provider, gpu_provider : parsl.providers.base.ExecutionProvider
        Providers of the two executors; ``gpu_provider`` None leaves ``"gpu"`` out.
    address : str or None
        Address of the submitting host that compute nodes can reach.
    cores_per_node : int or None
        Workers per CPU node (None: what the node reports).
    gpus_per_node : int
        GPUs of the GPU block; one worker per GPU.

    Returns
    -------
    list of parsl.executors.HighThroughputExecutor
    """
    executors = [
        HighThroughputExecutor(
            poll_period=POLL_MS,
            label=CPU,
            interchange_launch_cmd=_interchange_cmd(),
            address=address,
            cores_per_worker=1,
            max_workers_per_node=cores_per_node,
            provider=cpu_provider,
        )
    ]
    if gpu_provider is not None:
        executors.append(
            HighThroughputExecutor(
                poll_period=POLL_MS,
                label=GPU,
                interchange_launch_cmd=_interchange_cmd(),
                address=address,
                available_accelerators=gpus_per_node,
                max_workers_per_node=gpus_per_node,
                provider=gpu_provider,
            )
        )
    return executors


def slurm_config(
    *,
    partition: str | None = None,
    account: str | None = None,
    walltime: str = "01:00:00",
    nodes_per_block: int = 1,
    max_blocks: int = 1,
    worker_init: str = "",
    cores_per_node: int | None = None,
    scheduler_options: str = "",
    gpu: bool = True,
    gpu_partition: str | None = None,
    gpus_per_node: int = 1,
    gpu_cores_per_node: int | None = None,
    gpu_walltime: str | None = None,
    address: str | None = None,
    run_dir: str | os.PathLike = "runinfo",
) -> Config:
    """Return a configuration for a Slurm cluster.

    Parameters
    ----------
    partition : str, optional
        Partition of the CPU blocks (the actors and MD runs).
    account : str, optional
        Account (allocation) charged, for both executors.
    walltime : str, optional
        Walltime of each block, ``"HH:MM:SS"``. A block that reaches it is killed
        with its tasks: a running LAMMPS ``run`` cannot be interrupted, so leave room.
    nodes_per_block : int, optional
        Nodes per batch job of ``"cpu"``.
    max_blocks : int, optional
        Most batch jobs of ``"cpu"`` at a time.
    worker_init : str, optional
        Shell lines run on the compute node before the worker pool starts: load
        modules and activate the environment, e.g.
        ``"module load gcc openmpi; source /path/to/venv/bin/activate"``.
    cores_per_node : int, optional
        Physical cores per node: workers per node, and ``--cpus-per-task`` for the
        pool. Default: what the node reports.
    scheduler_options : str, optional
        Extra ``#SBATCH`` lines for both executors (qos, constraint, ...).
    gpu : bool, optional
        Add the executor ``"gpu"``. Default True.
    gpu_partition : str, optional
        Partition of the GPU block. Default: ``partition``.
    gpus_per_node : int, optional
        GPUs of the GPU block; one worker per GPU.
    gpu_cores_per_node : int, optional
        Cores asked for with the GPU block (the learner's data loading). Default:
        Slurm's default for one task.
    gpu_walltime : str, optional
        Walltime of the GPU block. Default: ``walltime``.
    address : str, optional
        Address of this (submitting) host that compute nodes can reach. Default:
        Parsl tries all addresses of this host.
    run_dir : str or path-like, optional
        Parsl's run directory (submit scripts and logs land there).

    Returns
    -------
    parsl.config.Config
        ``"cpu"``: HighThroughputExecutor, SlurmProvider with SrunLauncher, exclusive
        nodes, one worker per core. ``"gpu"``: HighThroughputExecutor with
        ``available_accelerators=gpus_per_node``, one node, requested only when a GPU
        task is waiting (``init_blocks=0``).

    Notes
    -----
    Building this config submits nothing, but Parsl's SlurmProvider runs
    ``sacct -X`` once to choose how it polls job status.
    """
    def srun(cores: int | None) -> SrunLauncher:
        return SrunLauncher(overrides=f"--cpus-per-task={cores}" if cores else "")

    common = dict(account=account, scheduler_options=scheduler_options)
    cpu_provider = SlurmProvider(
        partition=partition,
        walltime=walltime,
        nodes_per_block=nodes_per_block,
        max_blocks=max_blocks,
        cores_per_node=cores_per_node,
        exclusive=True,
        worker_init=_join_init(worker_init, _SINGLE_THREAD_INIT),
        launcher=srun(cores_per_node),
        **_CPU_BLOCKS,
        **common,
    )
    gpu_provider = None
    if gpu:
        gpu_provider = SlurmProvider(
            partition=gpu_partition or partition,
            walltime=gpu_walltime or walltime,
            gpus_per_node=gpus_per_node,
            cores_per_node=gpu_cores_per_node,
            exclusive=False,
            worker_init=worker_init,
            launcher=srun(gpu_cores_per_node),
            **_GPU_BLOCKS,
            **common,
        )
    executors = _cluster_executors(cpu_provider, gpu_provider, address, cores_per_node, gpus_per_node)
    return _config(executors, run_dir)


def pbs_config(
    *,
    partition: str | None = None,
    account: str | None = None,
    walltime: str = "01:00:00",
    nodes_per_block: int = 1,
    max_blocks: int = 1,
    worker_init: str = "",
    cores_per_node: int | None = None,
    scheduler_options: str = "",
    select_options: str = "",
    mpiexec_bind_cmd: str = "--bind-to",
    mpiexec_overrides: str = "--ppn 1",
    gpu: bool = True,
    gpu_partition: str | None = None,
    gpus_per_node: int = 1,
    gpu_cores_per_node: int | None = None,
    gpu_walltime: str | None = None,
    address: str | None = None,
    run_dir: str | os.PathLike = "runinfo",
) -> Config:
    """Return a configuration for a PBS Pro cluster.

    The options mirror :func:`slurm_config`, so that one set fits both; PBS calls a
    partition a queue.

    Parameters
    ----------
    partition : str, optional
        Queue of the CPU blocks (``#PBS -q``).
    account : str, optional
        Project charged (``#PBS -A``), for both executors.
    walltime : str, optional
        Walltime of each block, ``"HH:MM:SS"``. A block that reaches it is killed
        with its tasks: a running LAMMPS ``run`` cannot be interrupted, so leave room.
    nodes_per_block : int, optional
        Nodes per batch job of ``"cpu"``.
    max_blocks : int, optional
        Most batch jobs of ``"cpu"`` at a time.
    worker_init : str, optional
        Shell lines run on the compute node before the worker pool starts: load
        modules and activate the environment, e.g.
        ``"module load cray-python; source /path/to/venv/bin/activate"``.
    cores_per_node : int, optional
        Cores per node: ``ncpus`` of the select statement and workers per node. Set
        it: PBS gives a job only the ``ncpus`` it asks for, and without it Parsl
        asks for ``ncpus=1``.
    scheduler_options : str, optional
        Extra ``#PBS`` lines for both executors (e.g. ``"#PBS -l filesystems=home"``).
    select_options : str, optional
        Appended to ``#PBS -l select=N:ncpus=C`` of the CPU blocks.
    mpiexec_bind_cmd : str, optional
        The ``mpiexec`` flag that is given ``none`` to switch off binding of the
        worker pool: ``"--bind-to"`` (MPICH, Open MPI) or ``"--cpu-bind"`` (Cray PALS).
    mpiexec_overrides : str, optional
        Extra ``mpiexec`` arguments that start one worker pool per node. The default
        ``"--ppn 1"`` suits MPICH and Cray PALS; with Open MPI use
        ``"--map-by ppr:1:node"``.
    gpu : bool, optional
        Add the executor ``"gpu"``. Default True.
    gpu_partition : str, optional
        Queue of the GPU block. Default: ``partition``.
    gpus_per_node : int, optional
        GPUs of the GPU block (``ngpus=`` in its select statement); one worker per GPU.
    gpu_cores_per_node : int, optional
        ``ncpus`` of the GPU block. Default: ``cores_per_node``, else 1.
    gpu_walltime : str, optional
        Walltime of the GPU block. Default: ``walltime``.
    address : str, optional
        Address of this host that compute nodes can reach. Default: Parsl tries all
        addresses of this host.
    run_dir : str or path-like, optional
        Parsl's run directory (submit scripts and logs land there).

    Returns
    -------
    parsl.config.Config
        ``"cpu"``: HighThroughputExecutor, PBSProProvider with MpiExecLauncher, one
        worker per core. ``"gpu"``: HighThroughputExecutor with
        ``available_accelerators=gpus_per_node``, one node, requested only when a GPU
        task is waiting (``init_blocks=0``).
    """
    if cores_per_node is None:
        logger.warning("pbs site without cores_per_node: each node is requested with ncpus=1")
    def mpiexec() -> MpiExecLauncher:
        return MpiExecLauncher(bind_cmd=mpiexec_bind_cmd, overrides=mpiexec_overrides)

    common = dict(account=account, scheduler_options=scheduler_options)
    cpu_provider = PBSProProvider(
        queue=partition,
        walltime=walltime,
        nodes_per_block=nodes_per_block,
        max_blocks=max_blocks,
        cpus_per_node=cores_per_node or 1,
        select_options=select_options,
        worker_init=_join_init(worker_init, _SINGLE_THREAD_INIT),
        launcher=mpiexec(),
        **_CPU_BLOCKS,
        **common,
    )
    gpu_provider = None
    if gpu:
        gpu_provider = PBSProProvider(
            queue=gpu_partition or partition,
            walltime=gpu_walltime or walltime,
            cpus_per_node=gpu_cores_per_node or cores_per_node or 1,
            select_options=f"ngpus={gpus_per_node}",
            worker_init=worker_init,
            launcher=mpiexec(),
            **_GPU_BLOCKS,
            **common,
        )
    executors = _cluster_executors(cpu_provider, gpu_provider, address, cores_per_node, gpus_per_node)
    return _config(executors, run_dir)


#: Site name -> factory ``fresh_config(**options) -> Config``.
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


def load_site(name_or_path: str | os.PathLike = DEFAULT_SITE, **options) -> Config:
    """Build a fresh Parsl configuration for a site.

    Parameters
    ----------
    name_or_path : str or path-like, optional
        A built-in site name (:func:`site_names`; the names win over files of the
        same name) or the path of a Python file that defines
        ``fresh_config(**options) -> parsl.config.Config``. Default ``"local"``.
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
        site names.
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
    return config
