"""Stage checkpoints of staged reactive-MD runs: one group per (run table, row).

A staged run of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3 (S stages in one LAMMPS process, one app per run) can
stop in any stage: a killed driver or worker, a batch job at its walltime. After each
finished stage the app running a row stores what the run needs to continue
(:class:`mapcvd.cvd.rmd.StageState`, as plain arrays plus JSON) in the group
:func:`~mapcvd.store.layout.stage_checkpoint_path` of its table and row, e.g.
``cvd/dataset/checkpoints/row_000012``; the next attempt of the same run continues
after the last stage stored there.

Rules (:mod:`mapcvd.store.campaign`):

* the app running a row is the only writer of that row's group while it runs; the
  driver deletes the group once it has recorded the row's result (the app is done);
* each stage is one version ``v{k}`` of an array checkpoint
  (:func:`~mapcvd.store.campaign.write_array_checkpoint`): its arrays and metadata are
  written first, the ``latest`` attribute (the number of finished stages) is moved
  last, so a kill mid-write leaves the previous stage's checkpoint the one read;
* a checkpoint is tied to one attempt by its ``key`` (JSON: the schedule, the MD
  settings and the MD seed of the attempt, :func:`mapcvd.cvd.rmd.run_key`): a
  checkpoint of another key is ignored by :func:`read_stage_checkpoint` and replaced
  by the next :func:`write_stage_checkpoint`.

The named arrays of a state are stored packed: their bytes in one ``uint8`` array
``state`` of the stage's version, and, in its JSON metadata, the ``index`` of each
name's dtype string, byte offset and shape (no pickles; ``numpy.frombuffer`` reads
them back, bit for bit). Each Zarr array costs about 10-15 ms to create and delete on
the development machine: the 27 arrays of a state, stored one by one, took 15 % of the
wall time of a laptop run (16-Mo slab, 20 stages of 0.05 ps, other jobs on the cores);
packed, 20-40 ms a stage, 1.4 % of that run.

This module knows arrays, JSON and keys only; what they mean is the CVD layer's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.campaign import open_campaign, read_array_checkpoint, write_array_checkpoint
from mapcvd.store.fence import run_token
from mapcvd.store.layout import STAGE_CHECKPOINT_KIND, stage_checkpoint_path

__all__ = [
    "StageCheckpoint",
    "StageCheckpoints",
    "delete_stage_checkpoint",
    "read_stage_checkpoint",
    "write_stage_checkpoint",
]


@dataclass(frozen=True)
class StageCheckpoint:
    """A committed stage checkpoint: ``stage`` finished stages, their ``arrays`` and ``meta``."""

    stage: int
    arrays: dict[str, np.ndarray]
    meta: dict


def _pack(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """Named arrays as one flat ``uint8`` array of their bytes, and the index ``name -> [dtype, offset, shape]``.

    ``dtype`` is the array's NumPy dtype string (``"<f8"``, ``"<i8"``, ``"|b1"``),
    ``offset`` its first byte; the bytes are the array's, in C order.
    """
    parts, index, offset = [], {}, 0
    for name, value in arrays.items():
        arr = np.ascontiguousarray(value)
        if arr.dtype.kind not in "biuf":
            raise StoreError(f"stage checkpoint array {name!r} has dtype {arr.dtype}: store bool, integer or float")
        index[str(name)] = [arr.dtype.str, offset, list(arr.shape)]
        parts.append(arr.reshape(-1).view(np.uint8))
        offset += arr.nbytes
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)), index


def _unpack(data: np.ndarray, index: dict) -> dict[str, np.ndarray]:
    """Inverse of :func:`_pack`."""
    out = {}
    for name, (dtype, offset, shape) in index.items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        flat = np.frombuffer(data, dtype=dt, count=count, offset=int(offset)) if count else np.empty(0, dt)
        out[name] = flat.reshape(shape).copy()
    return out


def _as_json(key: dict) -> dict:
    """``key`` as it reads back from the store (tuples become lists, ...)."""
    return json.loads(json.dumps(key, allow_nan=False))


def _group(root: zarr.Group, path: str) -> zarr.Group | None:
    try:
        node = root[path]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Group) else None


def _committed_key(group: zarr.Group) -> dict | None:
    """The key of the committed version of a checkpoint group, or None when it has none."""
    latest = group.attrs.get("latest")
    if latest is None or f"v{latest}" not in group:
        return None
    return group[f"v{latest}"].attrs.get("meta", {}).get("key")


def read_stage_checkpoint(root: zarr.Group, path: str, key: dict) -> StageCheckpoint | None:
    """The committed stage checkpoint at ``path`` when it belongs to ``key``, else None.

    Parameters
    ----------
    root : zarr.Group
        Campaign root (read-only is enough).
    path : str
        The checkpoint group (:func:`~mapcvd.store.layout.stage_checkpoint_path`).
    key : dict
        The attempt's key (JSON); a checkpoint of another key is ignored.

    Returns
    -------
    StageCheckpoint or None
        None when there is no group, no committed stage, or the key differs.
    """
    group = _group(root, path)
    if group is None or _committed_key(group) != _as_json(key):
        return None
    try:
        packed, stage, meta = read_array_checkpoint(root, path)
        arrays = _unpack(packed["state"], meta["index"])
    except (StoreError, KeyError, ValueError):  # no committed version left, or not a packed state
        return None
    meta = {k: v for k, v in meta.items() if k not in ("key", "index")}
    return StageCheckpoint(stage=stage, arrays=arrays, meta=meta)


def write_stage_checkpoint(root: zarr.Group, path: str, *, stage: int, arrays: dict[str, np.ndarray],
                           meta: dict, key: dict) -> None:
    """Store the state after ``stage`` finished stages of the attempt ``key`` (data first, marker last).

    A committed checkpoint of another key, or one at ``stage`` or beyond (not the
    previous stages of this attempt), is deleted first: it is replaced.

    Parameters
    ----------
    root : zarr.Group
        Campaign root, read-write (the app's own handle, fenced by the run token).
    path : str
        The checkpoint group.
    stage : int
        Finished stages (>= 1): the version, and the commit marker ``latest``.
    arrays : dict of str to numpy.ndarray
        The state's arrays.
    meta : dict
        The state's JSON metadata (``key`` and the arrays' ``index`` are added).
    key : dict
        The attempt's key.

    Raises
    ------
    StoreError
        Bad arrays or metadata, a read-only store; :class:`~mapcvd.store.fence.FencedError`
        once a newer run holds the store.
    """
    stage = int(stage)
    if stage < 1:
        raise StoreError(f"a stage checkpoint holds at least one finished stage, got {stage}")
    key = _as_json(key)
    group = _group(root, path)
    if group is not None:
        latest = group.attrs.get("latest")
        ours = group.attrs.get("kind") == STAGE_CHECKPOINT_KIND and (
            latest is None or (latest < stage and _committed_key(group) == key))
        if not ours:  # another attempt's, or this attempt's from a later stage on: replaced
            del root[path]
            group = None
    if group is None:
        root.create_group(path, attributes={"kind": STAGE_CHECKPOINT_KIND})
    data, index = _pack(arrays)
    write_array_checkpoint(root, path, {"state": data}, version=stage, meta={**meta, "key": key, "index": index})


def delete_stage_checkpoint(root: zarr.Group, path: str) -> bool:
    """Delete the checkpoint group at ``path``; returns whether there was one."""
    if path not in root:
        return False
    del root[path]
    return True


class StageCheckpoints:
    """The stage checkpoint of one row, as a handle an app takes to its worker (picklable).

    The app opens the store itself: read-only to load, and for its writes through a
    fenced store with the driver's run token (:func:`~mapcvd.store.campaign.open_campaign`
    with ``token``), so the app of a run that a newer run replaced stops at its next
    write (:class:`~mapcvd.store.fence.FencedError`).

    Parameters
    ----------
    store_path : str or path-like
        The campaign store.
    path : str
        The row's checkpoint group (:func:`~mapcvd.store.layout.stage_checkpoint_path`).
    token : int or None
        The driver's run token (:func:`~mapcvd.store.fence.run_token`); None: unfenced.
    """

    def __init__(self, store_path: str | os.PathLike, path: str, token: int | None = None) -> None:
        self.store_path, self.path, self.token = str(store_path), str(path), token
        self._root = None

    @classmethod
    def for_row(cls, table_group: zarr.Group, row: int) -> StageCheckpoints | None:
        """The handle of row ``row`` of the run table ``table_group`` (None for a store not on local disk)."""
        root = getattr(table_group.store, "root", None)
        if root is None:
            return None
        return cls(Path(root), stage_checkpoint_path(table_group.path, row), run_token(table_group))

    def __getstate__(self) -> dict:
        return {"store_path": self.store_path, "path": self.path, "token": self.token}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return f"StageCheckpoints({self.store_path!r}, {self.path!r}, token={self.token!r})"

    def _writable(self) -> zarr.Group:
        if self._root is None:
            self._root = open_campaign(self.store_path, "r+", token=self.token)
        return self._root

    def load(self, key: dict) -> StageCheckpoint | None:
        """The row's committed checkpoint of the attempt ``key``, or None (see :func:`read_stage_checkpoint`)."""
        return read_stage_checkpoint(open_campaign(self.store_path, "r"), self.path, key)

    def save(self, stage: int, arrays: dict[str, np.ndarray], meta: dict, *, key: dict) -> None:
        """Store the state after ``stage`` finished stages (see :func:`write_stage_checkpoint`)."""
        write_stage_checkpoint(self._writable(), self.path, stage=stage, arrays=arrays, meta=meta, key=key)

    def delete(self) -> bool:
        """Delete the row's checkpoint (the driver, once the row's result is recorded)."""
        return delete_stage_checkpoint(self._writable(), self.path)
