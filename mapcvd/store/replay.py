"""The distributed replay store: one group per actor, one learner group.

MAP trains like Ape-X (Horgan et al., arXiv:1803.00933): many actor processes run
episodes and write n-step transitions; one learner ingests them, samples by priority,
trains and publishes weights. Zarr v3 has no locks, so this module builds the replay on
the one-writer rules of :mod:`mapcvd.store.campaign`:

Layout (below the campaign root)::

    map/replay/                 attrs: kind="mapcvd-replay", spec (ReplaySpec)
                                written once, by the campaign driver (create_replay)
    map/replay/actor_007/       written only by actor 7 (ActorWriter)
        attrs: kind="mapcvd-replay-actor", actor, spec      (written once, at creation)
        state, next_state       (C, channels, n, n, n) spec.state_dtype
        action int8, reward float32 (n-step return), discount float32 (gamma^m, 0 at a
        terminal end), done bool, priority0 float32, episode int32, step int32,
        energy float32          (C,)
        position float32        (C, 3)
        committed int64         (1,)   the commit counter, written after the data
    map/learner/                written only by the learner (LearnerReplay)
        attrs: kind="mapcvd-replay-learner", spec
        ingest/                 array checkpoint: cursors (A,), lost (A,),
                                priorities (A, C); meta: step, ...
        weights/                array checkpoint: the network's state dict + meta
        metrics/                step int64 + one float64 array per metric; attrs: rows (the commit)

This module holds the layout's paths and the actors' rings (:class:`ActorWriter`); the
shared :class:`~mapcvd.store.replay_spec.ReplaySpec` is in :mod:`mapcvd.store.replay_spec`,
the learner's side lives in
:mod:`mapcvd.store.learner_state` (ingest cursors, priorities, checkpoints),
:mod:`mapcvd.store.weights` (weight publication) and :mod:`mapcvd.store.metrics`
(the metrics log and the trained-time bookkeeping).

Policies
--------
*Ring, global counters.* Each actor's arrays are a preallocated ring of ``C =
spec.capacity`` rows; transition number ``g`` (0, 1, 2, ... for the actor's whole life)
lives in row ``g % C``. ``committed`` holds the number of transitions committed so far
(a global count, monotonic), and the learner's cursor for that actor is a global count
too, so one subtraction tells how far the learner lags.

*Whole chunks, commit after data.* Arrays are chunked along the first axis in chunks of
exactly ``spec.chunk`` transitions and ``C`` is a multiple of ``chunk``, so no chunk
wraps. The actor buffers transitions in memory and writes a chunk only as a whole (one
``chunk``-row write per array; zarr writes each chunk file whole, atomically with
temp + rename on LocalStore since zarr 3.1.3), and only then rewrites ``committed``.
The learner reads only rows below ``committed``. ``flush()`` (call it at an episode's
end, or on a timer) may commit a *partial* chunk: it writes the whole chunk region,
padded with zeros, and commits only the real rows. The buffer stays in memory, and the
next write of that chunk is the same single writer rewriting the whole chunk file with
the same committed rows plus new ones; a reader sees the old file or the new one, and
both hold identical committed rows. No chunk ever has two writers.

*Crash of an actor.* Rows at or above ``committed`` may hold a half-written chunk: they
are garbage and never read. Reopening the actor's group continues from ``committed``
(the committed rows of a partial chunk are reloaded into the buffer, so the chunk is
rewritten with identical content); transitions that were only in the dead process's
buffer are lost, as they were never committed.

*State dtype.* ``state_dtype`` is ``"float16"`` by default: the density grids are sums
of Gaussians of height 1 (values from 0 to a few tens), where float16 keeps a relative
precision of 4.9e-4 and is far below its 65504 maximum; it halves the dominant I/O
(two grids per transition) and the learner's cache. ``"float32"`` keeps grids exactly.

One process per actor id: two :class:`ActorWriter` objects for one actor at the same
time would break the one-writer rule (nothing here can detect it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.layout import (
    ACTOR_KIND,
    INGEST_PATH,
    LEARNER_KIND,
    LEARNER_PATH,
    METRICS_PATH,
    REPLAY_KIND,
    REPLAY_PATH,
    WEIGHTS_PATH,
)
from mapcvd.store.replay_spec import ReplaySpec, _spec_mismatch

__all__ = [
    "ACTOR_KIND",
    "INGEST_PATH",
    "LEARNER_KIND",
    "LEARNER_PATH",
    "METRICS_PATH",
    "REPLAY_KIND",
    "REPLAY_PATH",
    "WEIGHTS_PATH",
    "ActorWriter",
    "actor_path",
    "create_replay",
    "fresh_group",
    "open_replay",
]


def fresh_group(root: zarr.Group, path: str) -> zarr.Group | None:
    """The group at ``path`` read from disk now (attributes not cached), or None."""
    full = f"{root.path}/{path}" if root.path else path
    try:
        node = zarr.open(store=root.store, path=full, mode="r", zarr_format=3)
    except (FileNotFoundError, KeyError, zarr.errors.BaseZarrError):
        return None
    if not isinstance(node, zarr.Group):
        raise StoreError(f"{path!r} in store {root.store} is an array, expected a group")
    return node


def _check_kind(group: zarr.Group, kind: str, where: str) -> None:
    found = group.attrs.get("kind")
    if found != kind:
        raise StoreError(f"{where} is not a {kind} group: found kind {found!r}")


# ------------------------------------------------------------------ replay root


def create_replay(root: zarr.Group, spec: ReplaySpec) -> zarr.Group:
    """Create ``map/replay`` with ``spec`` (the campaign driver, once per campaign).

    Idempotent on resume: an existing replay with the same spec is returned as is.

    Raises
    ------
    StoreError
        If ``map/replay`` exists with another kind or spec.
    """
    if not isinstance(spec, ReplaySpec):
        raise StoreError(f"spec must be a ReplaySpec, got {type(spec).__name__}")
    if fresh_group(root, REPLAY_PATH) is not None:
        return open_replay(root, spec)[0]
    try:
        return root.create_group(
            REPLAY_PATH, attributes={"kind": REPLAY_KIND, "spec": spec.to_dict()}
        )
    except (OSError, zarr.errors.BaseZarrError) as exc:
        raise StoreError(f"cannot create {REPLAY_PATH} in store {root.store}: {exc}") from None


def open_replay(root: zarr.Group, spec: ReplaySpec | None = None) -> tuple[zarr.Group, ReplaySpec]:
    """Open ``map/replay`` and return it with its stored spec.

    Raises
    ------
    StoreError
        If there is no replay, it is of another kind, or its spec differs from ``spec``.
    """
    group = fresh_group(root, REPLAY_PATH)
    if group is None:
        raise StoreError(
            f"no replay in store {root.store}: the campaign driver must call create_replay first"
        )
    _check_kind(group, REPLAY_KIND, f"{REPLAY_PATH} in store {root.store}")
    stored = ReplaySpec.from_dict(group.attrs.get("spec"))
    if spec is not None and spec != stored:
        raise _spec_mismatch(stored, spec, REPLAY_PATH)
    return root[REPLAY_PATH], stored


def actor_path(actor_id: int) -> str:
    """Path of actor ``actor_id``'s group below the campaign root."""
    return f"{REPLAY_PATH}/actor_{int(actor_id):03d}"


def _check_actor_id(actor_id: Any, spec: ReplaySpec) -> int:
    if isinstance(actor_id, bool) or not isinstance(actor_id, (int, np.integer)):
        raise StoreError(f"actor id must be an integer, got {actor_id!r}")
    if not 0 <= actor_id < spec.n_actors:
        raise StoreError(f"actor id {actor_id} out of range 0..{spec.n_actors - 1}")
    return int(actor_id)


def _ring_slices(start: int, stop: int, capacity: int) -> list[tuple[int, int]]:
    """Ring rows of global numbers ``start .. stop-1`` (at most ``capacity`` of them)."""
    if stop <= start:
        return []
    lo = start % capacity
    n = stop - start
    if lo + n <= capacity:
        return [(lo, lo + n)]
    return [(lo, capacity), (0, n - (capacity - lo))]


def _read_rows(arrays: Mapping[str, zarr.Array], start: int, stop: int, capacity: int) -> dict[str, np.ndarray]:
    parts = _ring_slices(start, stop, capacity)
    out = {}
    for name, arr in arrays.items():
        pieces = [np.asarray(arr[a:b]) for a, b in parts]
        out[name] = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    return out


# ----------------------------------------------------------------------- actors


class ActorWriter:
    """The only writer of one actor's replay group.

    Parameters
    ----------
    root
        Campaign root group, read-write (each actor process opens its own).
    actor_id
        The actor's id, ``0 .. spec.n_actors - 1``.
    spec
        Expected spec; checked against the stored one (None: take the stored one).

    Creating the group the first time preallocates every array; reopening continues
    from the committed counter (see the module docstring).
    """

    def __init__(self, root: zarr.Group, actor_id: int, spec: ReplaySpec | None = None):
        _, self.spec = open_replay(root, spec)
        self.actor_id = _check_actor_id(actor_id, self.spec)
        self.path = actor_path(self.actor_id)
        if root.store.read_only:
            raise StoreError(f"cannot write replay of actor {self.actor_id}: store is read-only")
        self._fields = self.spec.fields()
        self.group = self._open_or_create(root)
        self._arrays = {name: self.group[name] for name in self._fields}
        self._counter = self.group["committed"]
        C, k = self.spec.capacity, self.spec.chunk
        self._buffer = {
            name: np.zeros((k, *shape), dtype=dtype) for name, (shape, dtype) in self._fields.items()
        }
        committed = int(self._counter[0])
        self._committed = committed
        self._base = (committed // k) * k  # global number of buffer row 0
        self._fill = committed - self._base
        if self._fill:  # a committed partial chunk: reload it, to rewrite it whole later
            rows = _read_rows(self._arrays, self._base, committed, C)
            for name, values in rows.items():
                self._buffer[name][: self._fill] = values

    def _open_or_create(self, root: zarr.Group) -> zarr.Group:
        where = f"{self.path} in store {root.store}"
        group = fresh_group(root, self.path)
        if group is not None and group.attrs.get("kind") is not None:
            _check_kind(group, ACTOR_KIND, where)
            stored = ReplaySpec.from_dict(group.attrs.get("spec"))
            if stored != self.spec:
                raise _spec_mismatch(stored, self.spec, self.path)
            if group.attrs.get("actor") != self.actor_id:
                raise StoreError(f"{where} belongs to actor {group.attrs.get('actor')!r}")
            return root[self.path]
        # new, or left half-created by a crash (attributes are written last): (re)create
        C, k = self.spec.capacity, self.spec.chunk
        group = root.require_group(self.path)
        for name, (shape, dtype) in self._fields.items():
            group.create_array(
                name, shape=(C, *shape), chunks=(k, *shape), dtype=dtype, fill_value=0,
                overwrite=True,
            )
        group.create_array("committed", shape=(1,), chunks=(1,), dtype=np.int64, fill_value=0,
                           overwrite=True)
        # one write of zarr.json, last: the group counts as created only now
        # (``attrs.update`` would write once per key, "kind" first)
        group.update_attributes({"kind": ACTOR_KIND, "actor": self.actor_id, "spec": self.spec.to_dict()})
        return group

    # ---------------------------------------------------------------- counters

    @property
    def committed(self) -> int:
        """Transitions committed so far (global count; the next one gets this number)."""
        return self._committed

    @property
    def pending(self) -> int:
        """Transitions added but not yet committed (lost if the process dies now)."""
        return self._base + self._fill - self._committed

    @property
    def added(self) -> int:
        """Global number the next added transition gets."""
        return self._base + self._fill

    # ------------------------------------------------------------------- writes

    def _validate(self, batch: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
        if not isinstance(batch, Mapping):
            raise StoreError(f"transitions must be a mapping of field -> array, got {type(batch).__name__}")
        missing = [f for f in self._fields if f not in batch]
        extra = [f for f in batch if f not in self._fields]
        if missing or extra:
            raise StoreError(
                f"transition fields: missing {missing or 'none'}, unknown {extra or 'none'}"
                f" (expected {', '.join(self._fields)})"
            )
        out, n = {}, None
        for name, (shape, dtype) in self._fields.items():
            value = np.asarray(batch[name])
            if value.shape[1:] != shape or value.ndim != len(shape) + 1:
                raise StoreError(
                    f"transition field {name!r} has shape {value.shape},"
                    f" expected (n, {', '.join(map(str, shape))})".replace(", )", ")")
                )
            if n is None:
                n = value.shape[0]
            elif value.shape[0] != n:
                raise StoreError(f"transition fields disagree on the count: {name!r} has {value.shape[0]}, others {n}")
            out[name] = value
        if n:
            act = out["action"]
            if not np.issubdtype(act.dtype, np.integer) or act.min() < -128 or act.max() > 127:
                raise StoreError("action must be integers in -128..127 (stored as int8)")
            p = out["priority0"]
            if not np.all(np.isfinite(p)) or np.min(p) < 0:
                raise StoreError("priority0 must be finite and >= 0")
        return out, int(n or 0)

    def add(self, transition: Mapping[str, Any]) -> int:
        """Buffer one transition (a mapping field -> value); return its global number.

        A chunk is written, and the counter moved, each time the buffer fills.
        """
        if not isinstance(transition, Mapping):
            raise StoreError(f"a transition must be a mapping of field -> value, got {type(transition).__name__}")
        return int(self.add_batch({name: np.asarray(v)[None] for name, v in transition.items()})[0])

    def add_batch(self, transitions: Mapping[str, Any]) -> np.ndarray:
        """Buffer ``n`` transitions (field -> array of leading length ``n``).

        Returns the global numbers they get. Every chunk that fills is written whole
        and committed before the next one is started.
        """
        data, n = self._validate(transitions)
        first = self.added
        k = self.spec.chunk
        done = 0
        while done < n:
            take = min(k - self._fill, n - done)
            for name, values in data.items():
                self._buffer[name][self._fill : self._fill + take] = values[done : done + take]
            self._fill += take
            done += take
            if self._fill == k:
                self._write_chunk()
        return np.arange(first, first + n, dtype=np.int64)

    def flush(self) -> int:
        """Commit every buffered transition now (e.g. at an episode's end); return ``committed``.

        A partial chunk is written whole (padded) and committed up to its real rows;
        it stays buffered, and is rewritten whole by the next write.
        """
        if self._fill and self._base + self._fill > self._committed:
            self._write_chunk()
        return self._committed

    def _write_chunk(self) -> None:
        C, k = self.spec.capacity, self.spec.chunk
        row = self._base % C
        if self._fill < k:  # padding rows are not committed; zero them for tidiness
            for buf in self._buffer.values():
                buf[self._fill :] = 0
        for name, arr in self._arrays.items():
            arr[row : row + k] = self._buffer[name]
        new = self._base + self._fill
        self._counter[:] = np.array([new], dtype=np.int64)  # commit after data
        self._committed = new
        if self._fill == k:
            self._base += k
            self._fill = 0

    def close(self) -> None:
        """Flush what is buffered."""
        self.flush()
