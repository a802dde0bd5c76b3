"""The MAP Q-network and learning rule, on cheap environments."""

import numpy as np
import pytest
import torch
from torch import nn

from mapcvd.map.dqn import Batch, DQNLearner, QNetwork3D, dqn_loss, n_step_returns
from mapcvd.map.prioritized import importance_weights
from mapcvd.map.sumtree import SumTree

torch.set_num_threads(1)


def test_q_network_shapes_and_gradient():
    net = QNetwork3D(channels=3, points=16, n_actions=5)
    grids = torch.randn(4, 3, 16, 16, 16)
    q = net(grids)
    assert q.shape == (4, 5)
    q.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_n_step_returns_against_a_loop():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=9)
    gamma, n = 0.9, 3
    returns, index, discounts = n_step_returns(rewards, gamma, n, terminal=True)
    for t in range(9):
        m = min(n, 9 - t)
        assert returns[t] == pytest.approx(sum(gamma**k * rewards[t + k] for k in range(m)))
        assert index[t] == t + m
        assert discounts[t] == (0.0 if t + m == 9 else gamma**m)
    _, _, cut = n_step_returns(rewards, gamma, n, terminal=False)
    assert cut[-1] == pytest.approx(gamma)  # a cut episode still bootstraps


def chain_transitions(length):
    """Deterministic chain: actions 0 = left, 1 = right; reward 1 on reaching the right end."""
    eye = np.eye(length, dtype=np.float32)
    s, a, r, s2, d = [], [], [], [], []
    for state in range(length - 1):
        for action in (0, 1):
            nxt = max(state - 1, 0) if action == 0 else state + 1
            done = nxt == length - 1
            s.append(eye[state]), a.append(action), r.append(float(done)), s2.append(eye[nxt]), d.append(done)
    return np.array(s), np.array(a), np.array(r, dtype=np.float32), np.array(s2), np.array(d)


def test_dqn_learns_optimal_policy_of_a_chain_with_prioritized_replay():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    length, gamma = 6, 0.9
    s, a, r, s2, done = chain_transitions(length)
    net = nn.Sequential(nn.Linear(length, 32), nn.ReLU(), nn.Linear(32, 2))
    learner = DQNLearner(net, lr=1e-2, target_update=20, double=True, grad_clip=None)
    tree = SumTree(len(s))
    tree.update(np.arange(len(s)), 1.0)
    for _ in range(1500):
        slots, prios = tree.sample(16, rng)
        batch = Batch(
            torch.from_numpy(s[slots]),
            torch.from_numpy(a[slots]),
            torch.from_numpy(r[slots]),
            torch.from_numpy(s2[slots]),
            torch.from_numpy(np.where(done[slots], 0.0, gamma).astype(np.float32)),
            torch.from_numpy(importance_weights(prios, tree.total, len(s), beta=0.6)),
        )
        _, td = learner.train_step(batch)
        tree.update(slots, (td + 1e-3) ** 0.6)
    states = torch.eye(length)[: length - 1]
    assert learner.greedy(states).tolist() == [1] * (length - 1)  # always move right
    with torch.no_grad():
        q_right = learner.online(states)[:, 1].numpy()
    optimal = gamma ** np.arange(length - 2, -1, -1)  # Q*(s, right) = gamma^(steps left - 1)
    np.testing.assert_allclose(q_right, optimal, atol=0.05)


def test_loss_is_weighted_and_td_errors_are_priorities():
    net = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    batch = Batch(
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        torch.tensor([0, 1]),
        torch.tensor([0.0, 3.0]),
        torch.zeros(2, 2),
        torch.zeros(2),
        torch.tensor([1.0, 0.0]),
    )
    loss, td = dqn_loss(net, net, batch)
    np.testing.assert_allclose(td.numpy(), [1.0, 2.0])  # |y - q|: |0-1|, |3-1|
    assert float(loss.detach()) == pytest.approx(0.5 * 0.5)  # only the first sample counts: Huber(1)=0.5, mean of 2
