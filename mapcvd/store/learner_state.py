"""The learner's ingest state: cursors, lost counts, priorities and their checkpoints.

The one learner of MAP's Ape-X style training (Horgan et al., arXiv:1803.00933) reads
the actors' rings (:mod:`mapcvd.store.replay`, which describes the layout and the
one-writer rules) with :class:`LearnerReplay`, the only writer of ``map/learner``.

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

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.campaign import read_array_checkpoint, write_array_checkpoint
from mapcvd.store.metrics import append_metrics
from mapcvd.store.replay import (
    ACTOR_KIND,
    INGEST_PATH,
    LEARNER_KIND,
    LEARNER_PATH,
    _check_actor_id,
    _check_kind,
    _read_rows,
    actor_path,
    fresh_group,
    open_replay,
)
from mapcvd.store.replay_spec import ReplaySpec, _spec_mismatch
from mapcvd.store.weights import read_weights, write_weights

__all__ = ["LearnerReplay"]


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
        """Publish network weights as version ``version`` (:func:`~mapcvd.store.weights.write_weights`)."""
        write_weights(self.root, arrays, version=version, meta=meta)

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
        trim = None if self._metrics_trimmed else self.step
        append_metrics(self.root, step, values, trim_after=trim)
        self._metrics_trimmed = True
