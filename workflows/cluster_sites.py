"""Parsl sites on batch clusters: Slurm (``slurm``) and PBS Pro (``pbs``).

``"cpu"``: whole nodes from the scheduler, one worker pool per node, one worker per
core (each worker owns one serial LAMMPS: LAMMPS is not thread-safe, so the process is
the unit of parallelism, with ``OMP_NUM_THREADS=1``). ``"gpu"``: a separate block, one
worker per GPU, requested only when a GPU task waits. What to put in ``worker_init``
and how to size blocks on a real machine is explained, with a working example, in the
site files ``configs/sites/slurm_example.py`` and ``configs/sites/pbs_example.py``.
"""

from __future__ import annotations

import logging
import os

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import MpiExecLauncher, SrunLauncher
from parsl.providers import PBSProProvider, SlurmProvider

from mapcvd.workflows.site_common import CPU, GPU, POLL_MS, SINGLE_THREAD_INIT, build_config, interchange_cmd, join_init

__all__ = ["cluster_executors", "pbs_config", "slurm_config"]

logger = logging.getLogger(__name__)

#: Block settings of a cluster's ``"cpu"`` executor (``max_blocks`` is an option).
CPU_BLOCKS = dict(init_blocks=1, min_blocks=0)
#: Block settings of a cluster's ``"gpu"`` executor: one node, requested only when a
#: GPU task waits.
GPU_BLOCKS = dict(nodes_per_block=1, init_blocks=0, min_blocks=0, max_blocks=1)


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
        HighThroughputExecutor(
            poll_period=POLL_MS,
            label=CPU,
            interchange_launch_cmd=interchange_cmd(),
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
                interchange_launch_cmd=interchange_cmd(),
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
    return build_config(executors, run_dir)


#: Site name -> factory ``fresh_config(**options) -> Config``.
