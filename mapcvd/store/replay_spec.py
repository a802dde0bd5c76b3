"""The shape of a campaign's replay (:class:`ReplaySpec`) and its per-transition fields.

The spec is written once into the attributes of ``map/replay`` by the campaign driver
and checked by every actor (:class:`~mapcvd.store.replay.ActorWriter`) and by the
learner (:class:`~mapcvd.store.learner_state.LearnerReplay`) that opens the replay;
:mod:`mapcvd.store.replay` describes the layout and the ring policies (Ape-X style
replay, Horgan et al., arXiv:1803.00933).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mapcvd.errors import StoreError

__all__ = ["TRANSITION_FIELDS", "ReplaySpec"]

_STATE_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class ReplaySpec:
    """Shape of a campaign's replay; stored in the attributes of ``map/replay``.

    Attributes
    ----------
    channels
        Channels of the state grid (one per element).
    points
        Grid points per side (a state is ``channels x points**3``).
    n_actors
        Number of actors (ids ``0 .. n_actors - 1``).
    capacity
        Ring rows per actor; a positive multiple of ``chunk``.
    chunk
        Transitions per chunk: the unit of every write.
    state_dtype
        ``"float16"`` (default, half the I/O) or ``"float32"``.
    """

    channels: int
    points: int
    n_actors: int
    capacity: int = 16384
    chunk: int = 64
    state_dtype: str = "float16"

    def __post_init__(self):
        for name in ("channels", "points", "n_actors", "capacity", "chunk"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise StoreError(f"replay spec {name} must be a positive integer, got {value!r}")
        if self.capacity % self.chunk:
            raise StoreError(
                f"replay spec capacity {self.capacity} must be a multiple of chunk {self.chunk}"
            )
        if self.state_dtype not in _STATE_DTYPES:
            raise StoreError(
                f"replay spec state_dtype must be one of {', '.join(_STATE_DTYPES)},"
                f" got {self.state_dtype!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (as stored in attributes)."""
        return {k: (int(v) if isinstance(v, (int, np.integer)) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any) -> ReplaySpec:
        """Inverse of :meth:`to_dict`; a StoreError for anything malformed."""
        if not isinstance(data, dict):
            raise StoreError(f"malformed replay spec in store: {data!r}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise StoreError(f"malformed replay spec in store: {exc}") from None

    def fields(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Per-transition field name -> (shape of one transition, dtype)."""
        grid = (self.channels, self.points, self.points, self.points)
        sd = np.dtype(self.state_dtype)
        return {
            "state": (grid, sd),
            "next_state": (grid, sd),
            "action": ((), np.dtype(np.int8)),
            "reward": ((), np.dtype(np.float32)),
            "discount": ((), np.dtype(np.float32)),
            "done": ((), np.dtype(bool)),
            "priority0": ((), np.dtype(np.float32)),
            "episode": ((), np.dtype(np.int32)),
            "step": ((), np.dtype(np.int32)),
            "energy": ((), np.dtype(np.float32)),
            "position": ((3,), np.dtype(np.float32)),
        }


TRANSITION_FIELDS = tuple(ReplaySpec(1, 2, 1, 1, 1).fields())
"""Names of the stored per-transition fields, in storage order."""


def _spec_mismatch(stored: ReplaySpec, asked: ReplaySpec, where: str) -> StoreError:
    diffs = [
        f"{k}={v!r} (asked {asked.to_dict()[k]!r})"
        for k, v in stored.to_dict().items()
        if asked.to_dict()[k] != v
    ]
    return StoreError(f"replay spec mismatch at {where}: store has " + ", ".join(diffs))
