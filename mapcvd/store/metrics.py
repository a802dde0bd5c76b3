"""The learner's metrics log and its trained-time bookkeeping.

The metrics group ``map/learner/metrics`` holds ``step`` (int64) and one float64 array
per metric, all grown by one row per log call; its ``rows`` attribute is the commit
(written after the data, so a reader never sees a row being written). Only the
learner writes here (see :mod:`mapcvd.store.replay` for the layout).

The seconds the learner has trained, over all its sessions, are kept in the ``meta``
of its ingest checkpoint (``map/learner/ingest``, see
:mod:`mapcvd.store.learner_state`); :func:`trained_seconds` reads just that number.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.layout import INGEST_PATH, METRICS_PATH
from mapcvd.store.replay import fresh_group

__all__ = ["append_metrics", "read_metrics", "trained_seconds"]


def _node(root: zarr.Group, path: str) -> zarr.Group | zarr.Array | None:
    try:
        return root[path]
    except KeyError:
        return None


def _metric_rows(metrics: zarr.Group) -> int:
    """Committed rows of the metrics group (stores of earlier versions: the length of ``step``)."""
    rows = metrics.attrs.get("rows")
    return int(metrics["step"].shape[0]) if rows is None else int(rows)


def append_metrics(root: zarr.Group, step: int, values: Mapping[str, float], *,
                   trim_after: int | None = None) -> None:
    """Append one row of scalar metrics at ``step`` to ``map/learner/metrics``.

    Parameters
    ----------
    root
        Campaign root group, read-write (the learner's).
    step
        The learner's update count for this row.
    values
        Metric name -> value; the names are fixed by the first call.
    trim_after
        First drop the committed rows whose step exceeds this one (the rows a crashed
        learner logged past its last checkpoint); None keeps every row.
    """
    names = sorted(values)
    if not names or any(not isinstance(n, str) or not n.isidentifier() or n == "step" for n in names):
        raise StoreError(f"metric names must be identifiers other than 'step', got {names}")
    metrics = _node(root, METRICS_PATH)
    if metrics is None:
        metrics = root.require_group(METRICS_PATH)
        for name in names:
            metrics.create_array(name, shape=(0,), chunks=(1024,), dtype=np.float64)
        metrics.create_array("step", shape=(0,), chunks=(1024,), dtype=np.int64)
        metrics.attrs["names"] = names
    if metrics.attrs.get("names") != names:
        raise StoreError(f"metric names {names} differ from the stored {metrics.attrs.get('names')}")
    if trim_after is not None:
        steps = np.asarray(metrics["step"][: _metric_rows(metrics)])
        keep = int(np.searchsorted(steps, trim_after, side="right")) if steps.size else 0
        metrics.attrs["rows"] = keep  # first: readers never see a row being dropped
        for name in [*names, "step"]:
            metrics[name].resize((keep,))
    n = _metric_rows(metrics)
    for name in [*names, "step"]:
        arr = metrics[name]
        arr.resize((n + 1,))  # a reader may see the new shape before the value: rows is the commit
        arr[n] = int(step) if name == "step" else float(values[name])
    metrics.attrs["rows"] = n + 1


def read_metrics(root: zarr.Group) -> dict[str, np.ndarray]:
    """The learner's metrics: ``step`` plus one array per metric, all of one length (committed rows only)."""
    node = fresh_group(root, METRICS_PATH)
    if node is None:
        return {}
    n = min(_metric_rows(node), node["step"].shape[0])
    out = {"step": np.asarray(node["step"][:n])}
    for name in node.attrs.get("names", []):
        arr = node[name]
        out[name] = np.asarray(arr[: min(n, arr.shape[0])])
    m = min(len(v) for v in out.values())
    return {k: v[:m] for k, v in out.items()}


def trained_seconds(root: zarr.Group) -> float:
    """Seconds the learner of the campaign at ``root`` has trained, over all sessions.

    Read from the ``meta`` of its last ingest checkpoint (written every
    ``checkpoint_seconds`` and at the end), so a session killed without warning loses
    at most that much; 0 before any checkpoint. Reads one attribute, not the
    checkpoint's arrays.
    """
    checkpoint = fresh_group(root, INGEST_PATH)
    latest = None if checkpoint is None else checkpoint.attrs.get("latest")
    if latest is None:
        return 0.0
    version = fresh_group(root, f"{INGEST_PATH}/v{int(latest)}")
    if version is None:
        raise StoreError(f"checkpoint {INGEST_PATH!r} has no committed version {latest}")
    return float(version.attrs.get("meta", {}).get("trained_seconds", 0.0))
