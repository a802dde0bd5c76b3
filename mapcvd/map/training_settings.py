"""Typed settings of MAP's distributed training: Q-network, actors, learner, prioritised replay.

MAP (Chen et al., seed 000) trains like Ape-X (Horgan et al., arXiv:1803.00933): many
actors with their own fixed epsilon stream n-step transitions into a prioritised
replay that one learner samples. Every field here is a ``[map]`` key of
:data:`mapcvd.config.SCHEMA`, declared with :func:`mapcvd.config.setting`: its default,
range and doc live there and nowhere else. The driver builds one
:class:`TrainingSettings` from the table (a misspelt or out-of-range key is refused
before any app starts) and passes it to the actor and learner apps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mapcvd.config import check_settings, setting, settings_from
from mapcvd.errors import InputError


@dataclass(frozen=True)
class TrainingSettings:
    """Settings of the Q-network, the actors and the learner (``[map]`` keys of the same names).

    Attributes
    ----------
    grid_points, conv_channels, hidden
        The Q-network: grid points per side of its input, channels of its stride-2 3-D
        convolutions (a string such as ``"16 32 32"``, see :attr:`conv_layers`), width
        of its dense layer.
    actors, epsilon_base, epsilon_alpha, weights_every, n_step, gamma, training_frames, minutes
        The actors: how many, their Ape-X epsilons, how often they look for newer
        weights, the n-step return, whether every episode's frames are stored, the
        wall time of one ``map train`` run.
    learning_rate, batch, target_update, double_dqn, learning_starts, device, learner_threads
        The learner's DQN updates and where they run.
    publish_every, publish_seconds, checkpoint_seconds
        How often the learner publishes weights and checkpoints its ingest state.
    priority_alpha, priority_beta0, beta_updates, updates_per_transition
        The prioritised replay (Schaul et al., arXiv:1511.05952): exponent, initial
        importance-sampling exponent, its annealing length, and the rate limit.
    replay_capacity, replay_chunk
        Each actor's replay ring and its write size (a multiple of it).
    """

    grid_points: int = setting("map", "grid_points")
    conv_channels: str = setting("map", "conv_channels")
    hidden: int = setting("map", "hidden")
    actors: int = setting("map", "actors")
    epsilon_base: float = setting("map", "epsilon_base")
    epsilon_alpha: float = setting("map", "epsilon_alpha")
    weights_every: int = setting("map", "weights_every")
    n_step: int = setting("map", "n_step")
    gamma: float = setting("map", "gamma")
    training_frames: bool = setting("map", "training_frames")
    minutes: float = setting("map", "minutes")
    learning_rate: float = setting("map", "learning_rate")
    batch: int = setting("map", "batch")
    target_update: int = setting("map", "target_update")
    double_dqn: bool = setting("map", "double_dqn")
    learning_starts: int = setting("map", "learning_starts")
    device: str = setting("map", "device")
    learner_threads: int = setting("map", "learner_threads")
    publish_every: int = setting("map", "publish_every")
    publish_seconds: float = setting("map", "publish_seconds")
    checkpoint_seconds: float = setting("map", "checkpoint_seconds")
    priority_alpha: float = setting("map", "priority_alpha")
    priority_beta0: float = setting("map", "priority_beta0")
    beta_updates: int = setting("map", "beta_updates")
    updates_per_transition: float = setting("map", "updates_per_transition")
    replay_capacity: int = setting("map", "replay_capacity")
    replay_chunk: int = setting("map", "replay_chunk")

    def __post_init__(self):
        check_settings(self)
        self.conv_layers  # noqa: B018 - refuse bad channels at construction
        if self.replay_capacity % self.replay_chunk:
            raise InputError(f"map.replay_capacity ({self.replay_capacity}) must be a multiple of map.replay_chunk "
                             f"({self.replay_chunk})")

    @property
    def conv_layers(self) -> tuple[int, ...]:
        """``conv_channels`` as positive integers."""
        try:
            values = tuple(int(v) for v in self.conv_channels.split())
        except ValueError:
            raise InputError(f"map.conv_channels must be integers, got {self.conv_channels!r}") from None
        if not values or min(values) < 1:
            raise InputError(f"map.conv_channels must be positive integers, got {self.conv_channels!r}")
        return values

    @classmethod
    def from_table(cls, table: Mapping | None) -> TrainingSettings:
        """Built from a ``[map]`` table; an unknown or bad key is refused in one line."""
        return settings_from(cls, table, section="map")


def actor_epsilon(actor: int, n_actors: int, base: float, alpha: float) -> float:
    """Ape-X's fixed exploration of actor ``actor``: ``base^(1 + alpha i / (N - 1))`` (``base`` for N = 1).

    Horgan et al., "Distributed Prioritized Experience Replay", arXiv:1803.00933.
    """
    if n_actors <= 1:
        return float(base)
    return float(base ** (1.0 + alpha * actor / (n_actors - 1)))
