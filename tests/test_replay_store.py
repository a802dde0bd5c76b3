"""Tests of the distributed replay store (mapcvd.store.replay, learner_state, weights, metrics)."""

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

from mapcvd.errors import MapcvdError, StoreError
from mapcvd.store import create_campaign, open_campaign
from mapcvd.store import learner_state as replay_mod  # the module whose ring reads are raced
from mapcvd.store.learner_state import LearnerReplay
from mapcvd.store.metrics import read_metrics
from mapcvd.store.replay import (
    ActorWriter,
    actor_path,
    create_replay,
    open_replay,
)
from mapcvd.store.replay_spec import TRANSITION_FIELDS, ReplaySpec
from mapcvd.store.weights import latest_weights_version, read_weights

SPEC = ReplaySpec(channels=2, points=4, n_actors=2, capacity=64, chunk=8)


def make_rows(spec, actor, index):
    """Deterministic transitions of ``actor`` with global numbers ``index`` (exact in float16)."""
    g = np.asarray(index, dtype=np.int64)
    n = g.size
    grid = (spec.channels, spec.points, spec.points, spec.points)
    base = ((g * 7 + actor * 131) % 256).astype(np.float32)
    pattern = 0.25 * (np.arange(int(np.prod(grid))) % 4).reshape(grid)
    state = (base.reshape(n, 1, 1, 1, 1) + pattern).astype(spec.state_dtype)
    return {
        "state": state,
        "next_state": (state.astype(np.float32) + 1).astype(spec.state_dtype),
        "action": ((g + actor) % 6).astype(np.int8),
        "reward": (g + 0.5 * actor).astype(np.float32),
        "discount": np.where(g % 5 == 4, 0.0, 0.99).astype(np.float32),
        "done": g % 5 == 4,
        "priority0": (1.0 + g % 3).astype(np.float32),
        "episode": (g // 5 + 1000 * actor).astype(np.int32),
        "step": (g % 5).astype(np.int32),
        "energy": -(g + 0.25).astype(np.float32),
        "position": np.stack([g, np.full(n, actor), g % 7], axis=1).astype(np.float32),
    }


def assert_intact(spec, actor, rows):
    expected = make_rows(spec, actor, rows["index"])
    for name in TRANSITION_FIELDS:
        np.testing.assert_array_equal(rows[name], expected[name], err_msg=f"actor {actor} {name}")
        assert rows[name].dtype == expected[name].dtype
    np.testing.assert_array_equal(rows["slot"], actor * spec.capacity + rows["index"] % spec.capacity)


def one(spec, actor, g):
    return {k: v[0] for k, v in make_rows(spec, actor, [g]).items()}


@pytest.fixture
def root(tmp_path):
    root = create_campaign(tmp_path / "c.zarr", config={"name": "replay-test"})
    create_replay(root, SPEC)
    return root


def indices(seen, actor):
    parts = seen.get(actor, [])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


# ------------------------------------------------------------------------ basics


def test_round_trip_and_only_whole_chunks_visible(root):
    w = ActorWriter(root, 1, SPEC)
    learner = LearnerReplay(root, SPEC)
    for g in range(SPEC.chunk - 1):
        assert w.add(one(SPEC, 1, g)) == g
    assert w.committed == 0 and w.pending == SPEC.chunk - 1
    assert learner.poll() == {} and learner.committed(1) == 0
    w.add(one(SPEC, 1, SPEC.chunk - 1))  # the chunk fills: written whole, then committed
    assert w.committed == SPEC.chunk and w.pending == 0
    got = learner.poll()
    assert list(got) == [1]
    np.testing.assert_array_equal(got[1]["index"], np.arange(SPEC.chunk))
    assert_intact(SPEC, 1, got[1])
    np.testing.assert_array_equal(learner.priorities[1, : SPEC.chunk], got[1]["priority0"])
    assert learner.poll() == {}
    # a batch spanning several chunks commits each whole chunk and buffers the rest
    numbers = w.add_batch(make_rows(SPEC, 1, np.arange(8, 8 + 21)))
    np.testing.assert_array_equal(numbers, np.arange(8, 29))
    assert w.committed == 24 and w.pending == 5
    got = learner.poll()
    np.testing.assert_array_equal(got[1]["index"], np.arange(8, 24))
    assert_intact(SPEC, 1, got[1])


def test_flush_commits_a_partial_chunk_rewritten_whole_later(root):
    w = ActorWriter(root, 0)
    learner = LearnerReplay(root)
    w.add_batch(make_rows(SPEC, 0, np.arange(3)))
    assert w.flush() == 3 and w.committed == 3
    got = learner.poll()
    np.testing.assert_array_equal(got[0]["index"], [0, 1, 2])
    assert_intact(SPEC, 0, got[0])
    assert w.flush() == 3  # nothing new: no write
    # a new writer (a restarted actor) reloads the committed part of the chunk
    w2 = ActorWriter(root, 0)
    assert (w2.committed, w2.pending, w2.added) == (3, 0, 3)
    w2.add_batch(make_rows(SPEC, 0, np.arange(3, 10)))
    assert w2.committed == 8 and w2.pending == 2
    got = learner.poll()
    np.testing.assert_array_equal(got[0]["index"], np.arange(3, 8))
    assert_intact(SPEC, 0, got[0])
    # the rewritten chunk still holds the rows read before, unchanged
    again = LearnerReplay(root).poll()
    np.testing.assert_array_equal(again[0]["index"], np.arange(8))
    assert_intact(SPEC, 0, again[0])


def test_ring_overrun_is_detected_and_counted(root):
    w = ActorWriter(root, 0)
    learner = LearnerReplay(root)
    w.add_batch(make_rows(SPEC, 0, np.arange(20)))
    got = learner.poll(max_per_actor=10)
    np.testing.assert_array_equal(got[0]["index"], np.arange(10))
    w.add_batch(make_rows(SPEC, 0, np.arange(20, 120)))  # the ring holds 64
    assert w.committed == 120
    got = learner.poll()
    index = got[0]["index"]
    assert_intact(SPEC, 0, got[0])
    # conservative bound: the chunk being written at the counter may overwrite one more chunk
    assert index[0] == 120 - SPEC.capacity + SPEC.chunk and index[-1] == 119
    assert learner.lost[0] == index[0] - 10
    assert learner.lost[0] + 10 + index.size == 120
    assert learner.poll() == {}


def test_rows_overwritten_during_a_read_are_dropped(root, monkeypatch):
    """The counter re-read after the data catches chunks the actor rewrote meanwhile."""
    w = ActorWriter(root, 0)
    learner = LearnerReplay(root)
    w.add_batch(make_rows(SPEC, 0, np.arange(64)))  # the ring is full, nothing lost yet
    real_read = replay_mod._read_rows
    calls = []

    def racing_read(arrays, start, stop, capacity):
        if not calls:  # the actor writes two chunks between the counter read and the data read
            w.add_batch(make_rows(SPEC, 0, np.arange(64, 80)))
        calls.append((start, stop))
        return real_read(arrays, start, stop, capacity)

    monkeypatch.setattr(replay_mod, "_read_rows", racing_read)
    got = learner.poll()
    assert calls[0] == (0, 64)
    # rows 0..15 now hold numbers 64..79, and the actor may be writing 80..87 over
    # 16..23: everything below 24 is dropped, nothing stale is returned
    np.testing.assert_array_equal(got[0]["index"], np.arange(24, 64))
    assert_intact(SPEC, 0, got[0])
    assert learner.lost[0] == 24
    got = learner.poll()
    np.testing.assert_array_equal(got[0]["index"], np.arange(64, 80))
    assert_intact(SPEC, 0, got[0])


# --------------------------------------------------------------- learner resume


def test_learner_resumes_from_cursors_priorities_and_weights(root):
    w0, w1 = ActorWriter(root, 0), ActorWriter(root, 1)
    w0.add_batch(make_rows(SPEC, 0, np.arange(24)))
    w1.add_batch(make_rows(SPEC, 1, np.arange(16)))
    learner = LearnerReplay(root)
    first = learner.poll(max_per_actor=10)
    assert {a: r["index"].size for a, r in first.items()} == {0: 10, 1: 10}
    slots = first[0]["slot"][:3]
    learner.update_priorities(slots, [5.0, 6.0, 7.0])
    learner.save_weights({"conv.weight": np.arange(6.0).reshape(2, 3)}, version=3, meta={"updates": 30})
    learner.log_metrics(1, {"loss": 0.5, "q": 1.0})
    learner.checkpoint(step=2, meta={"weights_version": 3})
    learner.log_metrics(3, {"loss": 0.4, "q": 1.1})  # past the checkpoint: dropped on resume
    learner.log_metrics(4, {"loss": 0.3, "q": 1.2})
    lost_after_checkpoint = learner.poll(max_per_actor=4)  # ingested, never checkpointed
    assert lost_after_checkpoint[0]["index"][0] == 10
    del learner  # "crash"

    again = LearnerReplay(root, SPEC)
    np.testing.assert_array_equal(again.cursors, [10, 10])
    assert again.step == 2 and again.meta["weights_version"] == 3
    np.testing.assert_array_equal(again.priorities.reshape(-1)[slots], [5.0, 6.0, 7.0])
    arrays, version, meta = again.load_weights()
    assert version == 3 == latest_weights_version(root) and meta == {"updates": 30}
    np.testing.assert_array_equal(arrays["conv.weight"], np.arange(6.0).reshape(2, 3))
    # rebuilding the cache: the ingested rows, without moving the cursors
    cache = again.reload(max_per_actor=6)
    np.testing.assert_array_equal(cache[0]["index"], np.arange(4, 10))
    assert_intact(SPEC, 1, cache[1])
    # new rows: exactly those after the checkpointed cursors
    w0.add_batch(make_rows(SPEC, 0, np.arange(24, 40)))
    rest = again.poll()
    np.testing.assert_array_equal(rest[0]["index"], np.arange(10, 40))
    np.testing.assert_array_equal(rest[1]["index"], np.arange(10, 16))
    for actor, rows in rest.items():
        assert_intact(SPEC, actor, rows)
    assert again.poll() == {}
    again.log_metrics(3, {"loss": 0.35, "q": 1.15})
    metrics = read_metrics(root)
    np.testing.assert_array_equal(metrics["step"], [1, 3])
    np.testing.assert_array_equal(metrics["loss"], [0.5, 0.35])


def test_metrics_row_grown_but_not_yet_written_is_not_read(root):
    """A reader that catches log_metrics between its resize and its commit sees the rows before."""
    learner = LearnerReplay(root)
    learner.log_metrics(10, {"loss": 0.5})
    learner.log_metrics(20, {"loss": 0.4})
    node = root["map/learner/metrics"]
    for name in ("loss", "step"):  # the writer's next row, grown (fill value 0) and not committed
        node[name].resize((3,))
    metrics = read_metrics(root)
    np.testing.assert_array_equal(metrics["step"], [10, 20])
    np.testing.assert_array_equal(metrics["loss"], [0.5, 0.4])


def test_no_weights_before_first_publish(root):
    assert read_weights(root) is None and latest_weights_version(root) is None
    assert LearnerReplay(root).load_weights() is None


def test_uncommitted_first_checkpoint_is_ignored(root):
    ActorWriter(root, 0).add_batch(make_rows(SPEC, 0, np.arange(8)))
    root.require_group("map/learner/ingest/v1")  # crashed before "latest" moved
    learner = LearnerReplay(root)
    assert learner.cursors.tolist() == [0, 0]
    assert learner.poll()[0]["index"].size == 8
    assert learner.checkpoint(step=1) == 1
    assert LearnerReplay(root).cursors.tolist() == [8, 0]


# ------------------------------------------------------------------- bad input


def test_bad_specs_and_stores_are_refused_in_one_line(root, tmp_path):
    other = ReplaySpec(channels=2, points=8, n_actors=2, capacity=64, chunk=8)
    for call in (
        lambda: create_replay(root, other),
        lambda: open_replay(root, other),
        lambda: ActorWriter(root, 0, other),
        lambda: LearnerReplay(root, other),
        lambda: ActorWriter(root, 2),
        lambda: ReplaySpec(2, 4, 2, capacity=60, chunk=8),
        lambda: ReplaySpec(2, 4, 2, state_dtype="int8"),
        lambda: ReplaySpec(0, 4, 2),
    ):
        with pytest.raises(StoreError) as err:
            call()
        assert "\n" not in str(err.value) and isinstance(err.value, MapcvdError)
    with pytest.raises(StoreError, match=r"points=4 \(asked 8\)"):
        open_replay(root, other)
    bare = create_campaign(tmp_path / "bare.zarr", config={})
    with pytest.raises(StoreError, match="create_replay first"):
        ActorWriter(bare, 0)
    # a node of another kind where an actor's or the learner's group belongs
    root.create_group(actor_path(1), attributes={"kind": "something-else"})
    with pytest.raises(StoreError, match="not a mapcvd-replay-actor group"):
        ActorWriter(root, 1)
    root.create_group("map/learner", attributes={"kind": "mapcvd-campaign"})
    with pytest.raises(StoreError, match="not a mapcvd-replay-learner group"):
        LearnerReplay(root)
    bare.create_group("map/replay", attributes={"kind": "zarr-something"})
    with pytest.raises(StoreError, match="not a mapcvd-replay group"):
        open_replay(bare)


def test_bad_transitions_are_refused(root):
    w = ActorWriter(root, 0)
    good = make_rows(SPEC, 0, np.arange(2))
    with pytest.raises(StoreError, match="missing \\['energy'\\]"):
        w.add_batch({k: v for k, v in good.items() if k != "energy"})
    with pytest.raises(StoreError, match="'state' has shape"):
        w.add_batch({**good, "state": good["state"][:, :1]})
    with pytest.raises(StoreError, match="disagree"):
        w.add_batch({**good, "reward": good["reward"][:1]})
    with pytest.raises(StoreError, match="int8"):
        w.add_batch({**good, "action": np.array([0, 300])})
    with pytest.raises(StoreError, match="priority0"):
        w.add_batch({**good, "priority0": np.array([1.0, np.nan])})
    assert w.added == 0


def test_half_created_actor_group_is_recreated(root):
    group = root.require_group(actor_path(0))  # a crash before the attributes were written
    group.create_array("state", shape=(3,), dtype=np.float32)
    w = ActorWriter(root, 0)
    w.add_batch(make_rows(SPEC, 0, np.arange(8)))
    got = LearnerReplay(root).poll()
    assert_intact(SPEC, 0, got[0])


# ------------------------------------------------------ concurrent actors, SIGKILL


def _actor_process(path, actor, total, flush_every, seed):
    """Write transitions of ``actor`` up to number ``total - 1``, continuing from its counter."""
    rng = random.Random(seed)
    writer = ActorWriter(open_campaign(path), actor)
    spec = writer.spec
    g = writer.added
    while g < total:
        n = min(rng.randint(1, 2 * spec.chunk), total - g)
        writer.add_batch(make_rows(spec, actor, np.arange(g, g + n)))
        g += n
        if rng.random() < flush_every:
            writer.flush()
    writer.flush()


def test_two_actors_one_sigkilled_every_committed_row_once(tmp_path):
    spec = ReplaySpec(channels=2, points=4, n_actors=2, capacity=4096, chunk=16)
    path = tmp_path / "c.zarr"
    root = create_campaign(path, config={})
    create_replay(root, spec)
    ctx = mp.get_context("spawn")
    survivor_total, victim_total = 1500, 4000
    procs = {
        0: ctx.Process(target=_actor_process, args=(str(path), 0, survivor_total, 0.2, 0)),
        1: ctx.Process(target=_actor_process, args=(str(path), 1, victim_total, 0.2, 1)),
    }
    for p in procs.values():
        p.start()
    learner = LearnerReplay(root, spec)
    seen: dict[int, list] = {}
    kill_after = random.Random().randint(100, 600)
    seen_before_kill = None
    deadline = time.monotonic() + 45
    try:
        while procs[0].is_alive() or seen_before_kill is None:
            assert time.monotonic() < deadline, "actors did not finish in time"
            if seen_before_kill is None and learner.committed(1) >= kill_after:
                time.sleep(random.random() * 0.02)  # a random moment: likely mid-write
                seen_before_kill = learner.committed(1)
                os.kill(procs[1].pid, signal.SIGKILL)
            for actor, rows in learner.poll(max_per_actor=300).items():  # reads race the writers
                assert_intact(spec, actor, rows)
                seen.setdefault(actor, []).append(rows["index"])
            time.sleep(0.005)
        for p in procs.values():
            p.join(timeout=20)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
    assert procs[1].exitcode == -signal.SIGKILL, "the victim finished before it was killed"
    assert procs[0].exitcode == 0

    committed = {a: learner.committed(a) for a in (0, 1)}
    assert committed[0] == survivor_total
    assert seen_before_kill <= committed[1] < victim_total  # no commit is undone
    for actor, rows in learner.poll().items():
        assert_intact(spec, actor, rows)
        seen.setdefault(actor, []).append(rows["index"])
    for actor in (0, 1):  # every committed row once, in order, intact
        np.testing.assert_array_equal(indices(seen, actor), np.arange(committed[actor]))
    assert learner.lost.tolist() == [0, 0]

    # the killed actor restarts from its counter; a restarted learner from its cursors
    learner.checkpoint(step=1)
    restarted = LearnerReplay(open_campaign(path, "r"), spec)
    np.testing.assert_array_equal(restarted.cursors, [committed[0], committed[1]])
    resumed = ctx.Process(target=_actor_process, args=(str(path), 1, committed[1] + 100, 0.5, 2))
    resumed.start()
    resumed.join(timeout=30)
    assert resumed.exitcode == 0
    more = restarted.poll()
    assert list(more) == [1]
    np.testing.assert_array_equal(more[1]["index"], np.arange(committed[1], committed[1] + 100))
    assert_intact(spec, 1, more[1])
    assert restarted.poll() == {} and restarted.lost.tolist() == [0, 0]
