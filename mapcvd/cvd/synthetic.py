"""A synthetic CVD surrogate whose best schedule is known in closed form (for tests).

It has the step interface of :class:`mapcvd.cvd.nade.NadeCVD` (see
:class:`mapcvd.cvd.agent.Surrogate`), so the REINFORCE agent of Rajak et al., npj Comput.
Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, can be checked against a known
optimum without MD data.

Dynamics (per stage, deterministic mean, constant variance): defect Mo turn into 2H at
the rate

    k(u) = k_max * exp(-((u_T - u_T*) / w)^2 / 2) * (1 - s2_penalty * u_S2),

so ``Z' = (f_2H + k f_def, f_1T, f_def (1 - k))``. The rate is largest at ``T = t_opt`` and
the lowest S2 count, independently of H2, H2S and the stage; since every stage's 2H
fraction grows with every earlier rate, the schedule that holds ``T = t_opt`` and S2 at
its minimum at every stage maximises every per-stage reward and hence any discounted
return (:meth:`SyntheticSurrogate.optimal_schedule`).
"""

from __future__ import annotations

import numpy as np
import torch

from .ranges import PAPER_RANGES, ScheduleRanges


class SyntheticSurrogate:
    """Toy surrogate with a known optimal schedule.

    Parameters
    ----------
    t_opt : float
        Temperature (K) of the fastest 2H growth.
    t_width : float
        Width (K) of the Gaussian temperature window of the growth rate.
    k_max : float
        Largest fraction of the defect Mo converted to 2H per stage.
    s2_penalty : float
        Relative slow-down at the highest S2 count (0: S2 does not matter).
    var : float
        Constant predicted variance of every fraction.
    n_stages : int
        Stage count used to scale the stage feature.
    ranges : ScheduleRanges
        Ranges that define the normalised conditions ``u`` it receives.

    Notes
    -----
    The state is a tensor (batch, 8): the fractions after the stage (3), the stage's
    normalised conditions (4) and the stage count divided by ``n_stages``; it is also the
    agent's observation (:meth:`features`).
    """

    hidden_size = 8

    def __init__(
        self,
        t_opt: float = 3000.0,
        t_width: float = 450.0,
        k_max: float = 0.3,
        s2_penalty: float = 0.7,
        var: float = 1e-4,
        n_stages: int = 20,
        ranges: ScheduleRanges = PAPER_RANGES,
    ) -> None:
        self.ranges = ranges
        self.t_opt = float(t_opt)
        self.u_t_opt = (self.t_opt - ranges.low[0]) / ranges.span[0]
        self.u_width = float(t_width) / ranges.span[0]
        self.k_max, self.s2_penalty = float(k_max), float(s2_penalty)
        self.var, self.n_stages = float(var), int(n_stages)

    def rate(self, u_t: torch.Tensor) -> torch.Tensor:
        """Fraction of the defect Mo turned into 2H during a stage, shape (batch,)."""
        g = torch.exp(-0.5 * ((u_t[..., 0] - self.u_t_opt) / self.u_width) ** 2)
        return self.k_max * g * (1.0 - self.s2_penalty * u_t[..., 1])

    def step(self, z_t: torch.Tensor, u_t: torch.Tensor, state: torch.Tensor | None = None):
        """One stage for a batch: returns ``(mean, var, state)`` like ``NadeCVD.step``."""
        k = self.rate(u_t)
        d = z_t[..., 2]
        mean = torch.stack([z_t[..., 0] + k * d, z_t[..., 1], d * (1.0 - k)], dim=-1)
        var = torch.full_like(mean, self.var)
        t = z_t.new_zeros(z_t.shape[0], 1) if state is None else state[:, -1:]
        new_state = torch.cat([mean, u_t, t + 1.0 / self.n_stages], dim=-1)
        return mean, var, new_state

    @staticmethod
    def features(state: torch.Tensor) -> torch.Tensor:
        """The agent's observation: the state itself (batch, 8)."""
        return state

    def optimal_schedule(self, n_stages: int | None = None) -> np.ndarray:
        """The best schedule (n_stages, 4): ``T = t_opt``, S2 at its minimum, H2 and H2S
        at mid-range (they do not matter)."""
        n = self.n_stages if n_stages is None else int(n_stages)
        lo, hi = np.asarray(self.ranges.low), np.asarray(self.ranges.high)
        x = (lo + hi) / 2.0
        x[0], x[1] = self.t_opt, lo[1]
        return np.tile(x, (n, 1))


__all__ = ["SyntheticSurrogate"]
