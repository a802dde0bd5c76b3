"""Example site file for a PBS Pro cluster: copy it, edit it, pass its path.

Use::

    cp configs/sites/pbs_example.py ~/mysite.py       # then edit the values below
    mapcvd campaign run --site ~/mysite.py

or from Python::

    from mapcvd.workflows.sites import load_site, run_parsl
    with run_parsl(load_site("/home/me/mysite.py", max_blocks=4)) as dfk:
        ...

mapcvd imports this file and calls ``fresh_config(**options)``; the options given on
the command line or in Python override the values set here. It must return a new
``parsl.config.Config`` on every call (a loaded Config cannot be reused).

What gets started
-----------------
``"cpu"``
    Batch jobs ("blocks") of ``nodes_per_block`` nodes from queue ``partition``, one
    worker pool per node started by ``mpiexec``; one worker process per core, each
    with its own serial LAMMPS instance (LAMMPS is not thread-safe;
    ``OMP_NUM_THREADS=1`` is set for these workers).
``"gpu"``
    One node with ``gpus_per_node`` GPUs (``select=1:ncpus=...:ngpus=...``), one worker
    per GPU, requested when the first GPU task (the learner) is waiting.
``"mpi"`` (with ``mpi_nodes`` N > 0)
    Parsl's MPIExecutor: one batch job of N nodes (``select=N:ncpus=...``), requested
    when the first app of several MPI ranks waits (``[cvd] ranks_per_run`` or ``[map]
    ranks_per_actor`` above 1, or ``[map] neb_driver = "lammps"``, one rank per band
    image), one such app per node at a time, its ranks started by Parsl's
    ``$PARSL_MPI_PREFIX`` from ``$PBS_NODEFILE``. Not yet run against a real PBS.

Edit before use
---------------
* ``partition`` (the PBS queue), ``gpu_partition``, ``account`` (``#PBS -A``).
* ``cores_per_node``: PBS grants only the ``ncpus`` asked for; one worker per core.
* ``worker_init``: runs on the compute node before the workers start. Load the modules
  your environment was built with and activate the environment where mapcvd is
  installed, so that ``process_worker_pool.py``, mapcvd and LAMMPS are found.
* ``mpiexec_bind_cmd`` / ``mpiexec_overrides``: how your ``mpiexec`` starts one
  process per node. MPICH (hydra): ``"--bind-to"`` / ``"--ppn 1"``; Cray PALS:
  ``"--cpu-bind"`` / ``"--ppn 1"``; Open MPI: ``"--bind-to"`` /
  ``"--map-by ppr:1:node"``.
* ``scheduler_options``: site-specific ``#PBS`` lines (file systems, placement).
* ``walltime``: a block that reaches it is killed with its tasks; a running LAMMPS
  ``run`` cannot be interrupted, so leave room for the longest task.
"""

from mapcvd.workflows.sites import pbs_config

#: The values of this site; every one can be overridden by an option.
DEFAULTS = dict(
    partition="workq",  # PBS queue for the CPU blocks (placeholder)
    account="MY_PROJECT",  # project to charge (placeholder)
    walltime="04:00:00",
    nodes_per_block=2,
    max_blocks=4,
    cores_per_node=64,  # ncpus per node: one worker (one LAMMPS) per core
    worker_init=(
        "module load gcc/12.2 cray-mpich; "
        "source /path/to/venv/bin/activate"
    ),
    scheduler_options="#PBS -l place=scatter:excl",  # whole nodes, one chunk each
    mpiexec_bind_cmd="--bind-to",
    mpiexec_overrides="--ppn 1",
    gpu=True,
    gpu_partition="gpuq",  # PBS queue with GPU nodes (placeholder)
    gpus_per_node=1,
    gpu_cores_per_node=8,
    gpu_walltime="04:00:00",
    mpi_nodes=0,  # nodes of the "mpi" block for multi-rank apps (0: none)
    run_dir="runinfo",
)


def fresh_config(**options):
    """Return a new Parsl configuration for this cluster.

    Parameters
    ----------
    **options
        Overrides of :data:`DEFAULTS`; any keyword of
        :func:`mapcvd.workflows.sites.pbs_config`.

    Returns
    -------
    parsl.config.Config
        Executors ``"cpu"`` and ``"gpu"`` (unless ``gpu=False``).
    """
    return pbs_config(**{**DEFAULTS, **options})
