"""Parsl sites on batch clusters: Slurm (``slurm``) and PBS Pro (``pbs``).

``"cpu"``: whole nodes from the scheduler, one worker pool per node, one worker per
core (each worker owns one serial LAMMPS: LAMMPS is not thread-safe, so the process is
the unit of parallelism, with ``OMP_NUM_THREADS=1``). ``"gpu"``: a separate block, one
worker per GPU, requested only when a GPU task waits. What to put in ``worker_init``
and how to size blocks on a real machine is explained, with a working example, in the
site files ``configs/sites/slurm_example.py`` and ``configs/sites/pbs_example.py``.

:func:`check_cluster_config` asks Slurm (``sinfo``) whether the partitions of a
configuration exist; :func:`~mapcvd.workflows.sites.load_site` calls it, so that a bad
partition is a one-line error before any work.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from parsl.config import Config
from parsl.launchers import MpiExecLauncher, SimpleLauncher, SrunLauncher
from parsl.providers import PBSProProvider, SlurmProvider

from mapcvd.errors import InputError
from mapcvd.workflows.site_common import CPU, GPU, SINGLE_THREAD_INIT, build_config, htex, join_init, mpi_executor

__all__ = ["check_cluster_config", "check_slurm_partitions", "cluster_executors", "pbs_config", "slurm_config",
           "slurm_partitions"]

logger = logging.getLogger(__name__)

#: Block settings of a cluster's ``"cpu"`` executor (``max_blocks`` is an option).
CPU_BLOCKS = dict(init_blocks=1, min_blocks=0)
#: Block settings of a cluster's ``"gpu"`` executor: one node, requested only when a
#: GPU task waits.
GPU_BLOCKS = dict(nodes_per_block=1, init_blocks=0, min_blocks=0, max_blocks=1)
#: Seconds that ``sinfo`` gets to answer (it retries for a minute when it finds no
#: configuration).
SINFO_TIMEOUT_S = 20.0


def cluster_executors(cpu_provider, gpu_provider, address, cores_per_node, gpus_per_node) -> list:
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
        htex(
            CPU,
            address=address,
            cores_per_worker=1,
            max_workers_per_node=cores_per_node,
            provider=cpu_provider,
        )
    ]
    if gpu_provider is not None:
        executors.append(
            htex(
                GPU,
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
    mpi_nodes: int = 0,
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
    mpi_nodes : int, optional
        With N > 0, add the executor ``"mpi"`` (Parsl's MPIExecutor): a block of N
        exclusive nodes in ``partition``, requested only when a multi-rank app waits,
        running one such app per node at a time; reactive-MD runs, MAP actors and
        NEB bands of more than one rank (``cvd.ranks_per_run``, ``map.ranks_per_actor``,
        ``map.neb_driver = "lammps"``) go there, with Parsl's ``$PARSL_MPI_PREFIX``.
        Default 0: none, and multi-rank apps start their own ``mpiexec`` on a ``"cpu"``
        worker's node.
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
        task is waiting (``init_blocks=0``). ``"mpi"`` with ``mpi_nodes``.

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
        worker_init=join_init(worker_init, SINGLE_THREAD_INIT),
        launcher=srun(cores_per_node),
        **CPU_BLOCKS,
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
            **GPU_BLOCKS,
            **common,
        )
    executors = cluster_executors(cpu_provider, gpu_provider, address, cores_per_node, gpus_per_node)
    if mpi_nodes > 0:
        mpi_provider = SlurmProvider(partition=partition, walltime=walltime, nodes_per_block=int(mpi_nodes),
                                     init_blocks=0, min_blocks=0, max_blocks=1, cores_per_node=cores_per_node,
                                     exclusive=True, worker_init=join_init(worker_init, SINGLE_THREAD_INIT),
                                     launcher=SimpleLauncher(), **common)
        executors.append(mpi_executor(mpi_provider, address=address, workers=int(mpi_nodes)))
    return build_config(executors, run_dir)


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
    mpi_nodes: int = 0,
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
    mpi_nodes : int, optional
        With N > 0, add the executor ``"mpi"`` (Parsl's MPIExecutor) as in
        :func:`slurm_config`: a block of N nodes of ``partition`` (``select=N:ncpus=C``
        with ``select_options``; its worker pool starts on the first node with Parsl's
        SimpleLauncher and reads the nodes from ``$PBS_NODEFILE``), requested only when a
        multi-rank app waits, one such app per node at a time. Not yet run against a
        real PBS. Default 0: none.
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
        task is waiting (``init_blocks=0``). ``"mpi"`` with ``mpi_nodes``.
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
        worker_init=join_init(worker_init, SINGLE_THREAD_INIT),
        launcher=mpiexec(),
        **CPU_BLOCKS,
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
            **GPU_BLOCKS,
            **common,
        )
    executors = cluster_executors(cpu_provider, gpu_provider, address, cores_per_node, gpus_per_node)
    if mpi_nodes > 0:
        mpi_provider = PBSProProvider(queue=partition, walltime=walltime, nodes_per_block=int(mpi_nodes),
                                      init_blocks=0, min_blocks=0, max_blocks=1, cpus_per_node=cores_per_node or 1,
                                      select_options=select_options,
                                      worker_init=join_init(worker_init, SINGLE_THREAD_INIT),
                                      launcher=SimpleLauncher(), **common)
        executors.append(mpi_executor(mpi_provider, address=address, workers=int(mpi_nodes)))
    return build_config(executors, run_dir)


def slurm_partitions(timeout: float | None = None) -> list[str]:
    """The partitions of this Slurm cluster, as ``sinfo --all`` lists them.

    Parameters
    ----------
    timeout : float, optional
        Seconds ``sinfo`` gets to answer. Default :data:`SINFO_TIMEOUT_S`.

    Returns
    -------
    list of str
        Partition names, sorted (hidden ones included; the default one without ``*``).

    Raises
    ------
    mapcvd.errors.InputError
        ``sinfo`` is not on ``PATH`` (not a Slurm host), fails, or does not answer
        within ``timeout`` (slurmctld down, a wrong ``SLURM_CONF``).
    """
    timeout = SINFO_TIMEOUT_S if timeout is None else timeout
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        raise InputError("slurm site: the Slurm command 'sinfo' is not on PATH, so the site cannot be checked or "
                         "used: run on a Slurm login node (or load the Slurm module)")
    try:
        done = subprocess.run([sinfo, "--all", "--noheader", "--format=%R"], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise InputError(f"slurm site: 'sinfo' did not answer within {timeout:g} s "
                         "(is slurmctld up, and SLURM_CONF right?)") from None
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[:300]
        raise InputError(f"slurm site: 'sinfo' failed (exit {done.returncode}): {said}")
    return sorted({line.strip() for line in done.stdout.splitlines() if line.strip()})


def check_slurm_partitions(partitions, timeout: float | None = None) -> None:
    """Refuse partitions that this Slurm cluster does not have, before any job is submitted.

    Parameters
    ----------
    partitions : iterable of str or None
        Partitions a site asks for; None and empty entries (Slurm's default partition)
        are skipped, and ``"a,b"`` (Slurm's list) means both.
    timeout : float, optional
        Seconds ``sinfo`` gets to answer. Default :data:`SINFO_TIMEOUT_S`.

    Raises
    ------
    mapcvd.errors.InputError
        One line naming the missing partitions and those that exist, or why ``sinfo``
        could not tell (:func:`slurm_partitions`); also without any partition named,
        since a Slurm site cannot work where ``sinfo`` does not.
    """
    wanted = list(dict.fromkeys(p.strip() for entry in partitions if entry for p in entry.split(",") if p.strip()))
    known = slurm_partitions(timeout)
    missing = [p for p in wanted if p not in known]
    if missing:
        names = ", ".join(repr(p) for p in missing)
        raise InputError(f"slurm site: partition {names} does not exist on this cluster "
                         f"(sinfo lists: {', '.join(known) or 'no partition'})")


def check_cluster_config(config: Config, timeout: float | None = None) -> None:
    """Ask the batch scheduler whether the blocks of ``config`` can be submitted as configured.

    Checks the partitions of every SlurmProvider (:func:`check_slurm_partitions`);
    configurations without one (``local``, ``threads``, ``pbs``) pass unchecked.

    Parameters
    ----------
    config : parsl.config.Config
        A site configuration, not yet loaded.
    timeout : float, optional
        Seconds the scheduler's command gets to answer. Default :data:`SINFO_TIMEOUT_S`.

    Raises
    ------
    mapcvd.errors.InputError
        A partition that does not exist, or a Slurm that does not answer.
    """
    providers = [ex.provider for ex in config.executors if isinstance(getattr(ex, "provider", None), SlurmProvider)]
    if providers:
        check_slurm_partitions([p.partition for p in providers], timeout)


#: Site name -> factory ``fresh_config(**options) -> Config``.
