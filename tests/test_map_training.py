"""MAP training pieces: episode logs, n-step emission, the learner on a synthetic replay,
and the ``map train`` / ``map evaluate`` commands end to end on a tiny ReaxFF system."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr

from mapcvd.config import load_config
from mapcvd.map.actor import NStepEmitter
from mapcvd.map.dqn import n_step_returns
from mapcvd.map.learner import run_learner
from mapcvd.map.system import build_network
from mapcvd.map.training_settings import TrainingSettings, actor_epsilon
from mapcvd.store import create_campaign, open_campaign, stage_statuses
from mapcvd.store.episodes import EpisodeLog, EpisodeWriter
from mapcvd.store.metrics import read_metrics, trained_seconds
from mapcvd.store.replay import ActorWriter, create_replay
from mapcvd.store.replay_spec import ReplaySpec
from mapcvd.store.weights import read_weights

torch.set_num_threads(1)

TINY = """
[campaign]
seed = 3
site = "threads"
[map]
relax_steps = 5
max_actions = 6
grid_points = 8
minutes = {minutes}
actors = 1
replay_capacity = 64
replay_chunk = 4
learning_starts = 4
publish_every = 2
publish_seconds = 0.0
batch = 8
conv_channels = "4 8"
hidden = 16
"""


def mapcvd(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=os.path.dirname(os.path.abspath(str(args[-1]))) or None,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture
def root(tmp_path):
    return create_campaign(tmp_path / "c.zarr", config={"test": True})


# ------------------------------------------------------------------ episode logs
def test_episode_log_round_trip_and_only_committed_episodes_visible(root):
    writer = EpisodeWriter(root, "map/episodes/actor_000", n_atoms=2, summary_fields=("a", "b"),
                           step_fields={"e": (), "p": (3,)})
    for n in (3, 0, 5):
        steps = {"e": np.arange(n, dtype=float) + 10 * n, "p": np.full((n, 3), n, dtype=float)}
        writer.append({"a": n, "b": -n}, steps, np.full((n + 1, 2, 3), float(n)))
    log = EpisodeLog(root, "map/episodes/actor_000")
    assert len(log) == 3
    np.testing.assert_array_equal(log.summary()["a"], [3, 0, 5])
    np.testing.assert_array_equal(log.steps(2)["e"], np.arange(5) + 50)
    assert log.steps(1)["e"].shape == (0,)
    assert log.frames(2).shape == (6, 2, 3) and np.all(log.frames(2) == 5.0)
    assert log.frames(1).shape == (1, 2, 3) and np.all(log.frames(1) == 0.0)
    # a writer that died after writing rows but before its commit: rows invisible, then overwritten
    group = root["map/episodes/actor_000"]
    group["summary/a"].resize((8,))
    group["summary/a"][3] = 99.0
    assert len(EpisodeLog(root, "map/episodes/actor_000")) == 3
    again = EpisodeWriter(root, "map/episodes/actor_000", n_atoms=2, summary_fields=("a", "b"),
                          step_fields={"e": (), "p": (3,)})
    assert again.count == 3
    again.append({"a": 7, "b": 0}, {"e": np.ones(1), "p": np.ones((1, 3))}, np.zeros((2, 2, 3)))
    np.testing.assert_array_equal(EpisodeLog(root, "map/episodes/actor_000").summary()["a"], [3, 0, 5, 7])


def test_episode_log_refuses_another_layout_and_bad_rows(root):
    EpisodeWriter(root, "log", n_atoms=2, summary_fields=("a",), step_fields={"e": ()})
    with pytest.raises(Exception, match="another layout"):
        EpisodeWriter(root, "log", n_atoms=3, summary_fields=("a",), step_fields={"e": ()})
    writer = EpisodeWriter(root, "log", n_atoms=2, summary_fields=("a",), step_fields={"e": ()})
    with pytest.raises(Exception, match="frames have shape"):
        writer.append({"a": 1}, {"e": np.ones(2)}, np.zeros((2, 2, 3)))
    with pytest.raises(Exception, match="summary fields"):
        writer.append({"z": 1}, {"e": np.ones(2)}, np.zeros((3, 2, 3)))
    assert writer.count == 0


# ------------------------------------------------------------------ actors
def test_nstep_emitter_streams_what_n_step_returns_computes():
    rng = np.random.default_rng(1)
    n, gamma, T = 3, 0.9, 7
    rewards = rng.normal(size=T)
    states = [np.full((1, 2, 2, 2), t, dtype=np.float32) for t in range(T + 1)]
    qs = [rng.normal(size=5) for _ in range(T + 1)]
    actions = rng.integers(5, size=T)
    emitter = NStepEmitter(n, gamma)
    emitter.start(states[0], qs[0])
    rows = []
    for t in range(T):
        last = t == T - 1
        out = emitter.push(actions[t], rewards[t], states[t + 1], None if last else qs[t + 1], 0.0, np.zeros(3))
        if out is not None:
            assert np.all(out["step"] + n <= t + 1)  # only complete windows are streamed early
            rows.append(out)
    rows.append(emitter.finish(terminal=True, final_q=None))
    steps = np.concatenate([r["step"] for r in rows])
    np.testing.assert_array_equal(steps, np.arange(T))  # every step once, in order
    returns, boot, disc = n_step_returns(rewards, gamma, n, terminal=True)
    np.testing.assert_allclose(np.concatenate([r["reward"] for r in rows]), returns, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate([r["discount"] for r in rows]), disc, rtol=1e-6)
    nxt = np.concatenate([r["next_state"][:, 0, 0, 0, 0] for r in rows])
    np.testing.assert_array_equal(nxt, boot)  # the bootstrap state is s_{t+m}
    q_boot = np.array([np.max(qs[b]) if b < T else 0.0 for b in boot])
    expected = np.abs(returns + disc * q_boot - np.array([qs[t][a] for t, a in enumerate(actions)])) + 1e-3
    np.testing.assert_allclose(np.concatenate([r["priority0"] for r in rows]), expected, rtol=1e-5)


def test_ape_x_epsilons():
    base, alpha = TrainingSettings().epsilon_base, TrainingSettings().epsilon_alpha
    eps = [actor_epsilon(i, 8, base, alpha) for i in range(8)]
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.4**8)
    assert all(a > b for a, b in zip(eps, eps[1:]))
    assert actor_epsilon(0, 1, base, alpha) == pytest.approx(0.4)


# ------------------------------------------------------------------ learner
def test_learner_learns_a_bandit_from_the_store_and_resumes(root):
    """A one-step task written by a stand-in actor: reward 1 for action 0 only, in any state."""
    training = TrainingSettings.from_table(dict(
        load_config()["map"], grid_points=4, conv_channels="4", hidden=16, batch=32, learning_starts=32,
        publish_every=25, publish_seconds=0.0, target_update=10, learning_rate=3e-3, updates_per_transition=10.0,
        checkpoint_seconds=1.0, actors=1))
    spec = ReplaySpec(channels=2, points=4, n_actors=1, capacity=512, chunk=16)
    create_replay(root, spec)
    rng = np.random.default_rng(0)
    writer = ActorWriter(root, 0)
    n = 400
    actions = rng.integers(5, size=n)
    writer.add_batch({
        "state": rng.random((n, 2, 4, 4, 4)).astype(np.float16),
        "next_state": np.zeros((n, 2, 4, 4, 4), dtype=np.float16),
        "action": actions.astype(np.int8), "reward": (actions == 0).astype(np.float32),
        "discount": np.zeros(n, np.float32), "done": np.ones(n, bool), "priority0": np.ones(n, np.float32),
        "episode": np.arange(n, dtype=np.int32), "step": np.zeros(n, np.int32),
        "energy": np.zeros(n, np.float32), "position": np.zeros((n, 3), np.float32),
    })
    writer.flush()
    assert trained_seconds(root) == 0.0  # no checkpoint yet
    out = run_learner(root, training, deadline=1e18, seed=0, channels=2, max_updates=300, poll_seconds=0.01)
    assert trained_seconds(root) == pytest.approx(out["trained_seconds"]) and 0 < out["trained_seconds"] <= out["seconds"]
    assert out["updates"] == 300 and out["ingested"] == n and out["replay_size"] == n
    arrays, version, _ = read_weights(root)
    assert version == 300
    net = build_network(training, 2, 0)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    with torch.no_grad():
        q = net(torch.from_numpy(rng.random((64, 2, 4, 4, 4)).astype(np.float32)))
    assert (q.argmax(dim=1) == 0).float().mean() > 0.95  # learnt: action 0 everywhere
    assert q[:, 0].mean().item() == pytest.approx(1.0, abs=0.2)
    assert len(read_metrics(root)["step"]) == 300 // 25
    # resume: nothing new to ingest, the counters continue from the checkpoint and the weights
    again = run_learner(root, training, deadline=1e18, seed=0, channels=2, max_updates=350, poll_seconds=0.01)
    assert again["ingested"] == 0 and again["updates"] == 350 and again["replay_size"] == n
    # the training time adds up over sessions (the campaign's budget for map.minutes)
    assert trained_seconds(root) == pytest.approx(again["trained_seconds"])
    assert 0 < again["trained_seconds"] - out["trained_seconds"] <= again["seconds"]


# ------------------------------------------------------------------ commands
def test_bad_map_input_is_one_line_before_any_work(tmp_path):
    cases = {
        "reward_foo = 1.0": "unknown config key 'map.reward_foo'",
        "delta_A = 0.0": "map.delta_A",
        "grid_points = 128": "state grid",
        "guided = 'a b'": "map.guided",
        "forcefield = 'nope.ff'": "not found",
    }
    for line, message in cases.items():
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f"[map]\n{line}\n")
        result = mapcvd("map", "train", cfg, "--store", tmp_path / "s.zarr", timeout=60)
        assert result.returncode != 0, line
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("mapcvd: error:"), result.stderr
        assert message in result.stderr, result.stderr
        assert not (tmp_path / "s.zarr").exists()  # refused before any work
    other = tmp_path / "other.zarr"
    zarr.open_group(str(other), mode="w").attrs["kind"] = "something-else"
    result = mapcvd("map", "train", "--store", other, timeout=60)
    assert result.returncode != 0 and "is not a mapcvd-campaign store" in result.stderr
    result = mapcvd("map", "evaluate", tmp_path / "missing.zarr", "--episodes", 1, timeout=60)
    assert result.returncode != 0 and result.stderr.startswith("mapcvd: error: no campaign store")


def test_train_continue_and_evaluate_on_a_tiny_reaxff_system(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(minutes=0.25))
    store = tmp_path / "s.zarr"
    first = mapcvd("map", "train", cfg, "--store", store)
    assert first.returncode == 0, first.stderr
    group = open_campaign(store, "r")
    log = EpisodeLog(group, "map/episodes/actor_000")
    episodes, version = len(log), read_weights(group)[1]
    assert episodes >= 2 and version > 0
    assert np.all(log.summary()["actions"] <= 6)
    assert log.frames(0).shape == (int(log.summary()["actions"][0]) + 1, 195, 3)
    assert int(group["map/replay/actor_000/committed"][0]) == int(log.summary()["actions"].sum())
    # the same command continues: more episodes, the learner continues from its weights
    second = mapcvd("map", "train", "--store", store, "--minutes", 0.15)
    assert second.returncode == 0, second.stderr
    group = open_campaign(store, "r")
    assert len(EpisodeLog(group, "map/episodes/actor_000")) > episodes
    assert read_weights(group)[1] > version
    evaluated = mapcvd("map", "evaluate", store, "--episodes", 2, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert result["policy"] == "greedy" and result["episodes"] == 2
    stored = EpisodeLog(open_campaign(store, "r"), "map/evaluation/greedy")
    assert len(stored) == 2
    assert result["mean_progress_A"] == pytest.approx(stored.summary()["progress_A"].mean())
    assert stage_statuses(open_campaign(store, "r")) == {"map_train": "done", "map_evaluate_greedy": "done"}


def test_ablation_trains_each_variant_and_plots(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(minutes=0.08))
    out = tmp_path / "abl"
    result = mapcvd("map", "ablation", cfg, "--out", out, "--terms", "energy")
    assert result.returncode == 0, result.stderr
    assert (out / "ablation.png").stat().st_size > 10_000
    for label, weight in (("all_terms", 0.5), ("no_energy", 0.0)):
        group = open_campaign(out / f"{label}.zarr", "r")
        assert group.attrs["config"]["map"]["reward_energy"] == weight
        log = EpisodeLog(group, "map/episodes/actor_000")
        assert len(log) >= 1
        if weight == 0.0:  # the switched-off term never counts in the reward
            steps = log.steps(0)
            np.testing.assert_allclose(steps["reward"], steps["terms"] @ np.array([1.0, 0.0, 0.5, 0.5, 0.1]))
    bad = mapcvd("map", "ablation", cfg, "--out", out, "--terms", "energy,speed")
    assert bad.returncode != 0 and "unknown reward term(s) speed" in bad.stderr
