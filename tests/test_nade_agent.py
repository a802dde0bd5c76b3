"""Tests of the NADE-CVD surrogate, the schedule ranges and the REINFORCE agent.

Model and agent of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3. Kept fast (a few seconds each, one thread).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mapcvd.cvd.agent import (
    PolicyValue,
    Surrogate,
    discounted_returns,
    expected_return,
    rollout,
    schedule_returns,
    train_agent,
)
from mapcvd.cvd.nade import (
    PHASES,
    Z0,
    NadeCVD,
    evaluate_nade,
    from_arrays,
    to_arrays,
    train_nade,
)
from mapcvd.cvd.ranges import PAPER_RANGES, ScheduleRanges
from mapcvd.cvd.synthetic import SyntheticSurrogate


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SMALL = {"encoder": (16, 16), "lstm": 16, "decoder": (16,)}


def synthetic_dataset(n_runs: int, n_stages: int = 10, seed: int = 0, noise: float = 0.01):
    """Random schedules and noisy fractions from the synthetic surrogate's dynamics."""
    rng = np.random.default_rng(seed)
    X = PAPER_RANGES.random_schedules(n_runs, n_stages, rng)
    sur = SyntheticSurrogate(n_stages=n_stages)
    u = torch.as_tensor(PAPER_RANGES.normalise(X), dtype=torch.float32)
    z = torch.tensor(Z0).expand(n_runs, 3)
    state, zs = None, []
    for t in range(n_stages):
        z, _, state = sur.step(z, u[:, t], state)
        zs.append(z)
    Z = torch.stack(zs, 1).numpy() + rng.normal(0.0, noise, size=(n_runs, n_stages, 3))
    return X, Z


# --- ranges ---------------------------------------------------------------------------


def test_paper_ranges_and_scaling():
    r = PAPER_RANGES
    assert r.low == (750.0, 20.0, 20.0, 20.0) and r.high == (3750.0, 250.0, 250.0, 200.0)
    assert r.step_std == (250.0, 20.0, 20.0, 20.0)
    half = r.scaled(144)
    assert half.low[0] == 750.0 and half.high[0] == 3750.0 and half.step_std[0] == 250.0
    np.testing.assert_allclose(half.high[1:], np.asarray(r.high[1:]) / 2)
    np.testing.assert_allclose(half.step_std[1:], np.asarray(r.step_std[1:]) / 2)
    with pytest.raises(ValueError):
        ScheduleRanges(low=(1, 1, 1, 1), high=(0, 2, 2, 2), step_std=(1, 1, 1, 1))


def test_normalise_round_trip_numpy_and_torch():
    x = PAPER_RANGES.random_schedules(5, 4, rng=1)
    u = PAPER_RANGES.normalise(x)
    assert isinstance(u, np.ndarray) and u.min() >= 0 and u.max() <= 1
    np.testing.assert_allclose(PAPER_RANGES.denormalise(u), x)
    xt = torch.as_tensor(x, dtype=torch.float32)
    ut = PAPER_RANGES.normalise(xt)
    assert isinstance(ut, torch.Tensor) and ut.dtype == torch.float32
    torch.testing.assert_close(PAPER_RANGES.denormalise(ut), xt)
    far = np.array([[0.0, 1e3, -5.0, 100.0]])
    np.testing.assert_allclose(PAPER_RANGES.clip(far), [[750.0, 250.0, 20.0, 100.0]])
    torch.testing.assert_close(
        PAPER_RANGES.clip(torch.tensor(far, dtype=torch.float32)),
        torch.tensor([[750.0, 250.0, 20.0, 100.0]]),
    )


