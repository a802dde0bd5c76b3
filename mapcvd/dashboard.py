"""The live campaign dashboard: what a campaign store says now, as a table, log lines or JSON.

The dashboard only reads the store (DESIGN.md, layer 6), so it attaches to a campaign
that runs elsewhere: on another node, in a batch job, or one that has finished.

* :func:`collect` reads one snapshot of everything (stages, MAP actors and learner,
  evaluation, NEB segments, CVD runs, NADE and agent results, warnings) as a plain,
  JSON-safe dict. Missing groups are simply absent; a group caught half-written by
  its writer is reported as a warning, never as a crash.
* :func:`~mapcvd.dashboard_panels.render` turns a snapshot into a rich renderable
  (a stage tree with progress bars and ETAs, one row per actor, learner, evaluation,
  NEB and CVD panels, and a warnings/errors panel).
* :func:`plain_lines` turns it into plain log lines (batch jobs, CI, pipes).
* :func:`watch` refreshes from the store until every stage is done or failed, or
  until Ctrl-C.

The store readers behind :func:`collect` (one per part of the snapshot, and the store
paths each reads) live in :mod:`mapcvd.dashboard_readers`.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mapcvd.dashboard_panels import plain_lines, render
from mapcvd.dashboard_readers import (
    _cvd_agent,
    _cvd_nade,
    _cvd_tables,
    _map_actors,
    _map_evaluation,
    _map_learner,
    _neb,
    _warn,
)
from mapcvd.errors import one_line
from mapcvd.store import open_campaign, stage_statuses
from mapcvd.store.fence import driver_alive, read_run

__all__ = ["collect", "finished", "plain_lines", "render", "snapshot_json", "watch"]


# ----------------------------------------------------------------------- helpers
def _jsonable(value: Any) -> Any:
    """A strict-JSON copy: numpy to Python, non-finite floats to None, keys to str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# ------------------------------------------------------------------- snapshot
#: (section, reader, stages): each reader returns keys to merge into ``snapshot[section]``;
#: readers fail alone. Once all its stages are done, what a reader found cannot change, so
#: with a ``history`` it is read once and replayed (a live dashboard redraws every few
#: seconds, and each read of the store costs tens of ms of the driver's CPU).
_READERS: tuple[tuple[str, Callable, tuple[str, ...]], ...] = (
    ("map", _map_actors, ("map_train",)), ("map", _map_learner, ("map_train",)),
    ("map", _map_evaluation, ("map_evaluate_greedy", "map_evaluate_random")), ("neb", _neb, ("map_paths",)),
    ("cvd", _cvd_tables, ("cvd_dataset", "cvd_validate")), ("cvd", _cvd_nade, ("cvd_nade",)),
    ("cvd", _cvd_agent, ("cvd_agent", "cvd_agent_paper")),
)


def _read_part(reader: Callable, stages: tuple[str, ...], root, snap: dict, now: float,
               history: dict | None) -> dict | None:
    """``reader``'s part of the snapshot; from ``history`` when its stages were done at its last read."""
    done = all(snap["stages"].get(stage) == "done" for stage in stages)
    cache = None if history is None else history.setdefault("finished_parts", {})
    if not done and cache is not None:
        cache.pop(reader.__name__, None)  # (a stage run again after it was done)
    elif done and cache is not None and reader.__name__ in cache:
        part, progress, warnings = copy.deepcopy(cache[reader.__name__])
        snap["progress"].update(progress)
        snap["warnings"].extend(warnings)
        return part
    had_progress, n_warnings = set(snap["progress"]), len(snap["warnings"])
    part = reader(root, snap, now, history)
    if done and cache is not None:
        cache[reader.__name__] = copy.deepcopy((
            part, {k: v for k, v in snap["progress"].items() if k not in had_progress}, snap["warnings"][n_warnings:]))
    return part


def _warn_left_running(snap: dict, path) -> None:
    """Warn when stages read ``running`` but the run that holds the store has no live driver on this host."""
    running = [stage for stage, status in snap["stages"].items() if status == "running"]
    record = None if path is None or not running else read_run(path)
    if record is None or driver_alive(record) is not False:
        return
    _warn(snap, "warning", "run", f"{', '.join(running)} read running, but run {record['token']} (PID {record['pid']}) "
          "that holds the store is gone: run the same command again to resume")


