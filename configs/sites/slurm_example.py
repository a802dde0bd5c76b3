"""Example site file for a Slurm cluster: copy it, edit it, pass its path.

Use::

    cp configs/sites/slurm_example.py ~/mysite.py     # then edit the values below
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
    Batch jobs ("blocks") of ``nodes_per_block`` whole nodes on ``partition``; one
    worker process per core, each with its own serial LAMMPS instance (LAMMPS is not
    thread-safe; ``OMP_NUM_THREADS=1`` is set for these workers). Actors, NEB
    segments and reactive-MD runs go here.
``"gpu"``
    One node on ``gpu_partition`` with ``gpus_per_node`` GPUs, one worker per GPU,
    requested when the first GPU task (the learner) is waiting.
``"mpi"`` (with ``mpi_nodes`` N > 0)
    Parsl's MPIExecutor: one batch job of N nodes, requested when the first app of
    several MPI ranks waits (``[cvd] ranks_per_run`` or ``[map] ranks_per_actor``
    above 1, or ``[map] neb_driver = "lammps"``, one rank per band image), one such
    app per node at a time, its ranks started by Parsl's ``$PARSL_MPI_PREFIX``.
    Without it those apps start their own ``mpiexec`` on a ``"cpu"`` worker's node.

Edit before use
---------------
* ``partition``, ``gpu_partition``, ``account``: as ``sinfo`` and your allocation say.
* ``cores_per_node``: physical cores per node (not hyper-threads): one worker each.
* ``worker_init``: runs on the compute node before the workers start. Load the modules
  your environment was built with and activate the environment where mapcvd is
  installed, so that ``process_worker_pool.py``, mapcvd and LAMMPS (with its MPI
  library) are found.
* ``walltime``: a block that reaches it is killed with its tasks; a running LAMMPS
  ``run`` cannot be interrupted, so leave room for the longest task.
* The workers connect back to the host that runs the campaign (usually a login
  node); if compute nodes reach it only on one network, set ``address``, e.g. with
  ``parsl.addresses.address_by_interface("ib0")``.
"""

from mapcvd.workflows.sites import slurm_config

#: The values of this site; every one can be overridden by an option.
DEFAULTS = dict(
    partition="compute",  # CPU partition (placeholder)
    account="my_allocation",  # Slurm account to charge (placeholder)
    walltime="04:00:00",
    nodes_per_block=2,  # nodes per batch job
    max_blocks=4,  # at most 4 batch jobs (8 nodes) at a time
    cores_per_node=64,  # physical cores per node: one worker (one LAMMPS) per core
    worker_init=(
        "module load gcc/12.2 openmpi/4.1; "
        "source /path/to/venv/bin/activate"
    ),
    scheduler_options="",  # extra '#SBATCH ...' lines, e.g. '#SBATCH --qos=normal'
    gpu=True,  # add the "gpu" executor for the learner
    gpu_partition="gpu",  # GPU partition (placeholder)
    gpus_per_node=1,  # one worker per GPU; the learner needs one
    gpu_cores_per_node=8,  # cores for the learner's data loading
    gpu_walltime="04:00:00",
    mpi_nodes=0,  # nodes of the "mpi" block for multi-rank apps (0: none)
    run_dir="runinfo",  # Parsl logs and submit scripts
)


def fresh_config(**options):
    """Return a new Parsl configuration for this cluster.

    Parameters
    ----------
    **options
        Overrides of :data:`DEFAULTS`; any keyword of
        :func:`mapcvd.workflows.sites.slurm_config`.

    Returns
    -------
    parsl.config.Config
        Executors ``"cpu"`` and ``"gpu"`` (unless ``gpu=False``).
    """
    return slurm_config(**{**DEFAULTS, **options})