def test_random_schedules_respect_ranges_and_step_std():
    x = PAPER_RANGES.random_schedules(2000, 20, rng=0)
    assert x.shape == (2000, 20, 4) and PAPER_RANGES.contains(x)
    # start uniform: mean near mid-range, spread near span / sqrt(12)
    lo, hi = np.asarray(PAPER_RANGES.low), np.asarray(PAPER_RANGES.high)
    np.testing.assert_allclose(x[:, 0].mean(0), (lo + hi) / 2, rtol=0.05)
    np.testing.assert_allclose(x[:, 0].std(0), (hi - lo) / np.sqrt(12), rtol=0.05)
    # in a box too wide to clip, the steps are N(0, step_std)
    wide = ScheduleRanges(low=(-1e9,) * 4, high=(1e9,) * 4, step_std=PAPER_RANGES.step_std)
    y = wide.random_schedules(2000, 20, rng=0)
    steps = np.diff(y, axis=1).reshape(-1, 4)
    np.testing.assert_allclose(steps.std(0), PAPER_RANGES.step_std, rtol=0.03)
    assert np.all(np.abs(steps.mean(0)) < 0.03 * np.asarray(PAPER_RANGES.step_std))
    # same seed, same schedules
    np.testing.assert_array_equal(x, PAPER_RANGES.random_schedules(2000, 20, rng=0))


# --- NADE-CVD -------------------------------------------------------------------------


