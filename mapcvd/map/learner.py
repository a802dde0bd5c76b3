"""The MAP learner loop: prioritized replay from the store, DQN updates, weight publication.

One learner (Chen et al., MAP, seed 000; Ape-X, Horgan et al., arXiv:1803.00933)
ingests the actors' transitions from the Zarr replay into a prioritized replay
(:class:`~mapcvd.map.prioritized.PrioritizedReplay`, Schaul et al., arXiv:1511.05952:
an in-memory cache indexed by replay slot, a sum tree of ``p^alpha``, importance
weights ``(N P_i)^-beta`` with beta annealed to 1, a cap on updates per transition),
samples batches proportionally to priority, takes double-DQN n-step Huber steps
(:class:`~mapcvd.map.dqn.DQNLearner`), writes the new priorities back and publishes its weights (with a metrics row) every ``publish_every`` updates but
at most once per ``publish_seconds``: a publication costs tens of ms of store I/O, so a
fast (GPU) learner publishing by count alone would spend its time writing.

Resume: the ingest cursors and priorities are checkpointed together
(:meth:`~mapcvd.store.learner_state.LearnerReplay.checkpoint`); a new learner reloads the
cached rows still in the actors' rings with their saved priorities, continues from
the last published weights, and polls exactly what was committed after the cursors.
The optimiser's moments and the target network are not checkpointed: on resume the
target is a copy of the loaded weights and Adam restarts.

:func:`run_learner` is a plain function; ``workflows/`` runs it as a Parsl app on the
site's GPU executor when there is one.
"""

from __future__ import annotations

import time

import numpy as np

from mapcvd.map.dqn import Batch, DQNLearner
from mapcvd.map.prioritized import PrioritizedReplay
from mapcvd.map.system import build_network
from mapcvd.map.training_settings import TrainingSettings
from mapcvd.store.learner_state import LearnerReplay


def to_batch(transitions: dict, weights: np.ndarray) -> Batch:
    """Sampled transitions (:meth:`PrioritizedReplay.sample`) as a :class:`~mapcvd.map.dqn.Batch` of tensors."""
    import torch  # noqa: PLC0415

    return Batch(
        torch.from_numpy(transitions["state"].astype(np.float32)),
        torch.from_numpy(transitions["action"]),
        torch.from_numpy(transitions["reward"]),
        torch.from_numpy(transitions["next_state"].astype(np.float32)),
        torch.from_numpy(transitions["discount"]),
        torch.from_numpy(weights),
    )


