"""A trivial Parsl app, to check that a site starts and runs tasks.

The plain functions live in this installed module so that HighThroughputExecutor
workers import them by name instead of unpickling their code; the apps are built from
them with :func:`parsl.python_app` for a chosen executor label.

Examples
--------
>>> from mapcvd.workflows.sites import load_site, run_parsl
>>> from mapcvd.workflows.selftest import check_site
>>> with run_parsl(load_site("threads")) as dfk:  # doctest: +SKIP
...     check_site(dfk)
{'cpu': (49, 12345)}
"""

from __future__ import annotations

import os

import parsl
from parsl.app.python import PythonApp

__all__ = ["check_site", "square", "square_app", "square_with_pid"]


def square(x: float) -> float:
    """Return ``x * x``.

    Parameters
    ----------
    x : float
        A number.

    Returns
    -------
    float
        Its square.
    """
    return x * x


def square_with_pid(x: float) -> tuple[float, int]:
    """Return ``x * x`` and the id of the process that computed it.

    Parameters
    ----------
    x : float
        A number.

    Returns
    -------
    tuple of (float, int)
        The square and ``os.getpid()`` of the worker.
    """
    return square(x), os.getpid()


def square_app(label: str = "cpu", *, with_pid: bool = False) -> PythonApp:
    """Build the Parsl app of :func:`square` (or :func:`square_with_pid`).

    Parameters
    ----------
    label : str, optional
        Executor label the app runs on. Default ``"cpu"``.
    with_pid : bool, optional
        Return ``(square, worker pid)`` instead of the square.

    Returns
    -------
    parsl.app.python.PythonApp
        Calling it returns an ``AppFuture``.
    """
    return parsl.python_app(square_with_pid if with_pid else square, executors=[label])


def check_site(dfk, x: float = 7, timeout: float = 120.0) -> dict[str, tuple[float, int]]:
    """Run :func:`square_with_pid` once on every executor of a loaded kernel.

    Parameters
    ----------
    dfk : parsl.dataflow.dflow.DataFlowKernel
        The loaded kernel (from :func:`mapcvd.workflows.sites.run_parsl`).
    x : float, optional
        The number to square.
    timeout : float, optional
        Seconds to wait for each result.

    Returns
    -------
    dict
        Executor label -> ``(x * x, worker pid)``.

    Raises
    ------
    ValueError
        A worker returned a wrong result.
    """
    labels = [label for label in dfk.executors if not label.startswith("_")]
    futures = {label: square_app(label, with_pid=True)(x) for label in labels}
    results = {label: tuple(f.result(timeout=timeout)) for label, f in futures.items()}
    for label, (value, _) in results.items():
        if value != x * x:
            raise ValueError(f"executor {label!r} returned {value!r} for {x!r} squared")
    return results
