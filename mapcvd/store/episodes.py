"""Append-only episode logs: one writer, many readers, commit after data.

MAP's actors and its evaluation driver record every episode they run: a summary row
(return, progress, epsilon, ...), one row per action (energy, agent and guided-atom
positions, each reward term) and, optionally, one frame of positions per action (the
structures that the pathway analysis cuts into NEB segments). An episode log is a
group written by exactly one process (an actor writes ``map/episodes/actor_007``, the
evaluation driver ``map/evaluation/greedy``), read by any number of others.

Layout::

    <path>/                 attrs: kind="mapcvd-episode-log", n_atoms, summary_fields,
                            step_fields, frames (bool), status (free-form, the writer's)
        summary/<field>     (E,) float64, one row per episode
        steps/<field>       (S, ...) one row per action of every episode, in order
        step_offset         (E,) int64  first step row of each episode
        frames              (F, n_atoms, 3) float64, ``actions + 1`` frames per episode
        committed           (3,) int64  episodes, steps, frames committed

Arrays grow by doubling (``resize`` rewrites only ``zarr.json``, atomically on
LocalStore); rows are written first and ``committed`` last, so a reader that reads
``committed`` first sees only whole episodes, and a writer killed mid-episode leaves
rows past ``committed`` that the next writer overwrites. Rows of a chunk shared by
committed and uncommitted data are rewritten whole by the one writer with the same
committed content, so a reader sees either version of the file with identical
committed rows (the argument of :mod:`mapcvd.store.replay`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.layout import EPISODE_LOG_KIND
from mapcvd.store.replay import fresh_group as _fresh

_CHUNK_ROWS = 256
_FRAME_CHUNK = 8


class EpisodeWriter:
    """The only writer of one episode log.

    Parameters
    ----------
    root
        Campaign root group, opened read-write.
    path
        Path of the log below ``root``.
    n_atoms
        Atoms per frame.
    summary_fields
        Names of the per-episode scalars.
    step_fields
        Per-action field name -> shape of one row (``()`` for scalars).
    frames
        Whether frames are stored.

    Reopening an existing log checks that the fields agree and continues after the
    last committed episode.
    """

    def __init__(self, root: zarr.Group, path: str, *, n_atoms: int, summary_fields, step_fields: Mapping[str, tuple],
                 frames: bool = True):
        if root.store.read_only:
            raise StoreError(f"cannot write episode log {path}: store is read-only")
        self.path = path
        self.n_atoms = int(n_atoms)
        self.summary_fields = list(summary_fields)
        self.step_fields = {k: tuple(v) for k, v in step_fields.items()}
        self.frames = bool(frames)
        layout = {"n_atoms": self.n_atoms, "summary_fields": self.summary_fields,
                  "step_fields": {k: list(v) for k, v in self.step_fields.items()}, "frames": self.frames}
        existing = _fresh(root, path)
        if existing is not None and existing.attrs.get("kind") is not None:
            if existing.attrs.get("kind") != EPISODE_LOG_KIND:
                raise StoreError(f"{path} is not an episode log (kind {existing.attrs.get('kind')!r})")
            stored = {k: existing.attrs.get(k) for k in layout}
            if stored != layout:
                raise StoreError(f"episode log {path} holds another layout: {stored} (asked {layout})")
            self.group = root[path]
        else:
            self.group = self._create(root, layout)
        self._counts = np.asarray(self.group["committed"][:], dtype=np.int64)

    def _create(self, root: zarr.Group, layout: dict) -> zarr.Group:
        group = root.require_group(self.path)
        for name in self.summary_fields:
            group.create_array(f"summary/{name}", shape=(0,), chunks=(_CHUNK_ROWS,), dtype=np.float64,
                               overwrite=True)
        for name, shape in self.step_fields.items():
            group.create_array(f"steps/{name}", shape=(0, *shape), chunks=(_CHUNK_ROWS, *shape),
                               dtype=np.float64, overwrite=True)
        group.create_array("step_offset", shape=(0,), chunks=(_CHUNK_ROWS,), dtype=np.int64, overwrite=True)
        if self.frames:
            group.create_array("frames", shape=(0, self.n_atoms, 3), chunks=(_FRAME_CHUNK, self.n_atoms, 3),
                               dtype=np.float64, overwrite=True)
        group.create_array("committed", shape=(3,), chunks=(3,), dtype=np.int64, fill_value=0, overwrite=True)
        group.update_attributes({"kind": EPISODE_LOG_KIND, **layout})  # last: the log now exists
        return group

    @property
    def count(self) -> int:
        """Episodes committed so far."""
        return int(self._counts[0])

    def append(self, summary: Mapping[str, float], steps: Mapping[str, Any], frames: np.ndarray | None = None) -> int:
        """Write one episode and commit it; return its index in the log.

        Parameters
        ----------
        summary
            One value per summary field.
        steps
            Per step field, an array of ``n`` rows (``n`` actions, possibly 0).
        frames
            ``(n + 1, n_atoms, 3)`` positions (the start and after each action), when the
            log stores frames.
        """
        missing = sorted(set(self.summary_fields) ^ set(summary))
        if missing:
            raise StoreError(f"episode summary fields differ from the log's: {missing}")
        rows = {k: np.asarray(steps.get(k, ()), dtype=np.float64) for k in self.step_fields}
        lengths = {len(v) for v in rows.values()}
        if len(lengths) != 1 or set(steps) != set(self.step_fields):
            raise StoreError(f"episode steps need the fields {sorted(self.step_fields)} with one length")
        n = lengths.pop()
        for k, shape in self.step_fields.items():
            if rows[k].shape[1:] != shape:
                raise StoreError(f"step field {k!r} has rows of shape {rows[k].shape[1:]}, expected {shape}")
        e, s, f = (int(c) for c in self._counts)
        g = self.group
        self._grow(g["step_offset"], e + 1)
        g["step_offset"][e] = s
        for k in self.summary_fields:
            self._grow(g[f"summary/{k}"], e + 1)
            g[f"summary/{k}"][e] = float(summary[k])
        if n:
            for k in self.step_fields:
                self._grow(g[f"steps/{k}"], s + n)
                g[f"steps/{k}"][s : s + n] = rows[k]
        n_frames = 0
        if self.frames:
            if frames is None:
                raise StoreError(f"episode log {self.path} stores frames: pass them")
            frames = np.asarray(frames, dtype=np.float64)
            if frames.shape != (n + 1, self.n_atoms, 3):
                raise StoreError(f"frames have shape {frames.shape}, expected {(n + 1, self.n_atoms, 3)}")
            self._grow(g["frames"], f + n + 1)
            g["frames"][f : f + n + 1] = frames
            n_frames = n + 1
        self._counts = np.array([e + 1, s + n, f + n_frames], dtype=np.int64)
        g["committed"][:] = self._counts  # commit after data
        return e

    @staticmethod
    def _grow(array: zarr.Array, rows: int) -> None:
        if array.shape[0] < rows:
            new = max(rows, 2 * array.shape[0], array.chunks[0])
            array.resize((new, *array.shape[1:]))

    def set_status(self, status: Mapping[str, Any]) -> None:
        """Replace the free-form live status (one JSON write), e.g. for dashboards."""
        self.group.update_attributes({"status": dict(status)})


class EpisodeLog:
    """Read-only view of an episode log (safe while its writer runs).

    Parameters
    ----------
    root
        Campaign root group (read-only is enough).
    path
        Path of the log below ``root``.
    """

    def __init__(self, root: zarr.Group, path: str):
        group = _fresh(root, path)
        if group is None or group.attrs.get("kind") is None:
            raise StoreError(f"no episode log at {path}")
        if group.attrs.get("kind") != EPISODE_LOG_KIND:
            raise StoreError(f"{path} is not an episode log (kind {group.attrs.get('kind')!r})")
        self.group = group
        self.path = path
        self.counts = np.asarray(group["committed"][:], dtype=np.int64)
        self.status = dict(group.attrs.get("status") or {})

    def __len__(self) -> int:
        return int(self.counts[0])

    def summary(self) -> dict[str, np.ndarray]:
        """Per-episode summary columns, each of length ``len(self)``."""
        n = len(self)
        return {k: np.asarray(self.group[f"summary/{k}"][:n]) for k in self.group.attrs["summary_fields"]}

    def _bounds(self, episode: int) -> tuple[int, int]:
        n = len(self)
        if not 0 <= episode < n:
            raise StoreError(f"episode {episode} not in log {self.path} (it has {n})")
        offsets = np.asarray(self.group["step_offset"][:n])
        stop = int(offsets[episode + 1]) if episode + 1 < n else int(self.counts[1])
        return int(offsets[episode]), stop

    def steps(self, episode: int) -> dict[str, np.ndarray]:
        """Per-action rows of one episode."""
        lo, hi = self._bounds(episode)
        return {k: np.asarray(self.group[f"steps/{k}"][lo:hi]) for k in self.group.attrs["step_fields"]}

    def frames(self, episode: int) -> np.ndarray:
        """Frames of one episode, ``(actions + 1, n_atoms, 3)``."""
        if not self.group.attrs.get("frames"):
            raise StoreError(f"episode log {self.path} stores no frames")
        lo, hi = self._bounds(episode)
        start = lo + episode  # each earlier episode has one frame more than its steps
        return np.asarray(self.group["frames"][start : start + hi - lo + 1])


def episode_logs(root: zarr.Group, parent: str) -> list[str]:
    """Paths of the episode logs directly below ``parent`` (sorted), e.g. every actor's."""
    group = _fresh(root, parent)
    if group is None:
        return []
    names = sorted(name for name, node in group.groups() if node.attrs.get("kind") == EPISODE_LOG_KIND)
    return [f"{parent}/{name}" for name in names]
