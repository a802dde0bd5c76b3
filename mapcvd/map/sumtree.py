"""A float64 sum tree for proportional prioritized replay.

Prioritized experience replay (Schaul et al., arXiv:1511.05952) samples transition
``i`` with probability ``p_i^alpha / sum_k p_k^alpha``; Ape-X (Horgan et al.,
arXiv:1803.00933), which MAP's distributed training follows, has actors compute the
initial priorities and the learner update them. A sum tree makes both sampling and
updates O(log n). This one is an implicit binary tree in one float64 array, with
batched, vectorised updates and stratified sampling (one descent for the whole
batch, level by level), and a :meth:`SumTree.rebuild` that recomputes every
internal node from the leaves to remove floating-point drift (Reverb rebuilds when
the drift exceeds 1e-4; :meth:`SumTree.drift` measures it).
"""

from __future__ import annotations

import numpy as np

from mapcvd.errors import InputError


class SumTree:
    """Priorities of ``capacity`` slots with O(log n) update and sampling.

    Parameters
    ----------
    capacity
        Number of leaves (replay slots); rounded up to a power of two internally.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise InputError(f"sum-tree capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._leaves = 1 << max(0, (self.capacity - 1).bit_length())
        self._depth = self._leaves.bit_length() - 1
        self._tree = np.zeros(2 * self._leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all priorities."""
        return float(self._tree[1])

    @property
    def priorities(self) -> np.ndarray:
        """A read-only view of the leaf priorities, shape (capacity,)."""
        view = self._tree[self._leaves : self._leaves + self.capacity]
        view.flags.writeable = False
        return view

    def update(self, slots, priorities) -> None:
        """Set the priorities of ``slots`` (the last value wins for repeated slots).

        Raises
        ------
        InputError
            For a slot out of range or a negative or non-finite priority.
        """
        slots = np.atleast_1d(np.asarray(slots, dtype=np.int64))
        values = np.broadcast_to(np.asarray(priorities, dtype=np.float64), slots.shape)
        if slots.size == 0:
            return
        if slots.min() < 0 or slots.max() >= self.capacity:
            raise InputError(f"sum-tree slot out of range 0..{self.capacity - 1}")
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise InputError("priorities must be finite and >= 0")
        nodes = slots + self._leaves
        self._tree[nodes] = values  # numpy assignment: the last of repeated indices wins
        nodes = np.unique(nodes >> 1)
        while nodes[0] >= 1:
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes >> 1)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``batch`` slots with probability proportional to priority.

        Stratified: the total mass is cut into ``batch`` equal strata and one slot is
        drawn in each, which lowers the variance of the batch without biasing each draw.

        Returns
        -------
        slots, priorities
            Arrays of shape (batch,).

        Raises
        ------
        InputError
            If every priority is zero.
        """
        total = self.total
        if total <= 0:
            raise InputError("cannot sample from a sum tree whose priorities are all zero")
        mass = (np.arange(batch) + rng.random(batch)) * (total / batch)
        mass = np.minimum(mass, np.nextafter(total, 0.0))
        nodes = np.ones(batch, dtype=np.int64)
        for _ in range(self._depth):
            left = self._tree[2 * nodes]
            right = mass >= left
            mass = np.where(right, mass - left, mass)
            nodes = 2 * nodes + right
        slots = nodes - self._leaves
        # floating-point round-off can land on an empty leaf at a stratum edge
        empty = self._tree[nodes] <= 0
        if np.any(empty):
            nonzero = np.flatnonzero(self.priorities > 0)
            slots[empty] = nonzero[np.searchsorted(nonzero, slots[empty]).clip(max=nonzero.size - 1)]
        return slots, self._tree[slots + self._leaves].copy()

    def drift(self) -> float:
        """Relative difference between the root and the exact sum of the leaves."""
        exact = float(np.sum(self._tree[self._leaves :]))
        return abs(self.total - exact) / exact if exact > 0 else abs(self.total)

    def rebuild(self) -> None:
        """Recompute every internal node from the leaves."""
        for level in range(self._depth - 1, -1, -1):
            lo, hi = 1 << level, 1 << (level + 1)
            self._tree[lo:hi] = self._tree[2 * lo : 2 * hi : 2] + self._tree[2 * lo + 1 : 2 * hi : 2]
