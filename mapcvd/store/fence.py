"""Run tokens: at most one run writes a campaign store, even after a driver was killed.

A run of mapcvd (``campaign run``, ``map train``, ``cvd dataset`` ...) is a driver
process plus the Parsl apps it started, some of which write the store themselves
(the MAP actors and learner). When the driver is killed, those apps may live on and
keep writing, next to the apps of the run that resumes the store: the store's
one-writer rule (:mod:`mapcvd.store.campaign`) breaks. Fencing restores it:

* Each run takes a new **run token** when it starts (:func:`begin_run`): an integer
  epoch, one more than the last, kept with who holds it in the attributes of the
  group ``run`` (kind ``mapcvd-run``): host, driver PID and its start time, and the
  Parsl run directories and interchange PIDs the run starts
  (:func:`note_parsl`), so that the next run can find and end them.
* Every writer of that run opens the store through a :class:`FencedStore` that
  carries the token the run was started with. Before each file it writes or
  deletes, the store reads the current token; once a newer run holds the store it
  raises :class:`FencedError` and writes nothing. Commit counters are written after
  the data they cover, so a writer stopped between the two leaves only rows that no
  reader trusts.

The check and the write are not one atomic step: a write whose check passed just
before a newer run took the token may still land. The new run's own writers start
only after it has taken the token and ended the earlier run's processes on this host
(or, for a run of another host, waited :data:`SETTLE_SECONDS`), so such a late write
can only land before them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import zarr
from zarr.storage import LocalStore

from mapcvd.errors import StoreError
from mapcvd.store.layout import RUN_KIND, RUN_PATH

__all__ = ["FencedError", "FencedStore", "SETTLE_SECONDS", "begin_run", "driver_alive", "note_parsl", "read_run",
           "run_token", "same_process"]

#: Seconds a new run waits after taking the token before its writers start: longer
#: than one file write of a writer whose check passed just before.
SETTLE_SECONDS = 2.0


class FencedError(StoreError):
    """A writer of an earlier run tried to write a store that a newer run holds."""


def _record_file(root: Path) -> Path:
    return Path(root) / RUN_PATH / "zarr.json"


def read_run(store_root: str | os.PathLike) -> dict | None:
    """The run record of the store at ``store_root``, read fresh from disk.

    Returns
    -------
    dict or None
        ``token`` (int), ``host``, ``pid``, ``pid_started`` (the driver's start time,
        seconds since the epoch), ``started``, ``parsl`` (list of ``{"run_dir",
        "pids"}``); None for a store no run has claimed (written before run tokens).
    """
    try:
        text = _record_file(Path(store_root)).read_text()
    except FileNotFoundError:
        return None
    attrs = json.loads(text).get("attributes", {})
    return attrs if attrs.get("kind") == RUN_KIND else None


def same_process(pid: int, started: float):
    """The process ``pid`` of this host if it is alive and started at ``started`` (not a reused PID), else None."""
    import psutil  # noqa: PLC0415

    try:
        proc = psutil.Process(int(pid))
        alive = proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - float(started)) < 1.0
        return proc if alive else None
    except (psutil.Error, ValueError, TypeError):
        return None


def driver_alive(record: dict) -> bool | None:
    """Whether the driver of the run of ``record`` is alive; None when it ran on another host (unknown)."""
    if record.get("host") != socket.gethostname():
        return None
    return same_process(record.get("pid", -1), record.get("pid_started", 0.0)) is not None


def _current_token(store_root: Path) -> int:
    record = read_run(store_root)
    return 0 if record is None else int(record["token"])


class FencedStore(LocalStore):
    """A :class:`zarr.storage.LocalStore` whose writes stop once a newer run holds the store.

    Parameters
    ----------
    root : str or Path
        Folder of the campaign store.
    token : int
        The run token of the run this store writes for.
    read_only : bool, optional
        As for :class:`~zarr.storage.LocalStore` (a read-only store never checks).
    """

    def __init__(self, root: Path | str, *, token: int, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self.token = int(token)

    def with_read_only(self, read_only: bool = False) -> FencedStore:
        return type(self)(root=self.root, token=self.token, read_only=read_only)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FencedStore) and self.root == other.root and self.token == other.token

    __hash__ = None  # type: ignore[assignment]  # mutable equality, like LocalStore

    def check(self, key: str = "") -> None:
        """Raise :class:`FencedError` unless this store's run still holds the store."""
        current = _current_token(self.root)
        if current != self.token:
            raise FencedError(
                f"run {self.token} stopped without writing {key or 'the store'}: run {current} now holds "
                f"{self.root} (a newer mapcvd run took it over)"
            )

    async def _set(self, key: str, value, exclusive: bool = False) -> None:
        self.check(key)
        await super()._set(key, value, exclusive=exclusive)

    def set_sync(self, key: str, value) -> None:
        self.check(key)
        super().set_sync(key, value)

    async def delete(self, key: str) -> None:
        self.check(key)
        await super().delete(key)

    def delete_sync(self, key: str) -> None:
        self.check(key)
        super().delete_sync(key)

    async def delete_dir(self, prefix: str) -> None:
        self.check(prefix)
        await super().delete_dir(prefix)


def run_token(group: zarr.Group) -> int | None:
    """The run token a group was opened with, or None when it was opened without one."""
    return getattr(group.store, "token", None)


def _write_record(store_root: Path, attrs: dict[str, Any]) -> None:
    zarr.open_group(store=LocalStore(store_root), path=RUN_PATH, mode="a", zarr_format=3).attrs.put(attrs)


def begin_run(store_root: str | os.PathLike) -> int:
    """Take a new run token for this process (the driver of a run); return it.

    The new token is one more than the store's last one (0 when it has none). The
    record names this host and process, so that a later run can tell whether this
    one is still alive. Call it once per run, before any writer of the run starts;
    then open the store with :class:`FencedStore` and that token.
    """
    import psutil  # noqa: PLC0415

    root = Path(store_root)
    token = _current_token(root) + 1
    _write_record(root, {
        "kind": RUN_KIND, "token": token, "host": socket.gethostname(), "pid": os.getpid(),
        "pid_started": psutil.Process().create_time(), "started": time.time(), "parsl": [],
    })
    return token


def note_parsl(group: zarr.Group, run_dir: str, pids: list[tuple[int, float]]) -> None:
    """Add a Parsl run directory and its interchange processes to the run record of ``group``'s run.

    ``pids`` holds ``(pid, create_time)`` pairs, so that a later run ends only these
    processes, not others that reuse their PIDs.

    Written through ``group``'s store, so a run that no longer holds the store
    records nothing (:class:`FencedError`). A group opened without a token (tests,
    library use) records nothing either.
    """
    if run_token(group) is None:
        return
    record = read_run(group.store.root) or {}
    parsl = [*record.get("parsl", []), {"run_dir": os.path.abspath(run_dir), "pids": [[int(p), float(t)] for p, t in pids]}]
    zarr.open_group(store=group.store, path=RUN_PATH, mode="a", zarr_format=3).attrs.update({"parsl": parsl})
