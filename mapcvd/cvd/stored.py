"""Readers of what the CVD campaign keeps in the store.

The NADE-CVD, the run tables and the agents' checkpoints (paths in
:mod:`mapcvd.store.layout`), read by the learning steps, the surrogate chooser and the
commands (Rajak et al., npj
Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3). Every checkpoint is
arrays plus JSON attributes (:func:`mapcvd.store.write_array_checkpoint`), never a
pickle.
"""

from __future__ import annotations

import math

import numpy as np

from mapcvd.errors import StoreError
from mapcvd.store.layout import NADE_WEIGHTS

__all__ = ["dataset_table", "jsonable", "load_nade", "next_version", "read_checkpoint"]

def jsonable(value):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def next_version(group, name: str) -> int:
    """The version after the ``latest`` of checkpoint ``name`` (1 when there is none)."""
    try:
        latest = group[name].attrs.get("latest")
    except KeyError:
        latest = None
    return 1 if latest is None else int(latest) + 1


def dataset_table(group):
    """The ``cvd/dataset`` run table; StoreError when the store has none."""
    from mapcvd.store.cvd_dataset import RunTable  # noqa: PLC0415
    from mapcvd.store.layout import DATASET_PATH  # noqa: PLC0415

    if DATASET_PATH not in group:
        raise StoreError(f"no CVD dataset in {group.store}; run 'mapcvd cvd dataset' first")
    return RunTable.open(group, DATASET_PATH)


def read_checkpoint(group, name: str, what: str, command: str, version: int | None = None):
    """``(arrays, version, meta)`` of a checkpoint; StoreError naming the command that makes it."""
    from mapcvd.store import read_array_checkpoint  # noqa: PLC0415

    if name not in group:
        raise StoreError(f"no {what} in {group.store}; run 'mapcvd cvd {command}' first")
    return read_array_checkpoint(group, name, version=version)


def load_nade(group, version: int | None = None):
    """``(model, version, meta, ranges)`` of the stored NADE-CVD."""
    from mapcvd.cvd.nade import from_arrays  # noqa: PLC0415
    from mapcvd.cvd.validation import ranges_from_dict  # noqa: PLC0415

    arrays, version, meta = read_checkpoint(group, NADE_WEIGHTS, "trained NADE-CVD", "nade", version)
    return from_arrays(arrays, meta["model"]), version, meta, ranges_from_dict(meta["ranges"])