def test_nade_shapes_and_step_matches_forward():
    torch.manual_seed(0)
    model = NadeCVD().eval()
    assert model.hidden_size == 128 and isinstance(model, Surrogate)
    B, T = 5, 7
    z = torch.rand(B, T, 3)
    u = torch.rand(B, T, 4)
    mean, var, hidden = model(z, u)
    assert mean.shape == (B, T, 3) and var.shape == (B, T, 3) and hidden.shape == (B, T, 128)
    assert torch.all(var >= model.var_floor)
    with torch.no_grad():
        zt, state = model.initial_z(B), None
        for t in range(T):
            m, v, state = model.step(zt, u[:, t], state)
            assert m.shape == (B, 3) and v.shape == (B, 3) and model.features(state).shape == (B, 128)
            torch.testing.assert_close(m, mean[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(v, var[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model.features(state), hidden[:, t], atol=1e-5, rtol=1e-5)
            zt = z[:, t]
    nll = model.nll(z, u)
    assert nll.ndim == 0 and torch.isfinite(nll)


def test_nll_decreases_with_training():
    X, Z = synthetic_dataset(48, seed=0)
    model, hist = train_nade(X, Z, epochs=100, lr=1e-2, patience=None, seed=0, config=SMALL)
    assert len(hist["train"]) == len(hist["val"]) == 100
    assert hist["train"][-1] < hist["train"][0] - 1.0
    assert hist["best_val"] < hist["val"][0] - 1.0
    mae = evaluate_nade(model, X[hist["val_runs"]], Z[hist["val_runs"]])
    assert set(mae) == set(PHASES) and all(np.isfinite(v) for v in mae.values())
    assert mae["2H"] < 0.08 and mae["defect"] < 0.08


def test_early_stopping_restores_best_epoch():
    X, Z = synthetic_dataset(10, seed=1, noise=0.05)
    calls = []
    model, hist = train_nade(
        X, Z, epochs=150, lr=3e-2, patience=4, seed=3, validation_fraction=0.3,
        config={"encoder": (32,), "lstm": 32, "decoder": (32,)},
        progress=lambda e, tr, va: calls.append(e),
    )
    assert calls == list(range(hist["epochs_run"]))
    assert hist["best_epoch"] == int(np.argmin(hist["val"]))
    assert hist["epochs_run"] < 150  # this small, noisy set overfits and stops early
    assert hist["epochs_run"] == hist["best_epoch"] + 4 + 1  # `patience` epochs after the best
    assert hist["val"][-1] > hist["best_val"]  # so restoring the best weights matters
    z = torch.as_tensor(Z[hist["val_runs"]], dtype=torch.float32)
    u = torch.as_tensor(PAPER_RANGES.normalise(X[hist["val_runs"]]), dtype=torch.float32)
    with torch.no_grad():
        restored = float(model.nll(z, u))
    assert restored == pytest.approx(hist["best_val"], rel=1e-5, abs=1e-6)
    assert restored == pytest.approx(min(hist["val"]), rel=1e-5, abs=1e-6)


def test_to_arrays_from_arrays_round_trip():
    torch.manual_seed(2)
    model = NadeCVD(**SMALL).eval()
    arrays = to_arrays(model)
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    clone = from_arrays(arrays, model.config)
    z, u = torch.rand(3, 6, 3), torch.rand(3, 6, 4)
    with torch.no_grad():
        for a, b in zip(model(z, u), clone(z, u)):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


# --- agent ----------------------------------------------------------------------------


def test_discounted_returns():
    r = torch.tensor([[1.0, 0.0, 2.0]])
    torch.testing.assert_close(discounted_returns(r, 0.5), torch.tensor([[1.5, 1.0, 2.0]]))


def test_rollout_is_batched():
    sur = SyntheticSurrogate()
    calls = []
    step = sur.step

    def counting_step(*a, **k):
        calls.append(1)
        return step(*a, **k)

    sur.step = counting_step
    torch.manual_seed(0)
    policy = PolicyValue(input_size=sur.hidden_size)
    x0 = PAPER_RANGES.uniform_start(256, rng=0)
    outs = {}
    for B in (1, 256):
        calls.clear()
        ep = rollout(sur, policy, x0[:B], 20, None, PAPER_RANGES, torch.Generator().manual_seed(0))
        assert len(calls) == 20  # one surrogate call per stage, whatever the batch
        assert ep["x"].shape == (B, 20, 4) and ep["z"].shape == (B, 21, 3)
        assert ep["rewards"].shape == (B, 20) and ep["returns"].shape == (B, 20)
        assert ep["features"].shape == (B, 19, sur.hidden_size) and ep["actions"].shape == (B, 19, 4)
        assert PAPER_RANGES.contains(ep["x"])
        torch.testing.assert_close(ep["rewards"], ep["z"][:, 1:, 0])
        outs[B] = rollout(sur, policy, x0[:B], 20, None, PAPER_RANGES, greedy=True)
    # episodes are independent: the greedy episode of sample 0 is the same in both batches
    torch.testing.assert_close(outs[1]["x"][0], outs[256]["x"][0])
    torch.testing.assert_close(outs[1]["returns"][0], outs[256]["returns"][0])


def test_surrogate_is_frozen_during_agent_training():
    torch.manual_seed(0)
    nade = NadeCVD(**SMALL)
    before = {k: v.clone() for k, v in nade.state_dict().items()}
    policy, hist = train_agent(nade, updates=3, batch=4, n_stages=5, seed=0)
    assert len(hist["mean_return"]) == 3 and all(np.isfinite(hist["loss"]))
    for k, v in nade.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)
    assert all(p.grad is None for p in nade.parameters())
    assert all(p.requires_grad for p in nade.parameters())  # restored afterwards
    assert any(p.grad is not None for p in policy.parameters())


def test_agent_approaches_known_optimum_and_beats_random():
    sur = SyntheticSurrogate(t_opt=3000.0)
    policy, hist = train_agent(sur, updates=1500, batch=32, seed=0)
    assert np.mean(hist["mean_return"][-100:]) > np.mean(hist["mean_return"][:100]) + 2.0
    ep = rollout(sur, policy, PAPER_RANGES.uniform_start(256, rng=5), 20, None, PAPER_RANGES, greedy=True)
    late = ep["x"][:, 8:]  # after the steps needed to reach the optimum from any start
    best = sur.optimal_schedule()
    assert abs(float(late[..., 0].mean()) - best[0, 0]) < 250.0
    assert float(late[..., 1].mean()) < PAPER_RANGES.low[1] + 25.0
    agent = expected_return(sur, policy, n_episodes=256, seed=7)
    random = expected_return(sur, PAPER_RANGES.random_schedules(256, 20, rng=7))
    optimum = float(schedule_returns(sur, best[None])[0])
    assert agent > 1.5 * random
    assert agent <= optimum + 1e-4
