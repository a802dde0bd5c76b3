"""REINFORCE with a value baseline on a frozen CVD surrogate.

The agent of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3: its state is the surrogate's hidden vector (the
NADE-CVD's 128-d LSTM state), its policy a Gaussian with fixed standard deviation
(250 K, 20, 20, 20) around an MLP's mean (128 -> 72 -> 24 -> 4, plus a value head), its
action a change of the conditions, ``X_{t+1} = clip(X_t + a_t)``, and its reward at each
stage the predicted 2H fraction, so the return is largest when 2H forms early and fully.

Episode layout (``n_stages`` stages, batch ``B``; everything is a batched tensor, the
only Python loop is over stages):

* stage 0 runs at the start conditions ``x0`` (uniform in range, as the paper's random
  schedules); after each stage ``t`` the policy sees ``features(state)`` and picks the
  change to stage ``t + 1``: ``n_stages - 1`` actions;
* reward ``r_t`` = the surrogate's *mean* 2H fraction after stage ``t``, and the mean
  fractions are fed back as the next input. Using the mean (not a sample of the
  Gaussian) gives the expected per-stage reward under the surrogate and deterministic
  episodes given the actions, so the return's variance comes from the policy alone; set
  ``sample_z=True`` in :func:`rollout` to feed back samples instead (the reward stays
  the mean);
* returns ``G_t = sum_k gamma^k r_{t+k}`` (gamma 0.99); the action chosen after stage
  ``t - 1`` is credited with ``G_t``.

Speed: the rollout runs entirely under ``torch.no_grad`` (surrogate and policy), and
:func:`reinforce_update` recomputes the policy's means and values for all stored states
in one batched call with gradients. Since the actions are sampled (not reparameterised)
and the states do not depend on the policy's weights, this gives exactly the gradient
of the log-probabilities built step by step, at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mapcvd.config import default

from .nade import Z0, relu_mlp
from .ranges import PAPER_RANGES, ScheduleRanges
from .surrogate_rollout import Frozen, fixed_rollout


@runtime_checkable
class Surrogate(Protocol):
    """What the agent needs of a surrogate (``NadeCVD`` and ``SyntheticSurrogate`` fit).

    ``step(z_t (B, 3), u_t (B, 4) normalised, state or None) -> (mean (B, 3), var (B, 3),
    state)``; ``features(state) -> (B, hidden_size)``.
    """

    hidden_size: int

    def step(self, z_t: torch.Tensor, u_t: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, torch.Tensor, Any]: ...

    def features(self, state: Any) -> torch.Tensor: ...


class PolicyValue(nn.Module):
    """Gaussian-policy means and a state value from the surrogate's hidden state.

    Parameters
    ----------
    input_size : int
        Size of the surrogate's features (128 for the paper's NADE-CVD).
    hidden : sequence of int
        Shared ReLU trunk (paper: 72, 24).
    action_scale : sequence of 4 floats
        Change parameterisation (the paper's ``X_{t+1} = X_t + a_t``): the means of the
        changes are ``action_scale * tanh(.)``, in physical units; default twice the
        paper's step std, (500 K, 40, 40, 40).
    target_box : (low, high) or None
        Target parameterisation instead: the mean of the *next conditions* is
        ``low + (high - low) * sigmoid(.)``, always inside the box, so any condition of
        the range is one stage away. A change whose mean points past a bound is clipped
        whatever the noise, so it gets no learning signal and a change policy can lock
        there (seen on the paper's NADE-CVD: every stage at 3750 K); a target mean inside
        the box always keeps the noise informative. ``action_scale`` is then unused.

    Notes
    -----
    The agent of Rajak et al., npj Comput. Mater. 7, 108 (2021),
    doi:10.1038/s41524-021-00535-3 (policy MLP 128 -> 72 -> 24 -> 4 plus a value head).
    """

    def __init__(
        self,
        input_size: int = 128,
        hidden: Sequence[int] = (72, 24),
        action_scale: Sequence[float] = (500.0, 40.0, 40.0, 40.0),
        target_box: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in zip([input_size, *hidden][:-1], hidden):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        width = hidden[-1] if len(hidden) else input_size
        self.mean_head = nn.Linear(width, len(action_scale))
        self.value_head = nn.Linear(width, 1)
        self.register_buffer("action_scale", torch.tensor(action_scale, dtype=torch.float32))
        self.targets = target_box is not None
        low, high = target_box if target_box is not None else ((0.0,) * 4, (1.0,) * 4)
        self.register_buffer("target_low", torch.tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("target_span", torch.tensor(high, dtype=torch.float32) - self.target_low,
                             persistent=False)
        self._trunk_layers = tuple(m for m in self.trunk if isinstance(m, nn.Linear))

    def _mean(self, f: torch.Tensor) -> torch.Tensor:
        out = F.linear(f, self.mean_head.weight, self.mean_head.bias)
        if self.targets:
            return self.target_low + self.target_span * torch.sigmoid(out)
        return self.action_scale * torch.tanh(out)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (..., input_size) -> (action means (..., 4) in physical units, values (...))."""
        f = relu_mlp(h, self._trunk_layers)
        return self._mean(f), self.value_head(f).squeeze(-1)

    def mean_action(self, h: torch.Tensor) -> torch.Tensor:
        """Action means only (..., 4), skipping the value head (used inside rollouts)."""
        return self._mean(relu_mlp(h, self._trunk_layers))

    def next_conditions(self, x: torch.Tensor, a: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """The next stage's conditions from the current ``x`` and the sampled action ``a``, clipped."""
        return torch.clamp(a if self.targets else x + a, low, high)


def _box(ranges: ScheduleRanges, dtype=torch.float32):
    lo = torch.tensor(ranges.low, dtype=dtype)
    hi = torch.tensor(ranges.high, dtype=dtype)
    return lo, hi, 1.0 / (hi - lo)


def discounted_returns(rewards: torch.Tensor, gamma: float = default("cvd_learning", "agent_gamma")) -> torch.Tensor:
    """``G_t = r_t + gamma G_{t+1}`` along the last axis of ``rewards`` (B, n)."""
    out = torch.empty_like(rewards)
    g = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        g = rewards[..., t] + gamma * g
        out[..., t] = g
    return out


def rollout(
    surrogate: Surrogate,
    policy: PolicyValue,
    x0,
    n_stages: int = 20,
    sigma: Sequence[float] | None = None,
    ranges: ScheduleRanges = PAPER_RANGES,
    generator: torch.Generator | None = None,
    *,
    gamma: float = default("cvd_learning", "agent_gamma"),
    greedy: bool = False,
    sample_z: bool = False,
) -> dict[str, torch.Tensor]:
    """Run a batch of episodes through the surrogate, no gradients.

    Parameters
    ----------
    surrogate : Surrogate
        Frozen model with ``step`` and ``features``.
    policy : PolicyValue
    x0 : array or tensor (B, 4)
        Physical conditions of stage 0.
    n_stages : int
        Stages per episode (paper: 20).
    sigma : 4 floats or None
        Fixed policy std in physical units; ``ranges.step_std`` when None.
    ranges : ScheduleRanges
        Box for clipping and normalisation.
    generator : torch.Generator or None
        Source of the action noise (and of ``sample_z`` noise).
    gamma : float
        Discount for ``returns``.
    greedy : bool
        Take the mean actions (no noise), for evaluation.
    sample_z : bool
        Feed back Gaussian samples of the fractions instead of the means.

    Returns
    -------
    dict of tensors
        ``x`` (B, n, 4) schedule; ``z`` (B, n + 1, 3) fractions with ``Z_0``; ``rewards``
        and ``returns`` (B, n); ``features`` (B, n - 1, H) the states the actions were
        chosen from; ``actions`` (B, n - 1, 4) unclipped sampled changes; ``sigma`` (4,).
    """
    lo, hi, inv_span = _box(ranges)
    sig = torch.tensor(ranges.step_std if sigma is None else sigma, dtype=torch.float32)
    x = torch.as_tensor(x0, dtype=torch.float32)
    if x.ndim != 2 or x.shape[-1] != 4:
        raise ValueError(f"x0 must be (batch, 4), got {tuple(x.shape)}")
    x = torch.clamp(x, lo, hi)
    B = x.shape[0]
    with torch.no_grad():
        noise = None if greedy else torch.randn(B, max(n_stages - 1, 0), 4, generator=generator) * sig
        z = torch.tensor(Z0, dtype=torch.float32).expand(B, 3)
        xs, zs, rs, feats, acts = [x], [z], [], [], []
        mean, var, state = surrogate.step(z, (x - lo) * inv_span, None)
        for t in range(1, n_stages + 1):
            rs.append(mean[:, 0])
            z = mean if not sample_z else mean + var.sqrt() * torch.randn(mean.shape, generator=generator)
            zs.append(z)
            if t == n_stages:
                break
            h = surrogate.features(state)
            mu = policy.mean_action(h)
            a = mu if noise is None else mu + noise[:, t - 1]
            x = policy.next_conditions(x, a, lo, hi)
            feats.append(h)
            acts.append(a)
            xs.append(x)
            mean, var, state = surrogate.step(z, (x - lo) * inv_span, state)
        rewards = torch.stack(rs, dim=1)
        hs = int(feats[0].shape[-1]) if feats else int(getattr(surrogate, "hidden_size", 0))
        return {
            "x": torch.stack(xs, dim=1),
            "z": torch.stack(zs, dim=1),
            "rewards": rewards,
            "returns": discounted_returns(rewards, gamma),
            "features": torch.stack(feats, dim=1) if feats else torch.zeros(B, 0, hs),
            "actions": torch.stack(acts, dim=1) if acts else torch.zeros(B, 0, 4),
            "sigma": sig,
        }


def reinforce_update(
    policy: PolicyValue,
    optimizer: torch.optim.Optimizer,
    episode: dict[str, torch.Tensor],
    *,
    value_coef: float = 0.5,
    max_grad_norm: float = 40.0,
    normalise_advantage: bool = True,
) -> dict[str, float]:
    """One REINFORCE step with a value baseline on one batch of episodes.

    Loss = ``-mean(log pi(a|s) * A) + value_coef * mean((V(s) - G)^2)`` with
    ``A = G - V(s)`` (detached; standardised over the batch when
    ``normalise_advantage``), gradients clipped at norm ``max_grad_norm`` (paper: 40).
    Returns ``loss``, ``policy_loss``, ``value_loss``, ``mean_return`` (discounted episode
    returns from stage 0) and ``total_return`` (undiscounted) as floats.
    """
    feats, actions, sig = episode["features"], episode["actions"], episode["sigma"]
    G = episode["returns"][:, 1:]
    mu, value = policy(feats)
    logp = (-0.5 * ((actions - mu) / sig) ** 2).sum(-1)  # constants dropped (fixed sigma)
    adv = G - value.detach()
    if normalise_advantage and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    policy_loss = -(logp * adv).mean()
    value_loss = F.mse_loss(value, G)
    loss = policy_loss + value_coef * value_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm, foreach=True)
    optimizer.step()
    return {
        "loss": loss.item(),
        "policy_loss": policy_loss.item(),
        "value_loss": value_loss.item(),
        "mean_return": float(episode["returns"][:, 0].mean()),
        "total_return": float(episode["rewards"].sum(-1).mean()),
    }


def train_agent(
    surrogate: Surrogate,
    *,
    updates: int,
    batch: int = default("cvd_learning", "agent_batch"),
    n_stages: int = 20,
    seed: int = 0,
    sigma: Sequence[float] | None = None,
    ranges: ScheduleRanges = PAPER_RANGES,
    lr: float = default("cvd_learning", "agent_lr"),
    gamma: float = default("cvd_learning", "agent_gamma"),
    policy: PolicyValue | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[PolicyValue, dict[str, list[float]]]:
    """Train a :class:`PolicyValue` by REINFORCE with a value baseline on a frozen surrogate.

    Each update draws ``batch`` start conditions uniformly in ``ranges``, rolls out
    ``n_stages`` stages (:func:`rollout`) and takes one Adam step (lr 1e-3, gradient norm
    clipped at 40), as in Rajak et al. (2021), doi:10.1038/s41524-021-00535-3. The
    surrogate's parameters are frozen while training.

    Returns
    -------
    policy : PolicyValue
    history : dict of lists, one entry per update
        ``mean_return`` (discounted), ``total_return`` (undiscounted), ``loss``,
        ``policy_loss``, ``value_loss``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    if policy is None:
        with torch.random.fork_rng():
            torch.manual_seed(int(seed))
            policy = PolicyValue(input_size=int(surrogate.hidden_size))
    opt = torch.optim.Adam(policy.parameters(), lr=lr, foreach=True)
    lo, hi, _ = _box(ranges)
    history: dict[str, list[float]] = {"mean_return": [], "total_return": [], "loss": [], "policy_loss": [],
                                       "value_loss": []}
    policy.train()
    with Frozen(surrogate):
        for i in range(int(updates)):
            x0 = lo + torch.rand(batch, 4, generator=gen) * (hi - lo)
            episode = rollout(surrogate, policy, x0, n_stages, sigma, ranges, gen, gamma=gamma)
            stats = reinforce_update(policy, opt, episode)
            for k, v in stats.items():
                history[k].append(v)
            if progress is not None:
                progress(i, stats)
    policy.eval()
    return policy, history


def schedule_returns(
    surrogate: Surrogate,
    schedules,
    *,
    ranges: ScheduleRanges = PAPER_RANGES,
    gamma: float = default("cvd_learning", "agent_gamma"),
) -> torch.Tensor:
    """Discounted return (from stage 0) of fixed schedules (N, n_stages, 4), shape (N,)."""
    x = torch.as_tensor(np.asarray(schedules), dtype=torch.float32)
    lo, hi, inv_span = _box(ranges)
    with torch.no_grad(), Frozen(surrogate):
        mean, _ = fixed_rollout(surrogate, (torch.clamp(x, lo, hi) - lo) * inv_span)
    return discounted_returns(mean[..., 0], gamma)[:, 0]


def expected_return(
    surrogate: Surrogate,
    agent,
    *,
    n_episodes: int = 256,
    n_stages: int = 20,
    gamma: float = default("cvd_learning", "agent_gamma"),
    ranges: ScheduleRanges = PAPER_RANGES,
    sigma: Sequence[float] | None = None,
    greedy: bool = False,
    seed: int = 0,
) -> float:
    """Mean discounted return of a policy, or of given schedules, under the surrogate.

    ``agent`` is a :class:`PolicyValue` (run from ``n_episodes`` uniform starts drawn
    with ``seed``, the same starts as ``ranges.random_schedules(n_episodes, n_stages,
    seed)``, so the two compare on equal footing) or an array (N, n_stages, 4) of
    schedules.
    """
    if isinstance(agent, nn.Module):
        x0 = ranges.uniform_start(n_episodes, np.random.default_rng(seed))
        gen = torch.Generator().manual_seed(int(seed))
        with Frozen(surrogate):
            ep = rollout(surrogate, agent, x0, n_stages, sigma, ranges, gen, gamma=gamma, greedy=greedy)
        return float(ep["returns"][:, 0].mean())
    return float(schedule_returns(surrogate, agent, ranges=ranges, gamma=gamma).mean())


__all__ = [
    "PolicyValue",
    "Surrogate",
    "discounted_returns",
    "expected_return",
    "reinforce_update",
    "rollout",
    "schedule_returns",
    "train_agent",
]
