"""Playing one MAP episode, and what of it goes into an episode log.

An episode (Chen et al., MAP, seed 000) starts from the initial structure, takes
actions chosen by a policy until the guided atom has crossed the box along the goal
axis, the action limit is reached, a LAMMPS failure ends it, or a wall-clock deadline
stops it. Actors (training), the evaluation and the pathway analysis all play and
record episodes the same way, through :func:`play_episode` and :func:`log_rows`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mapcvd.map.environment import REWARD_TERMS, MapEnvironment

#: Per-episode scalars of an episode log.
SUMMARY_FIELDS: tuple[str, ...] = (
    "episode", "actions", "return", "progress_A", "epsilon", "crossed", "truncated", "failed",
    "seconds", "weights_version", "start_time",
) + tuple(f"term_{t}" for t in REWARD_TERMS)
#: Per-action rows of an episode log and their shapes.
STEP_FIELDS: dict[str, tuple] = {
    "action": (), "reward": (), "energy": (), "agent": (3,), "guided": (3,), "terms": (len(REWARD_TERMS),),
}

#: A policy maps a state grid to (action, Q-values or None).
Policy = Callable[[np.ndarray], tuple[int, np.ndarray | None]]


def straight_drag(state: np.ndarray) -> tuple[int, None]:
    """The straight drag: action 0 (+goal axis) in every state, MAP's strongest simple alternative."""
    return 0, None


#: Called after each action with (state, action, reward, next_state, done, q_next, info).
StepHook = Callable[..., None]


@dataclass
class EpisodeResult:
    """One played episode.

    Attributes
    ----------
    crossed, truncated
        Ended by crossing the box, or cut (action limit or deadline).
    failed
        The LAMMPS error message that ended it, or None.
    rewards
        Reward of each action.
    progress
        Distance (A) travelled by the guided atom along the goal axis.
    seconds
        Wall time of the episode.
    """

    crossed: bool = False
    truncated: bool = False
    failed: str | None = None
    rewards: list = field(default_factory=list)
    progress: float = 0.0
    seconds: float = 0.0
    start_time: float = 0.0


def play_episode(env: MapEnvironment, policy: Policy, *, deadline: float | Callable[[], bool] | None = None,
                 on_start: Callable[[np.ndarray, np.ndarray | None], None] | None = None,
                 on_step: StepHook | None = None) -> EpisodeResult:
    """Play one episode of ``env`` with ``policy``.

    Parameters
    ----------
    env
        The environment (reset here).
    policy
        Chooses the action in a state; may return the Q-values it used.
    deadline
        ``time.time()`` after which no new action starts (the episode is then cut), or a
        function asked before each action that says whether to stop (an actor on
        several MPI ranks asks rank 0, so that all ranks stop at the same action).
    on_start
        Called with the first state and its Q-values.
    on_step
        Called after each action, see :data:`StepHook`; ``q_next`` are the policy's
        Q-values in the next state (None at the end of the episode).
    """
    result = EpisodeResult(start_time=time.time())
    start = time.perf_counter()
    state = env.reset()
    action, q = policy(state)
    if on_start is not None:
        on_start(state, q)
    while True:
        if deadline is not None and (deadline() if callable(deadline) else time.time() >= deadline):
            result.truncated = True
            break
        next_state, reward, done, info = env.step(action)
        if info["failed"]:
            result.failed = info["failed"]
            break
        result.rewards.append(reward)
        next_action, next_q = (None, None) if done else policy(next_state)
        if on_step is not None:
            on_step(state, action, reward, next_state, done, next_q, info)
        if done:
            result.crossed, result.truncated = info["crossed"], info["truncated"]
            break
        state, action = next_state, next_action
    result.progress = env.progress()
    result.seconds = time.perf_counter() - start
    return result


def log_rows(env: MapEnvironment, result: EpisodeResult, *, episode: int, epsilon: float,
             weights_version: int) -> tuple[dict, dict, np.ndarray]:
    """The summary row, step rows and frames of the episode ``env`` has just played."""
    records = env.records
    terms = np.array([[r.terms[t] for t in REWARD_TERMS] for r in records], dtype=np.float64).reshape(-1,
                                                                                                       len(REWARD_TERMS))
    summary = {
        "episode": episode, "actions": len(records), "return": float(np.sum(result.rewards)),
        "progress_A": result.progress, "epsilon": epsilon, "crossed": float(result.crossed),
        "truncated": float(result.truncated), "failed": float(result.failed is not None),
        "seconds": result.seconds, "weights_version": weights_version, "start_time": result.start_time,
    }
    summary.update({f"term_{t}": float(terms[:, i].sum()) for i, t in enumerate(REWARD_TERMS)})
    steps = {
        "action": np.array([r.action for r in records], dtype=np.float64),
        "reward": np.array([r.reward for r in records], dtype=np.float64),
        "energy": np.array([r.energy for r in records], dtype=np.float64),
        "agent": np.array([r.agent for r in records], dtype=np.float64).reshape(-1, 3),
        "guided": np.array([r.guided for r in records], dtype=np.float64).reshape(-1, 3),
        "terms": terms,
    }
    frames = np.asarray(env.frames[: len(records) + 1], dtype=np.float64)
    return summary, steps, frames
