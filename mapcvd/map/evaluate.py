"""Evaluating a trained MAP policy: greedy (epsilon 0) or uniformly random episodes.

The acceptance measure of MAP's learning (Chen et al., seed 000) is how far the guided
molecule travels along the goal axis: the greedy policy of the stored Q-network is
compared with uniformly random actions over the same number of actions, from the
same starting structure. Each evaluation episode is recorded like a training one
(energies, positions, reward terms, frames) so its pathway can be refined by NEB.
"""

from __future__ import annotations

import numpy as np

from mapcvd.errors import InputError
from mapcvd.map.episode import log_rows, play_episode
from mapcvd.map.system import MapSystem, build_network
from mapcvd.timing import measure

POLICIES = ("greedy", "random")


def evaluate_episode(system: MapSystem, table: dict, *, policy: str, weights: dict | None, seed: int,
                     episode: int) -> tuple[dict, dict, np.ndarray]:
    """Play one evaluation episode; return its log rows (summary, steps, frames).

    Parameters
    ----------
    system
        The MAP system.
    table
        The ``[map]`` configuration table (network shape).
    policy
        ``"greedy"`` (the network's best action, epsilon 0) or ``"random"`` (uniform).
    weights
        The network's parameters as arrays (needed for ``"greedy"``).
    seed, episode
        Seed of the MD velocities and the random actions: ``(seed, episode)``.
    """
    import torch  # noqa: PLC0415

    if policy not in POLICIES:
        raise InputError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    torch.set_num_threads(1)
    rng = np.random.default_rng([seed, episode, POLICIES.index(policy)])
    net = None
    if policy == "greedy":
        if weights is None:
            raise InputError("the greedy policy needs trained weights: run 'mapcvd map train' first")
        net = build_network(table, system.channels, seed)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
        net.eval()

    def choose(state):
        if net is None:
            return int(rng.integers(5)), None
        with torch.no_grad(), measure("torch"):
            q = net(torch.from_numpy(state[None].astype(np.float32)))[0].numpy()
        return int(np.argmax(q)), q

    env = system.environment(seed=seed)
    env.episode_seed = (seed * 15485863 + episode) % (2**31 - 2)
    try:
        result = play_episode(env, choose)
        return log_rows(env, result, episode=episode, epsilon=0.0 if policy == "greedy" else 1.0,
                        weights_version=-1)
    finally:
        env.close()