def collect(root, *, path: str | Path | None = None, now: float | None = None, history: dict | None = None) -> dict:
    """One snapshot of a campaign store, as a JSON-safe dict; never writes.

    Parameters
    ----------
    root : zarr.Group
        Root group of the campaign (read-only is enough; :func:`open_campaign` with ``"r"``).
    path : str or Path, optional
        Store path, shown in the header.
    now : float, optional
        Time of the snapshot (``time.time()`` when omitted).
    history : dict, optional
        A dict kept by the caller between snapshots (:func:`watch` does): completed
        counts over time, from which the ETAs of count-based stages (CVD runs, NEB
        segments) are estimated. Without it those ETAs come from the mean run time
        (an upper bound: runs in series) or are unknown.

    Returns
    -------
    dict
        ``name``, ``path``, ``time``, ``created``, ``stages`` (name -> status),
        ``progress`` (stage -> ``done``, ``total``, ``unit``, ``eta_s``), and when their
        groups exist ``map`` (``actors`` rows, ``training``, ``learner``,
        ``evaluation``), ``neb`` (pathways and segment counts) and ``cvd``
        (``dataset``, ``validation``, ``nade``, ``agent``); ``warnings``: a list of
        ``{"level": "error" | "warning", "source", "message"}``, errors first.
    """
    now = time.time() if now is None else float(now)
    attrs = dict(root.attrs.asdict())
    config = attrs.get("config") if isinstance(attrs.get("config"), dict) else {}
    campaign = config.get("campaign") if isinstance(config.get("campaign"), dict) else {}
    snap: dict = {"name": campaign.get("name"), "path": None if path is None else str(path), "time": now,
                  "created": attrs.get("created"), "stages": stage_statuses(root), "progress": {},
                  "warnings": [], "config": config, "stage_info": dict(attrs.get("stage_info") or {})}
    for section, reader, stages in _READERS:
        try:
            part = _read_part(reader, stages, root, snap, now, history)
        except Exception as exc:  # noqa: BLE001 - a live store may be caught mid-change: report, go on
            _warn(snap, "warning", section, f"could not read {reader.__name__.strip('_')} now ({one_line(exc, 300)})")
            continue
        if part:
            snap.setdefault(section, {}).update(part)
    for stage, status in snap["stages"].items():
        if status == "failed":
            _warn(snap, "error", f"stage {stage}", "failed")
    _warn_left_running(snap, path)
    snap["warnings"].sort(key=lambda w: w["level"] != "error")
    del snap["config"]
    return _jsonable(snap)


def snapshot_json(snapshot: dict) -> str:
    """The snapshot as one line of strict JSON."""
    return json.dumps(snapshot, allow_nan=False, separators=(",", ":"))


def finished(snapshot: dict) -> bool:
    """True when at least one stage is recorded and every stage is done or failed."""
    stages = snapshot.get("stages") or {}
    return bool(stages) and all(s in ("done", "failed") for s in stages.values())


# ----------------------------------------------------------------------- watch
def watch(path: str | Path, interval: float = 5.0, console=None, *, keep_watching: bool = False,
          as_json: bool = False, max_updates: int | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Show the campaign at ``path`` and refresh it every ``interval`` seconds.

    On a terminal the rich dashboard is redrawn in place (:class:`rich.live.Live`);
    otherwise plain lines (or, with ``as_json``, one JSON object per line) are printed
    every ``interval``. Stops when every stage is done or failed (unless
    ``keep_watching``), after ``max_updates`` refreshes, or on Ctrl-C.

    Parameters
    ----------
    path : str or Path
        Campaign store (opened read-only at every refresh).
    interval : float
        Seconds between refreshes.
    console : rich.console.Console, optional
        Where to draw (a console on stdout when omitted).
    keep_watching : bool
        Keep refreshing after every stage has finished.
    as_json : bool
        Print one JSON snapshot per line instead of the dashboard.
    max_updates : int, optional
        Stop after this many refreshes.
    sleep : callable
        Waits between refreshes (tests replace it).

    Returns
    -------
    int
        The exit code: 0 (finished, stopped or interrupted).

    Raises
    ------
    StoreError
        When the store cannot be opened (missing, not a campaign).
    """
    from rich.console import Console  # noqa: PLC0415
    from rich.live import Live  # noqa: PLC0415

    console = console if console is not None else Console(highlight=False)
    history: dict = {}
    count = 0

    def snapshot() -> dict:
        return collect(open_campaign(path, "r"), path=path, history=history)

    def done(snap: dict) -> bool:
        return (not keep_watching and finished(snap)) or (max_updates is not None and count >= max_updates)

    try:
        if console.is_terminal and not as_json:
            snap = snapshot()
            with Live(render(snap), console=console, auto_refresh=False, transient=False) as live:
                while True:
                    count += 1
                    live.update(render(snap), refresh=True)
                    if done(snap):
                        break
                    sleep(interval)
                    snap = snapshot()
        else:
            while True:
                snap = snapshot()
                count += 1
                lines = [snapshot_json(snap)] if as_json else plain_lines(snap)
                for line in lines:
                    console.out(line, highlight=False)
                console.file.flush()
                if done(snap):
                    break
                sleep(interval)
    except KeyboardInterrupt:
        return 0
    return 0
