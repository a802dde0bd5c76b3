"""Evaluating a trained MAP policy against the straight drag and random actions.

MAP's claim (Chen et al., seed 000) is that the agents find *energy-efficient*
diffusion pathways: routes across the host with lower barriers than others. The
strongest simple alternative is the straight drag (the tether moved along +goal at
every action, from the same start); uniformly random actions are the floor. Each
policy is played from the same starting structure and MD seeds, and each episode is
scored by whether it crossed the box, how far it got, and its raw barrier: the
highest ReaxFF potential energy along the episode (tether excluded) above the energy
at its start. Each evaluation episode is recorded like a training one (energies,
positions, reward terms, frames) so its pathway can be refined by NEB.
"""

from __future__ import annotations

import numpy as np

from mapcvd.errors import InputError
from mapcvd.map.episode import log_rows, play_episode, straight_drag
from mapcvd.map.system import MapSystem, build_network
from mapcvd.map.training_settings import TrainingSettings
from mapcvd.timing import measure

#: Evaluation policies; the index seeds the random actions, so new ones go at the end.
POLICIES = ("greedy", "random", "straight")


def evaluate_episode(system: MapSystem, training: TrainingSettings, *, policy: str, weights: dict | None, seed: int,
                     episode: int) -> tuple[dict, dict, np.ndarray, float]:
    """Play one evaluation episode; return its log rows (summary, steps, frames) and raw barrier.

    Parameters
    ----------
    system
        The MAP system.
    training
        The training settings (the network's shape).
    policy
        ``"greedy"`` (the network's best action, epsilon 0), ``"random"`` (uniform) or
        ``"straight"`` (+goal every time).
    weights
        The network's parameters as arrays (needed for ``"greedy"``).
    seed, episode
        Seed of the MD velocities and the random actions: ``(seed, episode)``.

    Returns
    -------
    summary, steps, frames, raw_barrier_eV
        The rows of :func:`~mapcvd.map.episode.log_rows` and the episode's raw barrier
        (:func:`raw_barrier`).
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
        net = build_network(training, system.channels, seed)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
        net.eval()

    def choose(state):
        if policy == "straight":
            return straight_drag(state)
        if net is None:
            return int(rng.integers(5)), None
        with torch.no_grad(), measure("torch"):
            q = net(torch.from_numpy(state[None].astype(np.float32)))[0].numpy()
        return int(np.argmax(q)), q

    env = system.environment(seed=seed)
    env.episode_seed = (seed * 15485863 + episode) % (2**31 - 2)
    try:
        result = play_episode(env, choose)
        summary, steps, frames = log_rows(env, result, episode=episode,
                                          epsilon=1.0 if policy == "random" else 0.0, weights_version=-1)
        return summary, steps, frames, raw_barrier(env.start_energy, steps["energy"])
    finally:
        env.close()


def raw_barrier(start_energy: float, energies: np.ndarray) -> float:
    """Highest potential energy along an episode above its start (eV, >= 0; nan when unknown).

    ``energies`` are the ReaxFF energies (tether excluded) after each action; the start
    is the energy after the episode's first relaxation. Failed steps (nan) are skipped.
    """
    values = np.asarray(energies, dtype=float)
    values = values[np.isfinite(values)]
    if not np.isfinite(start_energy):
        return float("nan")
    return float(max(0.0, values.max() - start_energy)) if values.size else 0.0


def summarise(policy: str, summaries: list[dict], barriers: list[float]) -> dict:
    """The figures of one policy's evaluation episodes (the keys of ``map evaluate --json``)."""
    def mean(values):
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return {"policy": policy, "episodes": len(summaries),
            "mean_progress_A": mean([r["progress_A"] for r in summaries]),
            "mean_return": mean([r["return"] for r in summaries]),
            "crossed_fraction": mean([float(r["crossed"]) for r in summaries]),
            "mean_raw_barrier_eV": mean(barriers),
            "mean_actions": mean([float(r["actions"]) for r in summaries])}
