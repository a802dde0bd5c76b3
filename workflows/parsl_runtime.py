"""Starting and stopping Parsl with a guaranteed, complete shutdown.

:func:`run_parsl` loads a site's configuration for the duration of a ``with`` block
and, on every way out of it (normal end, exception, Ctrl-C), cleans up the
DataFlowKernel and ends the worker pools of that run that are left on this host.
Parsl no longer cleans up at interpreter exit, and its local worker pools are not
child processes of the driver (the provider starts them from a shell that exits),
so they are found by their ``--logdir`` under the run directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import parsl
from parsl.config import Config
from parsl.dataflow.dflow import DataFlowKernel
from parsl.errors import NoDataFlowKernelError

__all__ = ["parsl_block", "pool_processes", "reap", "run_parsl"]

logger = logging.getLogger(__name__)


def pool_processes(run_dir: str) -> list:
    """Find the worker pools of one Parsl run on this host, with their workers.

    Parameters
    ----------
    run_dir : str
        The absolute run directory of the DataFlowKernel (``dfk.run_dir``); it is
        part of every worker pool's command line (``--logdir``).

    Returns
    -------
    list of psutil.Process
        The ``process_worker_pool`` processes of that run and their descendants.
    """
    import psutil

    found = {}
    needle = os.path.join(os.path.abspath(run_dir), "")
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any("process_worker_pool" in part for part in cmdline) and any(
            needle in part for part in cmdline
        ):
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found[child.pid] = child
    return list(found.values())


def reap(procs: list, grace: float, *, grace_first: bool = True) -> None:
    """Wait for processes to exit; terminate, then kill, those that do not.

    Parameters
    ----------
    procs : list of psutil.Process
        Processes to end.
    grace : float
        Seconds to wait before each escalation.
    grace_first : bool, optional
        Wait ``grace`` before the first signal (processes that are ending by
        themselves); False sends SIGTERM at once.
    """
    import psutil

    if not procs:
        return
    _, alive = psutil.wait_procs(procs, timeout=grace if grace_first else 0)
    for sig in ("terminate", "kill"):
        if not alive:
            return
        logger.warning("ending %d stray Parsl worker process(es) with %s", len(alive), sig)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                getattr(proc, sig)()
        _, alive = psutil.wait_procs(alive, timeout=grace)


def _shutdown(dfk: DataFlowKernel, pools: list, grace: float) -> None:
    """Clean up a DataFlowKernel and end the local worker pools it leaves behind.

    Parameters
    ----------
    dfk : parsl.dataflow.dflow.DataFlowKernel
        The kernel to clean up (once).
    pools : list of psutil.Process
        Worker pools seen while the kernel ran.
    grace : float
        Seconds to let worker pools exit on their own before they are signalled.
    """
    try:
        if not dfk.cleanup_called:
            dfk.cleanup()
    finally:
        with contextlib.suppress(NoDataFlowKernelError):
            if parsl.dfk() is dfk:
                parsl.clear()
        try:
            reap(pools + pool_processes(dfk.run_dir), grace)
        except Exception:  # noqa: BLE001 - never mask the original exception
            logger.exception("could not check for stray Parsl worker processes")


def _record_processes(dfk: DataFlowKernel, group) -> None:
    """Write the kernel's run directory and interchange processes into ``group``'s run record."""
    import psutil  # noqa: PLC0415

    from mapcvd.store.fence import note_parsl  # noqa: PLC0415

    pids = []
    for executor in dfk.executors.values():
        proc = getattr(executor, "interchange_proc", None)
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                pids.append((proc.pid, psutil.Process(proc.pid).create_time()))
    note_parsl(group, dfk.run_dir, pids)


@contextlib.contextmanager
def run_parsl(config: Config, *, grace: float = 5.0, record=None) -> Iterator[DataFlowKernel]:
    """Load a Parsl configuration for the duration of a ``with`` block.

    Parameters
    ----------
    config : parsl.config.Config
        A fresh configuration (from :func:`load_site`); it cannot be reused after.
    grace : float, optional
        Seconds that worker pools on this host get to exit after shutdown before they
        are terminated, then killed.
    record : zarr.Group, optional
        The campaign root of the run, opened with its run token: the kernel's run
        directory and interchange PIDs are added to the run record, so that a later
        run can end them if this one is killed (:mod:`mapcvd.workflows.run_guard`).

    Yields
    ------
    parsl.dataflow.dflow.DataFlowKernel
        The loaded kernel; apps submitted in the block run on it.

    Raises
    ------
    parsl.errors.ConfigurationError
        Another Parsl configuration is already loaded in this process.

    Notes
    -----
    Like ``with parsl.load(config) as dfk:``, but the shutdown is guaranteed: on a
    normal exit (after waiting for running tasks when ``config.exit_mode`` is
    ``"wait"``), on an exception and on ``KeyboardInterrupt``, the kernel is cleaned
    up (blocks cancelled, interchanges stopped), it is unregistered so that another
    configuration can be loaded, and worker pools of this run left on this host are
    ended. Tasks still running are abandoned.
    """
    dfk = parsl.load(config)
    pools: list = []
    try:
        if record is not None:
            _record_processes(dfk, record)
        yield dfk
        if config.exit_mode == "wait":
            dfk.wait_for_current_tasks()
    finally:
        with contextlib.suppress(Exception):
            pools = pool_processes(dfk.run_dir)
        _shutdown(dfk, pools, grace)



@contextlib.contextmanager
def parsl_block(config: Config | None, *, record=None) -> Iterator[DataFlowKernel]:
    """:func:`run_parsl` for ``config`` (``record`` as there); with ``None``, the DataFlowKernel already loaded.

    Drivers take ``parsl_config=None`` to submit their apps inside a kernel that a
    caller loaded (the campaign runs several drivers inside one ``run_parsl`` block:
    Parsl loads one kernel per process at a time).

    Raises
    ------
    mapcvd.errors.InputError
        ``config`` is None and no kernel is loaded.
    """
    if config is not None:
        with run_parsl(config, record=record) as dfk:
            yield dfk
        return
    try:
        dfk = parsl.dfk()
    except NoDataFlowKernelError:
        from mapcvd.errors import InputError

        raise InputError("no Parsl configuration is loaded: pass a site configuration") from None
    yield dfk
