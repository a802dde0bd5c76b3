"""Taking a store for a new run: fencing off the earlier run and ending what it left.

:func:`claim_store` is how every command that writes a campaign store starts. It
reads the store's run record (:mod:`mapcvd.store.fence`) and

1. refuses, with one line, when the run that holds the store is still alive on this
   host (its driver PID is running and started when the record says);
2. takes a new run token, so that every writer of the earlier run stops at its next
   write, wherever it runs;
3. ends the Parsl processes the earlier run recorded on this host (its interchanges,
   checked by PID and start time, and the worker pools and workers found by its run
   directory), or, for a run of another host, waits
   :data:`~mapcvd.store.fence.SETTLE_SECONDS` for late writes;

and returns the store opened through a fenced store with the new token.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime
from pathlib import Path

from mapcvd.errors import InputError
from mapcvd.store.campaign import open_campaign
from mapcvd.store.fence import SETTLE_SECONDS, begin_run, driver_alive, read_run, same_process
from mapcvd.workflows.parsl_runtime import pool_processes, reap

__all__ = ["claim_store", "earlier_run_processes"]

logger = logging.getLogger(__name__)

#: Seconds processes of an earlier run get after SIGTERM before SIGKILL.
END_GRACE = 5.0


def earlier_run_processes(record: dict) -> list:
    """Processes on this host that the run of ``record`` started and that are still alive.

    Parameters
    ----------
    record : dict
        A run record (:func:`mapcvd.store.fence.read_run`) of a run of this host.

    Returns
    -------
    list of psutil.Process
        Its interchanges (by recorded PID and start time) and the worker pools and
        workers of its Parsl run directories.
    """
    found = {}
    for parsl_run in record.get("parsl", []):
        for pid, started in parsl_run.get("pids", []):
            proc = same_process(pid, started)
            if proc is not None:
                found[proc.pid] = proc
        for proc in pool_processes(parsl_run["run_dir"]):
            found[proc.pid] = proc
    found.pop(os.getpid(), None)
    return list(found.values())


def claim_store(path: str | os.PathLike, *, settle: float = SETTLE_SECONDS):
    """Take the campaign store at ``path`` for a new run of this process.

    Parameters
    ----------
    path : str or path-like
        An existing campaign store.
    settle : float, optional
        Seconds to wait when the earlier run was on another host.

    Returns
    -------
    zarr.Group
        The root, read-write, through a :class:`~mapcvd.store.fence.FencedStore`
        holding the new token.

    Raises
    ------
    InputError
        Another run of this host still holds the store.
    StoreError
        ``path`` is not a campaign store.
    """
    open_campaign(path, "r")  # a one-line error for a path that is not a store
    record = read_run(path)
    if record is not None and int(record.get("pid", -1)) != os.getpid() and driver_alive(record):
        since = datetime.fromtimestamp(float(record["started"])).strftime("%Y-%m-%d %H:%M:%S")
        raise InputError(
            f"another mapcvd run (PID {record['pid']}, started {since}) is writing {path}: "
            "let it finish or stop it first"
        )
    token = begin_run(path)
    if record is not None:
        if record.get("host") == socket.gethostname():
            left = earlier_run_processes(record)
            if left:
                logger.warning("ending %d process(es) left by run %s of %s", len(left), record["token"], path)
                reap(left, END_GRACE, grace_first=False)
        else:
            logger.warning("run %s of %s was on host %s: waiting %.0f s for its writers to stop",
                           record["token"], path, record.get("host"), settle)
            time.sleep(settle)
    return open_campaign(Path(path), "r+", token=token)
