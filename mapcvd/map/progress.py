"""Reading MAP training progress from the store (for log lines, dashboards and plots).

Everything here only reads: it is safe while actors and the learner write, from any
process or node that sees the store.
"""

from __future__ import annotations

import numpy as np

from mapcvd.store.episodes import EpisodeLog, episode_logs
from mapcvd.store.layout import EPISODES_PARENT
from mapcvd.store.metrics import read_metrics


def actor_logs(root) -> dict[int, EpisodeLog]:
    """Actor id -> its episode log (actors that have not started yet are absent)."""
    logs = {}
    for path in episode_logs(root, EPISODES_PARENT):
        logs[int(path.rsplit("_", 1)[1])] = EpisodeLog(root, path)
    return logs


def training_snapshot(root) -> dict:
    """Per-actor and learner figures now.

    Returns
    -------
    dict
        ``actors``: id -> ``episodes``, ``actions``, ``epsilon``, ``last_progress_A``,
        ``last_return``, ``actions_per_s``, ``weights_version``, ``failures``;
        ``learner``: the last metrics row (``updates``, ``loss``, ``replay_size``,
        ``samples_per_s``, ``weights_version``, ...) or empty before the first.
    """
    actors = {}
    for actor, log in actor_logs(root).items():
        actors[actor] = {"episodes": len(log), **log.status}
    metrics = read_metrics(root)
    learner = {}
    if metrics and len(metrics["step"]):
        learner = {k: float(v[-1]) for k, v in metrics.items() if k != "step"}
        learner["updates"] = int(metrics["step"][-1])
    return {"actors": actors, "learner": learner}


def describe_snapshot(snapshot: dict) -> str:
    """One log line summarising a :func:`training_snapshot`."""
    parts = []
    for actor, a in sorted(snapshot["actors"].items()):
        parts.append(
            f"actor {actor}: {a.get('episodes', 0)} ep, {a.get('actions', 0)} act, "
            f"eps {a.get('epsilon', float('nan')):.3g}, last {a.get('last_progress_A', 0.0):+.1f} A"
        )
    learner = snapshot["learner"]
    if learner:
        parts.append(
            f"learner: {learner['updates']} updates, loss {learner.get('loss', float('nan')):.3g}, "
            f"replay {int(learner.get('replay_size', 0))}, weights v{int(learner.get('weights_version', 0))}"
        )
    else:
        parts.append("learner: waiting for transitions")
    return " | ".join(parts)


def episodes_by_epoch(logs: dict[int, EpisodeLog], field: str, epoch_episodes: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard deviation over actors of ``field`` per epoch (the paper's Fig. 2 curves).

    An epoch is ``epoch_episodes`` consecutive episodes of each actor; epoch ``k`` of
    an actor is the mean of its episodes in that block. Epochs that not every actor
    has reached are left out, so each point averages the same actors.

    Returns
    -------
    epochs, mean, std
        Arrays of equal length.
    """
    per_actor = []
    for log in logs.values():
        values = log.summary()[field]
        n = len(values) // epoch_episodes
        if n:
            per_actor.append(values[: n * epoch_episodes].reshape(n, epoch_episodes).mean(axis=1))
    if not per_actor:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    n = min(len(v) for v in per_actor)
    stacked = np.stack([v[:n] for v in per_actor])
    return np.arange(1, n + 1), stacked.mean(axis=0), stacked.std(axis=0)
