"""Stage status of a campaign, kept in the root attributes of its store.

The root attribute ``stages`` maps stage name -> status (one of
:data:`STAGE_STATUSES`) and ``stage_info`` maps stage name -> facts for dashboards
(start, deadline ...). Root attributes are one JSON document with one writer, so
**only the campaign driver process** calls the writers here (see the one-writer rules
of :mod:`mapcvd.store.campaign`); readers read from disk, not from a handle's cache.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import zarr

from mapcvd.errors import StoreError
from mapcvd.store.campaign import _fresh_attrs, _require_writable

__all__ = [
    "STAGE_STATUSES",
    "set_stage_info",
    "set_stage_status",
    "stage_info",
    "stage_run",
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


@contextmanager
def stage_run(group: zarr.Group, stage: str) -> Iterator[dict]:
    """Mark ``stage`` running for the ``with`` block; then done, failed or pending.

    The block may set ``outcome["status"]`` (default ``"done"``) to record, for
    example, ``"failed"`` when some of its work failed without an exception. An
    exception marks the stage ``"failed"``; Ctrl-C (KeyboardInterrupt) marks it
    ``"pending"``, so that a resumed campaign runs it again. Only the campaign driver
    may use this (root attributes have one writer).
    """
    outcome = {"status": "done"}
    set_stage_status(group, stage, "running")
    try:
        yield outcome
    except KeyboardInterrupt:
        set_stage_status(group, stage, "pending")
        raise
    except BaseException:
        set_stage_status(group, stage, "failed")
        raise
    set_stage_status(group, stage, outcome["status"])


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
