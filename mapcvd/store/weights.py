"""Weight publication: the learner writes its network, the actors read it.

Ape-X (Horgan et al., arXiv:1803.00933) actors periodically copy the learner's latest
network. The learner publishes a state dict (numpy arrays, never pickles) as an array
checkpoint at ``map/learner/weights`` (:func:`~mapcvd.store.campaign.write_array_checkpoint`:
data first, then the ``latest`` attribute), so an actor sees either the previous
version or the new one, whole. Only the learner writes here (see
:mod:`mapcvd.store.replay` for the layout and the one-writer rules).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import zarr

from mapcvd.store.campaign import read_array_checkpoint, write_array_checkpoint
from mapcvd.store.layout import WEIGHTS_PATH
from mapcvd.store.replay import fresh_group

__all__ = ["latest_weights_version", "read_weights", "write_weights"]


def write_weights(root: zarr.Group, arrays: Mapping[str, np.ndarray], *, version: int,
                  meta: dict | None = None) -> None:
    """Publish network weights (e.g. a state dict as numpy) as version ``version``."""
    write_array_checkpoint(root, WEIGHTS_PATH, dict(arrays), version=version, meta=dict(meta or {}))


def read_weights(root: zarr.Group) -> tuple[dict[str, np.ndarray], int, dict] | None:
    """The learner's last published weights ``(arrays, version, meta)``, or None before any."""
    node = fresh_group(root, WEIGHTS_PATH)
    if node is None or node.attrs.get("latest") is None:
        return None
    return read_array_checkpoint(root, WEIGHTS_PATH)


def latest_weights_version(root: zarr.Group) -> int | None:
    """Version of the last published weights, read cheaply from disk (None before any)."""
    node = fresh_group(root, WEIGHTS_PATH)
    return None if node is None else node.attrs.get("latest")
