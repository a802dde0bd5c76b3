"""The MAP actor loop: epsilon-greedy episodes streamed into the replay store.

In MAP's distributed training (Chen et al., seed 000), following Ape-X (Horgan et
al., arXiv:1803.00933), each actor owns an environment (its own LAMMPS instance) and
a copy of the Q-network, acts epsilon-greedily with its own fixed epsilon, computes
the initial priority of each n-step transition from its own Q-values, writes the
transitions to its replay group and pulls the learner's newest weights every few
actions. Every episode is also appended to the actor's episode log (energies,
positions, reward terms and frames), from which the pathway analysis works.

:func:`run_actor` is a plain function: the Parsl app in ``workflows/`` calls it in a
worker process. It resumes from the store: the episode counter continues from the
actor's log and the replay writer from its commit counter.
"""

from __future__ import annotations

import time

import numpy as np

from mapcvd.map.dqn import n_step_returns
from mapcvd.timing import measure
from mapcvd.map.episode import STEP_FIELDS, SUMMARY_FIELDS, log_rows, play_episode
from mapcvd.map.prioritized import base_priority
from mapcvd.map.system import MapSystem, build_network
from mapcvd.map.training_settings import TrainingSettings, actor_epsilon
from mapcvd.store.episodes import EpisodeWriter
from mapcvd.store.layout import actor_episodes_path
from mapcvd.store.replay import ActorWriter
from mapcvd.store.weights import latest_weights_version, read_weights


class NStepEmitter:
    """Turns one episode's steps into n-step transitions as soon as each is known.

    Transition ``t`` holds ``s_t``, ``a_t``, the n-step return
    ``sum_{k<m} gamma^k r_{t+k}`` with ``m = min(n, T - t)``, the bootstrap state
    ``s_{t+m}`` and its discount ``gamma^m`` (0 when the episode ended in a terminal
    state within the n steps), and the initial priority ``|R + gamma^m max_a Q(s_{t+m}, a)
    - Q(s_t, a_t)|`` from the actor's own Q-values.
    """

    def __init__(self, n: int, gamma: float):
        self.n, self.gamma = int(n), float(gamma)
        self.states: list[np.ndarray] = []
        self.q: list[np.ndarray] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.extra: list[tuple[float, np.ndarray]] = []
        self.emitted = 0

    def start(self, state: np.ndarray, q: np.ndarray) -> None:
        """Begin an episode in ``state`` with Q-values ``q``."""
        self.states, self.q, self.actions, self.rewards, self.extra = [state], [q], [], [], []
        self.emitted = 0

    def push(self, action: int, reward: float, next_state: np.ndarray, next_q: np.ndarray | None,
             energy: float, position: np.ndarray) -> dict | None:
        """Record one step; return the transitions that became complete (or None)."""
        self.actions.append(int(action))
        self.rewards.append(float(reward))
        self.states.append(next_state)
        self.q.append(next_q)
        self.extra.append((float(energy), np.asarray(position, dtype=np.float32)))
        ready = len(self.rewards) - self.n
        if next_q is None or ready < self.emitted:
            return None
        return self._rows(np.arange(self.emitted, ready + 1), terminal=False)

    def finish(self, terminal: bool, final_q: np.ndarray | None) -> dict | None:
        """End the episode; return every transition not yet emitted (or None)."""
        if self.q and self.q[-1] is None:
            self.q[-1] = final_q
        if self.emitted >= len(self.rewards):
            return None
        return self._rows(np.arange(self.emitted, len(self.rewards)), terminal=terminal)

    def _rows(self, ts: np.ndarray, terminal: bool) -> dict:
        returns, boot, discounts = n_step_returns(np.array(self.rewards), self.gamma, self.n, terminal)
        returns, boot, discounts = returns[ts], boot[ts], discounts[ts]
        q_now = np.array([self.q[t][self.actions[t]] for t in ts])
        q_boot = np.array([0.0 if self.q[b] is None else float(np.max(self.q[b])) for b in boot])
        priority = base_priority(returns + discounts * q_boot - q_now)  # |TD| + floor
        self.emitted = int(ts[-1]) + 1
        return {
            "state": np.stack([self.states[t] for t in ts]),
            "next_state": np.stack([self.states[b] for b in boot]),
            "action": np.array([self.actions[t] for t in ts], dtype=np.int8),
            "reward": returns.astype(np.float32),
            "discount": discounts.astype(np.float32),
            "done": discounts == 0,
            "priority0": priority.astype(np.float32),
            "step": ts.astype(np.int32),
            "energy": np.array([self.extra[t][0] for t in ts], dtype=np.float32),
            "position": np.stack([self.extra[t][1] for t in ts]),
        }


