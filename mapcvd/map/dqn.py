"""The MAP Q-network and its learning rule.

MAP (Chen et al., seed 000) models the Q-function with a 3-D CNN over the agent's
local density grid, one output per action, trained by minimising the temporal
difference error against a target network (its Eq. 2). Following the distributed
prioritized DQN it builds on (Ape-X, Horgan et al., arXiv:1803.00933) this module
offers, as options: double-DQN targets (van Hasselt et al., arXiv:1509.06461),
n-step returns, and a Huber loss weighted by the importance-sampling weights of
prioritized replay (Schaul et al., arXiv:1511.05952). The new priorities are the
absolute TD errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mapcvd.config import default
from mapcvd.errors import InputError
from mapcvd.timing import measure


class QNetwork3D(nn.Module):
    """3-D CNN from a density grid ``(channels, n, n, n)`` to one Q-value per action.

    Parameters
    ----------
    channels
        Input channels (one per element of the grid).
    points
        Grid points per side.
    n_actions
        Number of discrete actions (MAP: 5, +x +y +z -y -z).
    conv_channels
        Output channels of the stride-2 3-D convolutions, in order.
    hidden
        Width of the fully connected layer.
    """

    def __init__(
        self,
        channels: int,
        points: int,
        n_actions: int = 5,
        conv_channels: Sequence[int] = (16, 32, 32),
        hidden: int = 128,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        size, c_in = points, channels
        for c_out in conv_channels:
            layers += [nn.Conv3d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            size = (size + 1) // 2
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c_in * size**3, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """Q-values, shape ``(batch, n_actions)``, for grids ``(batch, C, n, n, n)``."""
        return self.head(self.features(grid))


@dataclass
class Batch:
    """A batch of n-step transitions as tensors.

    Attributes
    ----------
    states, next_states
        States at t and at t + n (the bootstrap state).
    actions
        Actions at t, int64.
    returns
        Discounted reward sums over the n steps (or fewer, up to the episode end).
    discounts
        ``gamma**k`` for the bootstrap, with k the steps actually summed; 0 where
        the episode ended within the n steps.
    weights
        Importance-sampling weights (ones for uniform replay).
    """

    states: torch.Tensor
    actions: torch.Tensor
    returns: torch.Tensor
    next_states: torch.Tensor
    discounts: torch.Tensor
    weights: torch.Tensor

    def to(self, device) -> Batch:
        """The same batch on ``device``."""
        return Batch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def n_step_returns(rewards: np.ndarray, gamma: float, n: int, terminal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n-step returns of one episode's rewards, vectorised.

    Parameters
    ----------
    rewards
        Rewards r_0 .. r_{T-1} of one episode.
    gamma
        Discount factor.
    n
        Number of steps summed (>= 1).
    terminal
        Whether the episode ended in a terminal state (no bootstrap after the end);
        False for an episode cut at a step limit.

    Returns
    -------
    returns, bootstrap_index, discounts
        For each t: ``sum_{k<m} gamma^k r_{t+k}`` with ``m = min(n, T - t)``, the index
        ``t + m`` of the bootstrap state, and ``gamma^m`` (0 where the sum reached a
        terminal end).
    """
    if n < 1:
        raise InputError(f"n-step must be >= 1, got {n}")
    rewards = np.asarray(rewards, dtype=np.float64)
    steps = len(rewards)
    t = np.arange(steps)
    m = np.minimum(n, steps - t)
    k = np.arange(n)
    index = np.minimum(t[:, None] + k[None, :], steps - 1)
    mask = k[None, :] < m[:, None]
    returns = np.sum(np.where(mask, rewards[index] * gamma ** k[None, :], 0.0), axis=1)
    discounts = gamma**m
    if terminal:
        discounts = np.where(t + m >= steps, 0.0, discounts)
    return returns, t + m, discounts


def td_targets(online: nn.Module, target: nn.Module, batch: Batch, *, double: bool = True) -> torch.Tensor:
    """Bootstrapped targets ``R + gamma^n Q_target(s', a*)`` (no gradient).

    With ``double`` the action a* is the online network's greedy action (double DQN);
    otherwise the target network's own maximum (the MAP paper's Eq. 2).
    """
    with torch.no_grad():
        next_q = target(batch.next_states)
        if double:
            best = online(batch.next_states).argmax(dim=1, keepdim=True)
            bootstrap = next_q.gather(1, best).squeeze(1)
        else:
            bootstrap = next_q.max(dim=1).values
        return batch.returns + batch.discounts * bootstrap


def dqn_loss(online: nn.Module, target: nn.Module, batch: Batch, *, double: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted Huber loss and the absolute TD errors (the new priorities)."""
    q = online(batch.states).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
    y = td_targets(online, target, batch, double=double)
    per_sample = nn.functional.smooth_l1_loss(q, y, reduction="none")
    loss = torch.mean(batch.weights * per_sample)
    return loss, (y - q).detach().abs()


class DQNLearner:
    """Online and target networks, an optimiser and the update step.

    Parameters
    ----------
    network
        The online Q-network; the target network is a copy of it.
    lr
        Adam learning rate.
    target_update
        Copy the online weights to the target network every this many updates.
    double
        Use double-DQN targets.
    grad_clip
        Clip the gradient norm to this value (None: no clipping).
    device
        Torch device ("cuda" when available is chosen by the caller).
    """

    def __init__(self, network: nn.Module, *, lr: float = default("map", "learning_rate"),
                 target_update: int = default("map", "target_update"), double: bool = default("map", "double_dqn"),
                 grad_clip: float | None = 10.0, device: str | torch.device = "cpu"):
        if target_update < 1 or lr <= 0:
            raise InputError("target_update must be >= 1 and lr > 0")
        self.device = torch.device(device)
        self.online = network.to(self.device)
        self.target = _copy_network(self.online)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=lr)
        self.target_update = target_update
        self.double = double
        self.grad_clip = grad_clip
        self.updates = 0

    def train_step(self, batch: Batch) -> tuple[float, np.ndarray]:
        """One gradient step; returns the loss and the new priorities (|TD error|)."""
        with measure("torch"):
            batch = batch.to(self.device)
            loss, td = dqn_loss(self.online, self.target, batch, double=self.double)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.online.parameters(), self.grad_clip)
            self.optimizer.step()
            self.updates += 1
            if self.updates % self.target_update == 0:
                self.target.load_state_dict(self.online.state_dict())
            return float(loss.detach()), td.cpu().numpy()

    def greedy(self, states: torch.Tensor) -> np.ndarray:
        """Greedy actions of the online network."""
        with torch.no_grad():
            return self.online(states.to(self.device)).argmax(dim=1).cpu().numpy()


def _copy_network(network: nn.Module) -> nn.Module:
    import copy  # noqa: PLC0415

    clone = copy.deepcopy(network)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone
