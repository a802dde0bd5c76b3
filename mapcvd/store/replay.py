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

*Overrun.* Actors never wait for the learner (Ape-X actors do not block). When the
learner lags by more than what the ring holds, the oldest unread transitions are
overwritten; the learner detects this from the counters: after reading rows it reads
``committed`` again (``c2``); the actor may at that moment be rewriting the chunk that
starts at ``floor(c2 / chunk) * chunk``, which covers global numbers up to
``floor(c2 / chunk) * chunk + chunk - C``; rows below that bound are dropped, the
cursor moves past them and ``lost[actor]`` counts them. So every transition the learner
returns is intact, none is returned twice, and every committed transition is either
returned once or counted as lost. With ``C`` several times what an actor writes
between two polls, nothing is lost.

*Learner state and resume.* Cursors, lost counts and the per-slot priorities (slot
``g % C`` of each actor: the initial ``priority0`` at ingest, then whatever the learner
sets) live in memory and are saved together, atomically, with
:func:`~mapcvd.store.campaign.write_array_checkpoint` (``map/learner/ingest``) by
:meth:`LearnerReplay.checkpoint`; the weights go to ``map/learner/weights`` the same
way. A new :class:`LearnerReplay` on the same store starts from the last checkpoint:
:meth:`~LearnerReplay.poll` returns exactly the transitions committed after the saved
cursors, and :meth:`~LearnerReplay.reload` returns the already-ingested rows still in
the rings, to rebuild the learner's in-memory cache and sum tree. Transitions polled
after the last checkpoint are polled again after a crash (the cursor moves on disk only
with the state that consumed them).

*State dtype.* ``state_dtype`` is ``"float16"`` by default: the density grids are sums
of Gaussians of height 1 (values from 0 to a few tens), where float16 keeps a relative
precision of 4.9e-4 and is far below its 65504 maximum; it halves the dominant I/O
(two grids per transition) and the learner's cache. ``"float32"`` keeps grids exactly.

One process per actor id: two :class:`ActorWriter` objects for one actor at the same
time would break the one-writer rule (nothing here can detect it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.campaign import read_array_checkpoint, write_array_checkpoint

__all__ = [
    "ACTOR_KIND",
    "LEARNER_KIND",
    "LEARNER_PATH",
    "REPLAY_KIND",
    "REPLAY_PATH",
    "TRANSITION_FIELDS",
    "ActorWriter",
    "LearnerReplay",
    "ReplaySpec",
    "actor_path",
    "create_replay",
    "fresh_group",
    "latest_weights_version",
    "open_replay",
    "read_metrics",
    "read_weights",
]

REPLAY_PATH = "map/replay"
LEARNER_PATH = "map/learner"
WEIGHTS_PATH = f"{LEARNER_PATH}/weights"
INGEST_PATH = f"{LEARNER_PATH}/ingest"
METRICS_PATH = f"{LEARNER_PATH}/metrics"
REPLAY_KIND = "mapcvd-replay"
ACTOR_KIND = "mapcvd-replay-actor"
LEARNER_KIND = "mapcvd-replay-learner"

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


def _node(root: zarr.Group, path: str) -> zarr.Group | zarr.Array | None:
    try:
        return root[path]
    except KeyError:
        return None


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


# ----------------------------------------------------------------------- learner


@dataclass
class _ActorView:
    arrays: dict[str, zarr.Array]
    counter: zarr.Array


class LearnerReplay:
    """The learner's side: ingest cursors, priorities, weights, metrics.

    Parameters
    ----------
    root
        Campaign root group (read-write for :meth:`checkpoint`, :meth:`save_weights`,
        :meth:`log_metrics`; read-only suffices to poll).
    spec
        Expected spec (None: the stored one).

    Resumes from the last :meth:`checkpoint` in ``map/learner/ingest`` when there is one.
    """

    def __init__(self, root: zarr.Group, spec: ReplaySpec | None = None):
        _, self.spec = open_replay(root, spec)
        self.root = root
        A, C = self.spec.n_actors, self.spec.capacity
        group = fresh_group(root, LEARNER_PATH)
        if group is not None and group.attrs.get("kind") is not None:
            _check_kind(group, LEARNER_KIND, f"{LEARNER_PATH} in store {root.store}")
            stored = ReplaySpec.from_dict(group.attrs.get("spec"))
            if stored != self.spec:
                raise _spec_mismatch(stored, self.spec, LEARNER_PATH)
        elif not root.store.read_only:
            root.require_group(LEARNER_PATH).update_attributes(
                {"kind": LEARNER_KIND, "spec": self.spec.to_dict()}
            )
        self.cursors = np.zeros(A, dtype=np.int64)
        self.lost = np.zeros(A, dtype=np.int64)
        self.priorities = np.zeros((A, C), dtype=np.float32)
        self.step = 0
        self.meta: dict = {}
        self._version = 0
        ingest = fresh_group(root, INGEST_PATH) if group is not None else None
        if ingest is not None and ingest.attrs.get("latest") is not None:
            # (a first checkpoint that crashed before its commit leaves no "latest")
            arrays, self._version, meta = read_array_checkpoint(root, INGEST_PATH)
            for name, target in (("cursors", self.cursors), ("lost", self.lost),
                                 ("priorities", self.priorities)):
                if arrays[name].shape != target.shape:
                    raise StoreError(
                        f"{INGEST_PATH} {name} has shape {arrays[name].shape}, expected {target.shape}"
                    )
                target[...] = arrays[name]
            self.step = int(meta.get("step", 0))
            self.meta = meta
        self._views: dict[int, _ActorView] = {}
        self._metrics_trimmed = False

    # ------------------------------------------------------------------ actors

    def _view(self, actor: int) -> _ActorView | None:
        view = self._views.get(actor)
        if view is not None:
            return view
        path = actor_path(actor)
        group = fresh_group(self.root, path)
        if group is None or group.attrs.get("kind") is None:
            return None  # not started yet (or being created)
        _check_kind(group, ACTOR_KIND, f"{path} in store {self.root.store}")
        stored = ReplaySpec.from_dict(group.attrs.get("spec"))
        if stored != self.spec:
            raise _spec_mismatch(stored, self.spec, path)
        view = _ActorView({name: group[name] for name in self.spec.fields()}, group["committed"])
        self._views[actor] = view
        return view

    def committed(self, actor: int) -> int:
        """The actor's commit counter as on disk now (0 before it starts)."""
        view = self._view(_check_actor_id(actor, self.spec))
        return 0 if view is None else int(view.counter[0])

    def lag(self) -> np.ndarray:
        """Committed but not yet polled transitions per actor."""
        return np.array([self.committed(a) - self.cursors[a] for a in range(self.spec.n_actors)])

    def _read_valid(self, actor: int, view: _ActorView, start: int, stop: int) -> tuple[int, dict]:
        """Rows ``start..stop-1`` read and validated; returns (first valid number, rows)."""
        C, k = self.spec.capacity, self.spec.chunk
        lo = max(start, stop - C)
        rows = _read_rows(view.arrays, lo, stop, C)
        c2 = int(view.counter[0])  # seqlock-style re-check after the data read
        safe = (c2 // k) * k + k - C  # rows below this may have been overwritten meanwhile
        first = max(lo, safe)
        if first > lo:
            rows = {name: v[first - lo :] for name, v in rows.items()}
        return min(first, stop), rows

    def poll(self, max_per_actor: int | None = None) -> dict[int, dict[str, np.ndarray]]:
        """New committed transitions of every actor since its cursor; move the cursors.

        Parameters
        ----------
        max_per_actor
            Read at most this many per actor (the rest stays for the next poll).

        Returns
        -------
        dict
            actor id -> field -> array (leading length the count), plus ``"index"``
            (global numbers, int64) and ``"slot"`` (``actor * capacity + index %
            capacity``, the learner-wide slot). Actors with nothing new are left out.
            The slots' priorities are set to ``priority0``.
        """
        if max_per_actor is not None and max_per_actor < 1:
            raise StoreError(f"max_per_actor must be positive, got {max_per_actor}")
        C = self.spec.capacity
        out = {}
        for actor in range(self.spec.n_actors):
            view = self._view(actor)
            if view is None:
                continue
            c1 = int(view.counter[0])
            cursor = int(self.cursors[actor])
            if c1 < cursor:
                raise StoreError(
                    f"commit counter of actor {actor} went back from {cursor} to {c1}:"
                    " its replay group was rewritten"
                )
            stop = c1 if max_per_actor is None else min(c1, cursor + max_per_actor)
            if stop == cursor:
                continue
            first, rows = self._read_valid(actor, view, cursor, stop)
            self.lost[actor] += first - cursor
            self.cursors[actor] = stop
            if stop > first:
                index = np.arange(first, stop, dtype=np.int64)
                rows["index"] = index
                rows["slot"] = actor * C + index % C
                self.priorities[actor, index % C] = rows["priority0"]
                out[actor] = rows
        return out

    def reload(self, max_per_actor: int | None = None) -> dict[int, dict[str, np.ndarray]]:
        """Already-ingested transitions still in the rings (to rebuild a cache on resume).

        Returns the newest ``min(max_per_actor, capacity)`` rows below each cursor that
        are still intact, in the format of :meth:`poll`; cursors do not move and the
        priorities are the checkpointed ones (not ``priority0``).
        """
        C = self.spec.capacity
        n = C if max_per_actor is None else min(C, int(max_per_actor))
        out = {}
        for actor in range(self.spec.n_actors):
            view = self._view(actor)
            cursor = int(self.cursors[actor])
            if view is None or cursor == 0 or n < 1:
                continue
            first, rows = self._read_valid(actor, view, max(0, cursor - n), cursor)
            if cursor > first:
                index = np.arange(first, cursor, dtype=np.int64)
                rows["index"] = index
                rows["slot"] = actor * C + index % C
                out[actor] = rows
        return out

    # --------------------------------------------------------------- priorities

    def update_priorities(self, slots, priorities) -> None:
        """Set priorities of learner-wide slots (as returned in ``"slot"``)."""
        slots = np.asarray(slots, dtype=np.int64)
        values = np.asarray(priorities, dtype=np.float32)
        if slots.size and (slots.min() < 0 or slots.max() >= self.priorities.size):
            raise StoreError(f"priority slot out of range 0..{self.priorities.size - 1}")
        if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
            raise StoreError("priorities must be finite and >= 0")
        self.priorities.reshape(-1)[slots] = values

    # ------------------------------------------------------------- checkpoints

    def checkpoint(self, step: int, meta: dict | None = None) -> int:
        """Save cursors, lost counts and priorities together (commit after data).

        Returns the checkpoint version written.
        """
        meta = dict(meta or {})
        meta["step"] = int(step)
        self._version += 1
        write_array_checkpoint(
            self.root, INGEST_PATH,
            {"cursors": self.cursors, "lost": self.lost, "priorities": self.priorities},
            version=self._version, meta=meta,
        )
        self.step, self.meta = int(step), meta
        return self._version

    def save_weights(self, arrays: Mapping[str, np.ndarray], *, version: int, meta: dict | None = None) -> None:
        """Publish network weights (e.g. a state dict as numpy) as version ``version``."""
        write_array_checkpoint(self.root, WEIGHTS_PATH, dict(arrays), version=version, meta=dict(meta or {}))

    def load_weights(self) -> tuple[dict[str, np.ndarray], int, dict] | None:
        """The last published weights, or None before any."""
        return read_weights(self.root)

    # ------------------------------------------------------------------ metrics

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Append one row of scalar metrics at ``step``.

        The metric names are fixed by the first call. The group's ``rows`` attribute
        is written last (commit after data: a reader can see an array grown before its
        value is written); rows past the last :meth:`checkpoint` of a crashed learner
        are dropped when a new learner logs its first row.
        """
        names = sorted(values)
        if not names or any(not isinstance(n, str) or not n.isidentifier() or n == "step" for n in names):
            raise StoreError(f"metric names must be identifiers other than 'step', got {names}")
        metrics = _node(self.root, METRICS_PATH)
        if metrics is None:
            metrics = self.root.require_group(METRICS_PATH)
            for name in names:
                metrics.create_array(name, shape=(0,), chunks=(1024,), dtype=np.float64)
            metrics.create_array("step", shape=(0,), chunks=(1024,), dtype=np.int64)
            metrics.attrs["names"] = names
        if metrics.attrs.get("names") != names:
            raise StoreError(f"metric names {names} differ from the stored {metrics.attrs.get('names')}")
        if not self._metrics_trimmed:
            steps = np.asarray(metrics["step"][: _metric_rows(metrics)])
            keep = int(np.searchsorted(steps, self.step, side="right")) if steps.size else 0
            metrics.attrs["rows"] = keep  # first: readers never see a row being dropped
            for name in [*names, "step"]:
                metrics[name].resize((keep,))
            self._metrics_trimmed = True
        n = _metric_rows(metrics)
        for name in [*names, "step"]:
            arr = metrics[name]
            arr.resize((n + 1,))  # a reader may see the new shape before the value: rows is the commit
            arr[n] = int(step) if name == "step" else float(values[name])
        metrics.attrs["rows"] = n + 1


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


def _metric_rows(metrics: zarr.Group) -> int:
    """Committed rows of the metrics group (stores of earlier versions: the length of ``step``)."""
    rows = metrics.attrs.get("rows")
    return int(metrics["step"].shape[0]) if rows is None else int(rows)


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
