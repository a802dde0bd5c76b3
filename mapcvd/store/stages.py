"""Stage status of a campaign, kept in the root attributes of its store.

The root attribute ``stages`` maps stage name -> status (one of
:data:`STAGE_STATUSES`) and ``stage_info`` maps stage name -> facts for dashboards
(start, deadline ...). Root attributes are one JSON document with one writer, so
**only the campaign driver process** calls the writers here (see the one-writer rules
of :mod:`mapcvd.store.campaign`); readers read from disk, not from a handle's cache.

:func:`run_stage` is the stage runner: the commands and the campaign run each stage's
work through it, and it alone moves a stage through its statuses (with
:func:`declare_stages` and :func:`reset_unfinished` for the campaign as a whole). The
drivers and library functions that do the work never write a status.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import zarr

from mapcvd.errors import ConfigError, InputError, StoreError
from mapcvd.store.campaign import _fresh_attrs, _require_writable
from mapcvd.store.fence import run_token

__all__ = [
    "STAGE_STATUSES",
    "declare_stages",
    "reset_unfinished",
    "run_stage",
    "set_stage_info",
    "set_stage_status",
    "stage_info",
    "stage_runs",
    "stage_statuses",
]

STAGE_STATUSES = ("pending", "running", "done", "failed")

#: Serialises the read-modify-write of root attributes by threads of one driver process
#: (the campaign drives MAP and CVD from two threads over one root handle).
_ROOT_ATTRS_LOCK = threading.RLock()


def set_stage_status(group: zarr.Group, stage: str, status: str) -> None:
    """Record the status of one campaign stage in the root attributes.

    Only the campaign driver process may call this (root attributes are one JSON
    document with one writer).

    Parameters
    ----------
    group : zarr.Group
        Root group of a campaign store, opened read-write.
    stage : str
        Stage name, e.g. ``"map.train"``.
    status : {"pending", "running", "done", "failed"}
        New status.

    Raises
    ------
    StoreError
        For an unknown status, an empty stage name or a read-only store.
    """
    if status not in STAGE_STATUSES:
        raise StoreError(
            f"invalid stage status {status!r} for stage {stage!r}:"
            f" expected one of {', '.join(STAGE_STATUSES)}"
        )
    if not isinstance(stage, str) or not stage:
        raise StoreError(f"stage name must be a non-empty string, got {stage!r}")
    _require_writable(group, f"set status of stage {stage!r}")
    with _ROOT_ATTRS_LOCK:
        stages = dict(_fresh_attrs(group).get("stages", {}))
        stages[stage] = status
        group.attrs["stages"] = stages


T = TypeVar("T")


def run_stage(group: zarr.Group, stage: str, work: Callable[[], T], *,
              interrupted: Callable[[], bool] | None = None) -> T:
    """Run ``work()`` as the campaign stage ``stage``: the one writer of stage status.

    The stage is ``running`` while ``work`` runs, then:

    * ``done`` when it returns, or ``failed`` when it returns a dict whose
      ``"complete"`` is False (some of its runs failed without an exception);
    * as it was before when it raises :class:`~mapcvd.errors.InputError` or
      :class:`~mapcvd.errors.ConfigError` (input refused: nothing was done);
    * ``pending`` on Ctrl-C (KeyboardInterrupt), or on any exception while
      ``interrupted()`` is true (Parsl stopped under it), so that it runs again;
    * ``failed`` on any other exception.

    Returns what ``work`` returned; exceptions propagate.
    """
    before = stage_statuses(group).get(stage)
    set_stage_status(group, stage, "running")
    _record_stage_run(group, stage)
    try:
        result = work()
    except KeyboardInterrupt:
        set_stage_status(group, stage, "pending")
        raise
    except (InputError, ConfigError):
        _restore_status(group, stage, before)
        raise
    except BaseException:
        set_stage_status(group, stage, "pending" if interrupted is not None and interrupted() else "failed")
        raise
    incomplete = isinstance(result, dict) and result.get("complete") is False
    set_stage_status(group, stage, "failed" if incomplete else "done")
    return result


def _record_stage_run(group: zarr.Group, stage: str) -> None:
    """Record which run (its token, :mod:`mapcvd.store.fence`) last started ``stage``."""
    token = run_token(group)
    if token is None:
        return
    with _ROOT_ATTRS_LOCK:
        runs = dict(_fresh_attrs(group).get("stage_runs", {}))
        runs[stage] = token
        group.attrs["stage_runs"] = runs


def stage_runs(group: zarr.Group) -> dict[str, int]:
    """The run token that last started each stage (stages run without a token are absent), read from disk.

    A stage that reads ``running`` while the run named here is no longer the store's
    (:func:`mapcvd.store.fence.read_run`) was left by a run that was killed.
    """
    return dict(_fresh_attrs(group).get("stage_runs", {}))


def declare_stages(group: zarr.Group, stages: Iterable[str]) -> None:
    """Record ``pending`` for each of ``stages`` that has no status yet (a campaign's start)."""
    known = stage_statuses(group)
    for stage in stages:
        if stage not in known:
            set_stage_status(group, stage, "pending")


def reset_unfinished(group: zarr.Group, stages: Iterable[str]) -> None:
    """Set each of ``stages`` that is not ``done`` back to ``pending`` (after an interrupted campaign)."""
    statuses = stage_statuses(group)
    for stage in stages:
        if stage in statuses and statuses[stage] != "done":
            set_stage_status(group, stage, "pending")


def _restore_status(group: zarr.Group, stage: str, status: str | None) -> None:
    if status is not None:
        set_stage_status(group, stage, status)
        return
    with _ROOT_ATTRS_LOCK:
        stages = dict(_fresh_attrs(group).get("stages", {}))
        stages.pop(stage, None)
        group.attrs["stages"] = stages


def set_stage_info(group: zarr.Group, stage: str, info: dict) -> None:
    """Record facts about a running stage (e.g. its start and deadline) for dashboards.

    Only the campaign driver may call this (root attributes have one writer).
    ``info`` must be JSON-serialisable; it replaces what was recorded for ``stage``.
    """
    _require_writable(group, f"record information of stage {stage!r}")
    with _ROOT_ATTRS_LOCK:
        infos = dict(_fresh_attrs(group).get("stage_info", {}))
        infos[stage] = dict(info)
        group.attrs["stage_info"] = infos


def stage_info(group: zarr.Group) -> dict[str, dict]:
    """What :func:`set_stage_info` recorded, per stage, read from disk."""
    return dict(_fresh_attrs(group).get("stage_info", {}))


def stage_statuses(group: zarr.Group) -> dict[str, str]:
    """Status of every recorded stage, read from disk (not from the handle's cache).

    Parameters
    ----------
    group : zarr.Group
        Root group of a campaign store.

    Returns
    -------
    dict of str to str
        Stage name -> status.
    """
    return dict(_fresh_attrs(group).get("stages", {}))
