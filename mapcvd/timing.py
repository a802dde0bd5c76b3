"""Where a process spends its time: inside LAMMPS, inside torch, or elsewhere.

The science of a campaign happens in two libraries: LAMMPS (every reactive-MD step,
minimisation and NEB force call) and torch (every network forward and backward pass).
Everything else (Parsl, the Zarr store, the dashboard, Python glue) is overhead, and the
campaign's overhead benchmark (``benchmarks/campaign_overhead.py``) needs to know how
much of the machine it takes. This module keeps one :class:`ComputeClock` per process:

- :func:`measure` brackets a call into LAMMPS or torch and adds its wall and CPU seconds
  to the process's clock (nested brackets of the same kind count once);
- :func:`record_app` brackets a whole task (a Parsl app body, or a stage run in the
  driver process) and, when the environment variable ``MAPCVD_TIMING_DIR`` names a
  folder, appends one JSON line per task to ``<folder>/<pid>.jsonl`` with the task's wall
  and CPU seconds and the share of each inside LAMMPS and torch. With the variable unset
  it costs two clock reads.

CPU seconds are those of the calling thread (``time.thread_time``), so a dashboard thread
running beside a torch loop in the driver process is not counted as torch; the worker
processes run LAMMPS and torch single-threaded (``OMP_NUM_THREADS=1``, one torch thread
by default). A LAMMPS run in a child process (the LAMMPS NEB driver's ``mpiexec``) adds
the CPU of the children it waited for.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable)

__all__ = ["KINDS", "ComputeClock", "clock", "measure", "record_app", "timed_app", "TIMING_DIR_ENV"]

KINDS = ("lammps", "torch")
TIMING_DIR_ENV = "MAPCVD_TIMING_DIR"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ComputeClock:
    """Wall and CPU seconds spent inside each of :data:`KINDS`, summed over threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = {f"{kind}_{unit}": 0.0 for kind in KINDS for unit in ("wall", "cpu")}
        self._depth = threading.local()

    def snapshot(self) -> dict[str, float]:
        """The totals so far, ``{"lammps_wall": s, "lammps_cpu": s, "torch_wall": ..., ...}``."""
        with self._lock:
            return dict(self._totals)

    @contextmanager
    def measure(self, kind: str, *, children: bool = False) -> Iterator[None]:
        """Count the block as time inside ``kind`` (``children``: add waited-for children's CPU)."""
        depth = getattr(self._depth, kind, 0)
        if depth:  # already inside a block of this kind: count it once
            yield
            return
        setattr(self._depth, kind, 1)
        wall, cpu = time.perf_counter(), time.thread_time()
        child = _children_cpu() if children else 0.0
        try:
            yield
        finally:
            setattr(self._depth, kind, 0)
            spent_cpu = time.thread_time() - cpu + ((_children_cpu() - child) if children else 0.0)
            spent_wall = time.perf_counter() - wall
            with self._lock:
                self._totals[f"{kind}_wall"] += spent_wall
                self._totals[f"{kind}_cpu"] += spent_cpu


clock = ComputeClock()
measure = clock.measure


@contextmanager
def record_app(name: str) -> Iterator[None]:
    """Bracket a task; with ``MAPCVD_TIMING_DIR`` set, append its timing as one JSON line.

    The line holds ``name``, ``pid``, ``start``/``end`` (epoch seconds), ``wall``,
    ``cpu`` (the calling thread's seconds over the task), ``process_cpu`` (all threads
    of the process over the task: in a worker, the difference is mostly Zarr's I/O
    event loop, which does the store's reads and writes), the task's seconds inside each
    of :data:`KINDS` (``lammps_wall``, ``lammps_cpu``, ``torch_wall``, ``torch_cpu``) and
    ``ok`` (false when the task raised).
    """
    folder = os.environ.get(TIMING_DIR_ENV)
    if not folder:
        yield
        return
    before = clock.snapshot()
    start, wall, cpu, process_cpu = time.time(), time.perf_counter(), time.thread_time(), time.process_time()
    ok = False
    try:
        yield
        ok = True
    finally:
        after = clock.snapshot()
        row = {"name": name, "pid": os.getpid(), "start": start, "end": time.time(),
               "wall": time.perf_counter() - wall, "cpu": time.thread_time() - cpu,
               "process_cpu": time.process_time() - process_cpu, "ok": ok,
               **{key: after[key] - before[key] for key in after}}
        path = Path(folder) / f"{os.getpid()}.jsonl"
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")


def timed_app(fn: F) -> F:
    """Decorate a task body so that each call runs inside :func:`record_app` under its name."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with record_app(fn.__name__):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
