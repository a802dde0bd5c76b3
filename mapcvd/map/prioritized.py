"""Proportional prioritized replay for the MAP learner.

Prioritized experience replay (Schaul et al., 2016, arXiv:1511.05952) samples
transition ``i`` with probability ``P_i = p_i^alpha / sum_k p_k^alpha``, where the
priority ``p_i = |delta_i| + epsilon`` is the absolute TD error plus a small floor (so
every transition keeps a chance to be replayed), and corrects the bias of that
sampling with the importance weights ``w_i = (N P_i)^-beta``, normalised by the batch
maximum, with ``beta`` annealed linearly to 1 over training. In Ape-X (Horgan et al., 2018,
arXiv:1803.00933), which MAP's distributed training follows, the actors compute the
initial priorities from their own Q-values (:func:`base_priority`) and the learner
updates them after each step; :class:`PrioritizedReplay` is the learner's side: the
in-memory cache of transitions, the sum tree of ``p^alpha``
(:class:`~mapcvd.map.sumtree.SumTree`), the beta schedule and the rate limit (learner
updates per ingested transition).

The store keeps the priorities before the exponent (``priority0`` of each transition,
and the learner's checkpointed priorities, both ``|delta| + epsilon``); only the sum
tree holds ``p^alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mapcvd.map.sumtree import SumTree

__all__ = ["PRIORITY_FLOOR", "PrioritizedReplay", "base_priority", "importance_weights"]

#: Small constant added to |TD| so that no transition's priority is zero.
PRIORITY_FLOOR = 1e-3

#: Relative drift of the sum tree's root past which it is rebuilt from its leaves.
DRIFT_TOLERANCE = 1e-4

_FIELDS = ("state", "next_state", "action", "reward", "discount")


def base_priority(td_errors) -> np.ndarray:
    """The priority before the exponent, ``|delta| + epsilon`` (Schaul et al., 2016).

    This is what the store keeps: the actors' initial ``priority0`` and the learner's
    updated priorities. The dtype of ``td_errors`` is kept.

    Parameters
    ----------
    td_errors
        TD errors ``delta`` (any sign).

    Returns
    -------
    numpy.ndarray
        ``abs(td_errors) + PRIORITY_FLOOR``.
    """
    return np.abs(np.asarray(td_errors)) + PRIORITY_FLOOR


def importance_weights(priorities: np.ndarray, total: float, size: int, beta: float) -> np.ndarray:
    """Prioritized-replay importance weights ``(N P_i)^-beta``, normalised by the batch maximum.

    Parameters
    ----------
    priorities
        Sampled leaves of the sum tree (``p_i^alpha``).
    total
        Sum of all leaves, so that ``P_i = priorities / total``.
    size
        ``N``, the number of transitions held.
    beta
        Importance-sampling exponent (Schaul et al., 2016, Sec. 3.4).

    Returns
    -------
    numpy.ndarray
        float32 weights, the largest of the batch equal to 1.
    """
    probabilities = np.asarray(priorities, dtype=np.float64) / total
    weights = (size * probabilities) ** (-beta)
    return (weights / weights.max()).astype(np.float32)


class PrioritizedReplay:
    """The learner's prioritized replay: cached transitions, sum tree, schedules.

    Parameters
    ----------
    size
        Number of slots (actors x ring capacity); transitions are addressed by their
        learner-wide slot (``"slot"`` of :meth:`~mapcvd.store.learner_state.LearnerReplay.poll`).
    state_shape
        Shape of one state grid.
    dtype
        Storage dtype of the grids (the store's, float16 by default).
    alpha
        Prioritisation exponent (0: uniform sampling).
    beta0
        Importance-sampling exponent at update 0.
    beta_updates
        Updates over which beta anneals linearly from ``beta0`` to 1.
    updates_per_transition
        Rate limit: at most this many learner updates per ingested transition.
    """

    def __init__(self, size: int, state_shape: tuple, dtype, *, alpha: float, beta0: float, beta_updates: int,
                 updates_per_transition: float):
        self.alpha = alpha
        self.beta0 = beta0
        self.beta_updates = beta_updates
        self.updates_per_transition = updates_per_transition
        self._tree = SumTree(size)
        self._data = {
            "state": np.zeros((size, *state_shape), dtype=dtype),
            "next_state": np.zeros((size, *state_shape), dtype=dtype),
            "action": np.zeros(size, dtype=np.int64),
            "reward": np.zeros(size, dtype=np.float32),
            "discount": np.zeros(size, dtype=np.float32),
        }
        self._filled = np.zeros(size, dtype=bool)

    @classmethod
    def from_settings(cls, training, spec) -> PrioritizedReplay:
        """One sized for the replay ``spec`` with the priority settings of ``training``
        (a :class:`~mapcvd.map.training_settings.TrainingSettings`)."""
        return cls(
            spec.n_actors * spec.capacity, (spec.channels, spec.points, spec.points, spec.points),
            np.dtype(spec.state_dtype), alpha=training.priority_alpha, beta0=training.priority_beta0,
            beta_updates=training.beta_updates, updates_per_transition=training.updates_per_transition,
        )

    def __len__(self) -> int:
        """Slots holding a transition (``N``)."""
        return int(self._filled.sum())

    # --------------------------------------------------------------- priorities

    def _exponentiate(self, base) -> np.ndarray:
        return np.asarray(base, dtype=np.float64) ** self.alpha

    def priority(self, td_errors) -> np.ndarray:
        """The sampling priority ``(|delta| + epsilon)^alpha`` of TD errors ``delta`` (float64)."""
        return self._exponentiate(base_priority(np.asarray(td_errors, dtype=np.float64)))

    def add(self, rows: Mapping[str, np.ndarray], base_priorities=None) -> np.ndarray:
        """Cache transitions at their ``rows["slot"]`` with priorities ``base^alpha``; return the slots.

        Parameters
        ----------
        rows
            Polled rows (field -> array, with ``"slot"``).
        base_priorities
            Priorities before the exponent, one per row; default ``rows["priority0"]``
            (the actors' initial priorities). On resume, the checkpointed ones.
        """
        slots = rows["slot"]
        for name in _FIELDS:
            self._data[name][slots] = rows[name]
        self._filled[slots] = True
        base = rows["priority0"] if base_priorities is None else base_priorities
        self._tree.update(slots, self._exponentiate(base))
        return slots

    def update_priorities(self, slots, td_errors) -> np.ndarray:
        """Set the priorities of sampled ``slots`` from their new TD errors.

        Returns
        -------
        numpy.ndarray
            The new priorities before the exponent, ``|delta| + epsilon`` (float64),
            what the store keeps.
        """
        base = base_priority(np.asarray(td_errors, dtype=np.float64))
        self._tree.update(slots, self._exponentiate(base))
        return base

    def maintain(self) -> None:
        """Rebuild the sum tree from its leaves when its root has drifted (float round-off)."""
        if self._tree.drift() > DRIFT_TOLERANCE:
            self._tree.rebuild()

    # ----------------------------------------------------------------- sampling

    def beta(self, step: int) -> float:
        """Importance-sampling exponent at update ``step``: linear from ``beta0`` to 1 at ``beta_updates``."""
        return self.beta0 + (1 - self.beta0) * min(1.0, step / self.beta_updates)

    def sample(self, batch: int, rng: np.random.Generator, beta: float
               ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Draw ``batch`` transitions proportionally to priority (stratified, see :meth:`SumTree.sample`).

        Parameters
        ----------
        batch
            Number of transitions.
        rng
            Random generator (the draws are reproducible for a seeded one).
        beta
            Importance-sampling exponent, e.g. :meth:`beta` of the current update.

        Returns
        -------
        slots, transitions, weights
            The slots drawn, their cached fields (``state``, ``next_state`` in the
            store's dtype, ``action``, ``reward``, ``discount``) and their importance
            weights (:func:`importance_weights`).
        """
        slots, leaves = self._tree.sample(batch, rng)
        weights = importance_weights(leaves, self._tree.total, len(self), beta)
        return slots, {name: values[slots] for name, values in self._data.items()}, weights

    # --------------------------------------------------------------- rate limit

    def update_budget(self, updates_done: int, transitions_seen: int) -> float:
        """Updates still allowed by the rate limit: ``updates_per_transition * seen - done``."""
        return self.updates_per_transition * transitions_seen - updates_done

    def may_update(self, updates_done: int, transitions_seen: int) -> bool:
        """Whether the rate limit allows another update after ``transitions_seen`` were ingested."""
        return self.update_budget(updates_done, transitions_seen) > 0
