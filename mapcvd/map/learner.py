"""The MAP learner loop: prioritized replay from the store, DQN updates, weight publication.

One learner (Chen et al., MAP, seed 000; Ape-X, Horgan et al., arXiv:1803.00933)
ingests the actors' transitions from the Zarr replay, keeps them in an in-memory
cache indexed by replay slot with a float64 sum tree of ``p^alpha``
(:class:`~mapcvd.map.sumtree.SumTree`), samples batches proportionally to priority
with importance weights ``(N P_i)^-beta`` (beta annealed to 1), takes double-DQN
n-step Huber steps (:class:`~mapcvd.map.dqn.DQNLearner`), writes the new priorities
back and publishes its weights (with a metrics row) every ``publish_every`` updates but
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

from mapcvd.map.dqn import Batch, DQNLearner, importance_weights
from mapcvd.map.sumtree import SumTree
from mapcvd.map.system import build_network
from mapcvd.store.learner_state import LearnerReplay

#: Small constant added to |TD| so that no transition's priority is zero.
PRIORITY_EPSILON = 1e-3


class ReplayCache:
    """The learner's in-memory copy of the replay, indexed by learner-wide slot.

    Parameters
    ----------
    size
        Number of slots (actors x ring capacity).
    state_shape
        Shape of one state grid.
    dtype
        Storage dtype of the grids (the store's, float16 by default).
    """

    def __init__(self, size: int, state_shape: tuple, dtype):
        self.state = np.zeros((size, *state_shape), dtype=dtype)
        self.next_state = np.zeros((size, *state_shape), dtype=dtype)
        self.action = np.zeros(size, dtype=np.int64)
        self.reward = np.zeros(size, dtype=np.float32)
        self.discount = np.zeros(size, dtype=np.float32)
        self.filled = np.zeros(size, dtype=bool)

    def put(self, rows: dict) -> np.ndarray:
        """Store polled rows (with their ``"slot"``); return the slots."""
        slots = rows["slot"]
        self.state[slots] = rows["state"]
        self.next_state[slots] = rows["next_state"]
        self.action[slots] = rows["action"]
        self.reward[slots] = rows["reward"]
        self.discount[slots] = rows["discount"]
        self.filled[slots] = True
        return slots

    @property
    def size(self) -> int:
        """Slots holding a transition."""
        return int(self.filled.sum())

    def batch(self, slots: np.ndarray, weights: np.ndarray):
        """The transitions at ``slots`` as a :class:`~mapcvd.map.dqn.Batch` of tensors."""
        import torch  # noqa: PLC0415

        return Batch(
            torch.from_numpy(self.state[slots].astype(np.float32)),
            torch.from_numpy(self.action[slots]),
            torch.from_numpy(self.reward[slots]),
            torch.from_numpy(self.next_state[slots].astype(np.float32)),
            torch.from_numpy(self.discount[slots]),
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


def run_learner(root, table: dict, *, deadline: float, seed: int, channels: int,
                max_updates: int | None = None, poll_seconds: float = 0.25) -> dict:
    """Train from the replay until ``deadline`` (``time.time()``); publish weights and checkpoints.

    Parameters
    ----------
    root
        Campaign root group, read-write; this process is the only writer of
        ``map/learner``.
    table
        The ``[map]`` configuration table.
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
    device = choose_device(table["device"])
    if device == "cpu":
        torch.set_num_threads(table["learner_threads"])
    replay = LearnerReplay(root)
    spec = replay.spec
    net = build_network(table, channels, seed)
    loaded = replay.load_weights()
    version = 0
    if loaded is not None:
        arrays, version, _ = loaded
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
    learner = DQNLearner(net, lr=table["learning_rate"], target_update=table["target_update"],
                         double=table["double_dqn"], device=device)
    # the weights may have been published after the last ingest checkpoint
    updates = max(int(replay.meta.get("updates", replay.step)), version)
    learner.updates = updates
    ingested_total = int(replay.meta.get("ingested", 0))
    trained_before, session_start = float(replay.meta.get("trained_seconds", 0.0)), time.time()
    if loaded is None:
        replay.save_weights(state_dict_arrays(net), version=0, meta={"updates": 0})

    alpha = table["priority_alpha"]
    size = spec.n_actors * spec.capacity
    cache = ReplayCache(size, (spec.channels, spec.points, spec.points, spec.points), np.dtype(spec.state_dtype))
    tree = SumTree(size)
    for rows in replay.reload().values():  # resume: rows ingested before, saved priorities
        slots = cache.put(rows)
        tree.update(slots, replay.priorities.reshape(-1)[slots].astype(np.float64) ** alpha)
    rng = np.random.default_rng([seed, 1, updates])
    startup_seconds = time.perf_counter() - start
    ingest_seconds = 0.0
    ingested = 0
    losses: list[float] = []
    train_seconds = 0.0
    last_checkpoint = time.time()
    window_start, window_samples = time.perf_counter(), 0
    while True:
        now = time.time()
        t0 = time.perf_counter()
        for rows in replay.poll(max_per_actor=spec.capacity // 2).values():
            slots = cache.put(rows)
            tree.update(slots, rows["priority0"].astype(np.float64) ** alpha)
            ingested += len(slots)
            ingested_total += len(slots)
        ingest_seconds += time.perf_counter() - t0
        allowed = table["updates_per_transition"] * ingested_total
        can_train = cache.size >= table["learning_starts"] and updates < allowed
        if max_updates is not None and updates >= max_updates:
            break
        if now >= deadline:
            break
        if not can_train:
            time.sleep(poll_seconds)
            continue
        for _ in range(max(1, int(min(8, allowed - updates)))):
            beta = table["priority_beta0"] + (1 - table["priority_beta0"]) * min(1.0, updates / table["beta_updates"])
            slots, priorities = tree.sample(table["batch"], rng)
            weights = importance_weights(priorities, tree.total, cache.size, beta)
            t0 = time.perf_counter()
            loss, td = learner.train_step(cache.batch(slots, weights))
            train_seconds += time.perf_counter() - t0
            new = np.abs(td).astype(np.float64) + PRIORITY_EPSILON
            tree.update(slots, new**alpha)
            replay.update_priorities(slots, new)
            updates += 1
            window_samples += len(slots)
            losses.append(loss)
            since = time.perf_counter() - window_start
            if updates - version >= table["publish_every"] and since >= table["publish_seconds"]:
                window = updates - version
                version = updates
                replay.save_weights(state_dict_arrays(learner.online), version=version, meta={"updates": updates})
                elapsed = time.perf_counter() - window_start
                replay.log_metrics(updates, {
                    "loss": float(np.mean(losses[-window:])),
                    "replay_size": cache.size, "ingested": ingested_total, "beta": beta,
                    "samples_per_s": window_samples / max(elapsed, 1e-9),
                    "lost": float(replay.lost.sum()), "weights_version": version,
                })
                window_start, window_samples = time.perf_counter(), 0
            if max_updates is not None and updates >= max_updates:
                break
        if tree.drift() > 1e-4:
            tree.rebuild()
        if time.time() - last_checkpoint >= table["checkpoint_seconds"]:
            replay.checkpoint(updates, meta={"updates": updates, "ingested": ingested_total,
                                             "weights_version": version,
                                             "trained_seconds": trained_before + time.time() - session_start})
            last_checkpoint = time.time()
    if updates != version:
        version = updates
        replay.save_weights(state_dict_arrays(learner.online), version=version, meta={"updates": updates})
    trained = trained_before + time.time() - session_start
    replay.checkpoint(updates, meta={"updates": updates, "ingested": ingested_total, "weights_version": version,
                                     "trained_seconds": trained})
    return {"updates": updates, "new_updates": len(losses), "ingested": ingested, "replay_size": cache.size,
            "weights_version": version, "device": device, "lost": int(replay.lost.sum()), "trained_seconds": trained,
            "mean_loss": float(np.mean(losses)) if losses else float("nan"),
            "train_seconds": train_seconds, "ingest_seconds": ingest_seconds, "startup_seconds": startup_seconds,
            "seconds": time.perf_counter() - start}