def run_actor(root, system: MapSystem, training: TrainingSettings, *, actor: int, deadline: float, seed: int,
              max_episodes: int | None = None, comm=None) -> dict:
    """Run epsilon-greedy episodes until ``deadline`` (``time.time()``), streaming to the store.

    Parameters
    ----------
    root
        Campaign root group, read-write; this process is the only writer of the
        actor's replay group and episode log.
    system
        The MAP system (structure, potential, guided atoms, settings).
    training
        The training settings (network, epsilon, n-step, weight polling, frames).
    actor
        Actor id, ``0 .. training.actors - 1``.
    deadline
        Wall-clock time after which no new action starts.
    seed
        Campaign seed: network initialisation (shared with the learner) and, with the
        actor id and episode number, the actor's random numbers and MD velocities.
    max_episodes
        Stop after this many episodes of this call (tests).
    comm
        The MPI communicator (``mpi4py.MPI.COMM_WORLD``) when the actor runs on several
        ranks with one LAMMPS over them (:mod:`mapcvd.workflows.actor_ranks`): every
        rank runs the environment, rank 0 alone holds the network, chooses the
        actions, decides when to stop, pulls weights and writes the store, and the
        others follow its broadcasts. ``root`` may be read-only on the other ranks.

    Returns
    -------
    dict
        ``actor``, ``episodes`` (this call), ``actions``, ``transitions``, ``failures``,
        ``epsilon``, ``mean_progress_A``, ``seconds``.
    """
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    start = time.perf_counter()
    lead = comm is None or comm.rank == 0  # the rank that decides and writes

    def share(value):
        """Rank 0's ``value`` on every rank."""
        return value if comm is None else comm.bcast(value, root=0)

    epsilon = actor_epsilon(actor, training.actors, training.epsilon_base, training.epsilon_alpha)
    net = build_network(training, system.channels, seed) if lead else None
    if net is not None:
        net.eval()
    writer = ActorWriter(root, actor) if lead else None
    log = EpisodeWriter(root, actor_episodes_path(actor), n_atoms=len(system.atoms), summary_fields=SUMMARY_FIELDS,
                        step_fields=STEP_FIELDS, frames=training.training_frames) if lead else None
    version = -1

    def pull_weights() -> None:
        nonlocal version
        if not lead:
            return
        latest = latest_weights_version(root)
        if latest is not None and latest != version:
            loaded = read_weights(root)
            if loaded is not None:
                arrays, version, _ = loaded
                net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})

    def q_values(state: np.ndarray) -> np.ndarray:
        with torch.no_grad(), measure("torch"):
            return net(torch.from_numpy(state[None].astype(np.float32)))[0].numpy().astype(np.float64)

    episodes = actions = transitions = 0
    progress: list[float] = []
    env = system.environment(seed=seed)
    emitter = NStepEmitter(training.n_step, training.gamma)
    pull_weights()
    stop = deadline if comm is None else (lambda: share(time.time() >= deadline if lead else None))
    try:
        while share(time.time() < deadline and (max_episodes is None or episodes < max_episodes)):
            episode = share(log.count if lead else None)
            rng = np.random.default_rng([seed, actor, episode])
            env.episode_seed = (seed * 7919 + actor * 104729 + episode) % (2**31 - 2) + 1

            def policy(state, rng=rng):
                if not lead:
                    return share(None), None
                q = q_values(state)
                action = int(rng.integers(len(q))) if rng.random() < epsilon else int(np.argmax(q))
                return share(action), q

            def on_step(state, action, reward, next_state, done, next_q, info, episode=episode):
                nonlocal actions, transitions
                actions += 1
                if not lead:
                    return
                rows = emitter.push(action, reward, next_state, next_q, info["energy"],
                                    env.records[-1].guided)
                if rows is not None:
                    rows["episode"] = np.full(len(rows["step"]), episode, dtype=np.int32)
                    writer.add_batch(rows)
                    transitions += len(rows["step"])
                if actions % training.weights_every == 0:
                    pull_weights()

            result = play_episode(env, policy, deadline=stop, on_start=emitter.start if lead else None,
                                  on_step=on_step)
            episodes += 1
            progress.append(result.progress)
            if not lead:
                continue
            final_q = None
            if result.truncated and env.engine is not None and emitter.q and emitter.q[-1] is None:
                final_q = q_values(emitter.states[-1])
            rows = emitter.finish(terminal=result.crossed, final_q=final_q)
            if rows is not None:
                rows["episode"] = np.full(len(rows["step"]), episode, dtype=np.int32)
                writer.add_batch(rows)
                transitions += len(rows["step"])
            writer.flush()
            summary, steps, frames = log_rows(env, result, episode=episode, epsilon=epsilon,
                                              weights_version=max(version, 0))
            log.append(summary, steps, frames if training.training_frames else None)
            log.set_status({"episodes": log.count, "actions": actions, "epsilon": epsilon,
                            "last_progress_A": result.progress, "last_return": summary["return"],
                            "actions_per_s": actions / max(time.perf_counter() - start, 1e-9),
                            "weights_version": version, "failures": len(env.failures), "time": time.time()})
    finally:
        env.close()
        if writer is not None:
            writer.flush()
    return {"actor": actor, "episodes": episodes, "actions": actions, "transitions": transitions,
            "failures": len(env.failures), "epsilon": epsilon,
            "mean_progress_A": float(np.mean(progress)) if progress else 0.0,
            "seconds": time.perf_counter() - start}
