"""Tests of the learner's prioritized replay (mapcvd.map.prioritized)."""

import numpy as np
import pytest

from mapcvd.config import load_config
from mapcvd.map.prioritized import PRIORITY_FLOOR, PrioritizedReplay, base_priority
from mapcvd.map.sumtree import SumTree
from mapcvd.map.training_settings import TrainingSettings
from mapcvd.store.replay_spec import ReplaySpec

SHAPE = (1, 2, 2, 2)


def make_rows(slots, priority0):
    slots = np.asarray(slots, dtype=np.int64)
    n = slots.size
    return {
        "slot": slots,
        "state": np.arange(n * 8, dtype=np.float16).reshape(n, *SHAPE),
        "next_state": -np.arange(n * 8, dtype=np.float16).reshape(n, *SHAPE),
        "action": (slots % 5).astype(np.int8),
        "reward": slots.astype(np.float32) / 10,
        "discount": np.full(n, 0.9, dtype=np.float32),
        "priority0": np.asarray(priority0, dtype=np.float32),
    }


def make_replay(**kw):
    settings = {"alpha": 0.6, "beta0": 0.4, "beta_updates": 100, "updates_per_transition": 2.0, **kw}
    return PrioritizedReplay(16, SHAPE, np.float16, **settings)


def test_priority_is_abs_td_plus_floor_to_the_alpha():
    per = make_replay(alpha=0.5)
    td = np.array([-2.0, 0.0, 0.25])
    np.testing.assert_allclose(per.priority(td), (np.abs(td) + 1e-3) ** 0.5, rtol=1e-15)
    assert per.priority(np.array([0.0]))[0] > 0  # the floor: never zero
    np.testing.assert_array_equal(base_priority(td), np.abs(td) + PRIORITY_FLOOR)
    assert PRIORITY_FLOOR == 1e-3
    assert base_priority(np.float32([-1.5])).dtype == np.float32  # the actors' dtype is kept


def test_update_priorities_sets_the_tree_and_returns_what_the_store_keeps():
    per = make_replay(alpha=0.6)
    per.add(make_rows([0, 1], [1.0, 1.0]))
    stored = per.update_priorities(np.array([1]), np.float32([-3.0]))
    np.testing.assert_array_equal(stored, [3.0 + 1e-3])
    rng = np.random.default_rng(0)
    slots, _, _ = per.sample(2000, rng, beta=0.0)
    expected = 3.001**0.6 / (1.0 + 3.001**0.6)
    assert np.mean(slots == 1) == pytest.approx(expected, abs=1e-3)  # stratified: nearly exact


def test_beta_anneals_linearly_to_one_at_beta_updates():
    per = make_replay(beta0=0.4, beta_updates=100)
    assert per.beta(0) == pytest.approx(0.4)
    assert per.beta(50) == pytest.approx(0.7)
    assert per.beta(100) == pytest.approx(1.0)
    assert per.beta(1000) == 1.0


def test_importance_weights_are_normalised_by_the_batch_maximum():
    per = make_replay(alpha=1.0)
    base = np.array([1.0, 2.0, 4.0, 8.0])
    per.add(make_rows([0, 1, 2, 3], base))
    slots, _, weights = per.sample(64, np.random.default_rng(3), beta=0.5)
    probabilities = base[slots] / base.sum()
    expected = (4 * probabilities) ** -0.5
    np.testing.assert_allclose(weights, expected / expected.max(), rtol=1e-6)
    assert weights.dtype == np.float32 and weights.max() == 1.0
    assert weights[slots == 0].min() == 1.0  # the rarest transition weighs most


def test_sample_returns_the_cached_transitions_in_the_sum_trees_order():
    per = make_replay(alpha=0.6)
    rows = make_rows([3, 7, 9], [0.5, 2.0, 1.0])
    per.add(rows)
    assert len(per) == 3
    tree = SumTree(16)
    tree.update(rows["slot"], rows["priority0"].astype(np.float64) ** 0.6)
    want, _ = tree.sample(32, np.random.default_rng(11))
    slots, transitions, _ = per.sample(32, np.random.default_rng(11), beta=0.4)
    np.testing.assert_array_equal(slots, want)  # same draws for the same seed
    where = np.searchsorted(rows["slot"], slots)
    for name in ("state", "next_state", "action", "reward", "discount"):
        np.testing.assert_array_equal(transitions[name], rows[name][where])


def test_add_with_saved_priorities_overrides_priority0():
    per = make_replay(alpha=1.0)
    per.add(make_rows([0, 1], [1.0, 1.0]), np.array([0.0, 5.0]))
    slots, _, _ = per.sample(16, np.random.default_rng(0), beta=1.0)
    assert set(slots.tolist()) == {1}


def test_rate_limit_caps_updates_per_transition():
    per = make_replay(updates_per_transition=2.0)
    assert per.may_update(0, 1) and per.may_update(3, 2)
    assert not per.may_update(4, 2) and not per.may_update(0, 0)
    assert per.update_budget(3, 5) == 7.0


def test_from_settings_reads_the_map_settings():
    table = dict(load_config()["map"], priority_alpha=0.3, priority_beta0=0.2, beta_updates=10,
                 updates_per_transition=0.5)
    spec = ReplaySpec(channels=1, points=2, n_actors=2, capacity=8, chunk=4)
    per = PrioritizedReplay.from_settings(TrainingSettings.from_table(table), spec)
    assert (per.alpha, per.beta0, per.beta_updates, per.updates_per_transition) == (0.3, 0.2, 10, 0.5)
    per.add(make_rows([15], [1.0]))  # 2 actors x 8 slots
    assert len(per) == 1
    with pytest.raises(IndexError):
        per.add(make_rows([16], [1.0]))