def choose_device(name: str) -> str:
    """``"cuda"`` when asked or when ``"auto"`` and torch sees a GPU, else ``"cpu"``."""
    import torch  # noqa: PLC0415

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def state_dict_arrays(net) -> dict[str, np.ndarray]:
    """A network's parameters as numpy arrays (what the store holds; never pickles)."""
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def run_learner(root, training: TrainingSettings, *, deadline: float, seed: int, channels: int,
                max_updates: int | None = None, poll_seconds: float = 0.25) -> dict:
    """Train from the replay until ``deadline`` (``time.time()``); publish weights and checkpoints.

    Parameters
    ----------
    root
        Campaign root group, read-write; this process is the only writer of
        ``map/learner``.
    training
        The training settings (network, DQN updates, replay, publication, device).
    deadline
        Wall-clock time at which the learner publishes, checkpoints and returns.
    seed
        Campaign seed (network initialisation, shared with the actors; sampling).
    channels
        State channels (elements of the potential).
    max_updates
        Stop after this many updates in total (tests).
    poll_seconds
        Sleep between polls when there is nothing to do.

    Returns
    -------
    dict
        ``updates`` (total), ``new_updates``, ``ingested`` (this call), ``replay_size``,
        ``weights_version``, ``device``, ``mean_loss`` (this call), ``lost``,
        ``train_seconds`` (inside torch updates), ``ingest_seconds`` (polling the
        store into the cache and tree), ``startup_seconds`` (network, weights, resume
        reload), ``seconds``, ``trained_seconds`` (over all sessions, see
        :func:`mapcvd.store.metrics.trained_seconds`).
    """
    import torch  # noqa: PLC0415

    start = time.perf_counter()
    device = choose_device(training.device)
    if device == "cpu":
        torch.set_num_threads(training.learner_threads)
    replay = LearnerReplay(root)
    spec = replay.spec
    net = build_network(training, channels, seed)
    loaded = replay.load_weights()
    version = 0
    if loaded is not None:
        arrays, version, _ = loaded
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    learner = DQNLearner(net, lr=training.learning_rate, target_update=training.target_update,
                         double=training.double_dqn, device=device)
    # the weights may have been published after the last ingest checkpoint
    updates = max(int(replay.meta.get("updates", replay.step)), version)
    learner.updates = updates
    ingested_total = int(replay.meta.get("ingested", 0))
    trained_before, session_start = float(replay.meta.get("trained_seconds", 0.0)), time.time()
    if loaded is None:
        replay.save_weights(state_dict_arrays(net), version=0, meta={"updates": 0})

    per = PrioritizedReplay.from_settings(training, spec)
    for rows in replay.reload().values():  # resume: rows ingested before, saved priorities
        per.add(rows, replay.priorities.reshape(-1)[rows["slot"]])
    rng = np.random.default_rng([seed, 1, updates])
    startup_seconds = time.perf_counter() - start
    ingest_seconds = 0.0
    ingested = 0
    losses: list[float] = []
    train_seconds = 0.0
    last_checkpoint = time.time()
    window_start, window_samples = time.perf_counter(), 0

    def checkpoint(trained: float) -> None:
        replay.checkpoint(updates, meta={"updates": updates, "ingested": ingested_total,
                                         "weights_version": version, "trained_seconds": trained})

    while True:
        now = time.time()
        # ingest: new transitions with the actors' initial priorities
        t0 = time.perf_counter()
        for rows in replay.poll(max_per_actor=spec.capacity // 2).values():
            n = len(per.add(rows))
            ingested += n
            ingested_total += n
        ingest_seconds += time.perf_counter() - t0
        can_train = len(per) >= training.learning_starts and per.may_update(updates, ingested_total)
        if max_updates is not None and updates >= max_updates:
            break
        if now >= deadline:
            break
        if not can_train:
            time.sleep(poll_seconds)
            continue
        for _ in range(max(1, int(min(8, per.update_budget(updates, ingested_total))))):
            # sample -> train step -> update priorities
            beta = per.beta(updates)
            slots, transitions, weights = per.sample(training.batch, rng, beta)
            t0 = time.perf_counter()
            loss, td = learner.train_step(to_batch(transitions, weights))
            train_seconds += time.perf_counter() - t0
            replay.update_priorities(slots, per.update_priorities(slots, td))  # the store keeps |td| + floor
            updates += 1
            window_samples += len(slots)
            losses.append(loss)
            # publish weights and a metrics row
            since = time.perf_counter() - window_start
            if updates - version >= training.publish_every and since >= training.publish_seconds:
                window = updates - version
                version = updates
                replay.save_weights(state_dict_arrays(learner.online), version=version, meta={"updates": updates})
                elapsed = time.perf_counter() - window_start
                replay.log_metrics(updates, {
                    "loss": float(np.mean(losses[-window:])),
                    "replay_size": len(per), "ingested": ingested_total, "beta": beta,
                    "samples_per_s": window_samples / max(elapsed, 1e-9),
                    "lost": float(replay.lost.sum()), "weights_version": version,
                })
                window_start, window_samples = time.perf_counter(), 0
            if max_updates is not None and updates >= max_updates:
                break
        per.maintain()
        # checkpoint the ingest state
        if time.time() - last_checkpoint >= training.checkpoint_seconds:
            checkpoint(trained_before + time.time() - session_start)
            last_checkpoint = time.time()
    if updates != version:
        version = updates
        replay.save_weights(state_dict_arrays(learner.online), version=version, meta={"updates": updates})
    trained = trained_before + time.time() - session_start
    checkpoint(trained)
    return {"updates": updates, "new_updates": len(losses), "ingested": ingested, "replay_size": len(per),
            "weights_version": version, "device": device, "lost": int(replay.lost.sum()), "trained_seconds": trained,
            "mean_loss": float(np.mean(losses)) if losses else float("nan"),
            "train_seconds": train_seconds, "ingest_seconds": ingest_seconds, "startup_seconds": startup_seconds,
            "seconds": time.perf_counter() - start}
