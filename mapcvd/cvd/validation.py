"""Dataset schedules, surrogate predictions, and agent-versus-random comparisons.

Tools of the CVD learning campaign of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, used by the ``mapcvd cvd dataset|nade|agent|validate``
commands and the benchmarks:

* :func:`dataset_schedules`: the paper's random schedules (uniform start, Gaussian
  steps clipped to the ranges), generated in fixed blocks seeded by ``(seed, block)``
  so that row ``i`` is the same schedule whatever the dataset's size (a dataset can
  grow and a re-run regenerates the same schedules);
* :func:`free_run`: the NADE-CVD's autoregressive prediction of whole schedules (the
  predicted mean fed back at each stage, as the agent sees it), and :func:`phase_mae`;
* :func:`compare_agent_random` and :func:`best_schedules`: the agent's expected return
  against random schedules from the same start distribution, and its best schedules;
* :func:`split_initial_s2`: the final 2H fraction for low and high initial S2 (the
  paper's Fig. 3c).

Everything is vectorised over runs; the only Python loops are over stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .agent import PolicyValue, discounted_returns, expected_return, rollout
from .nade import PHASES, Z0
from .ranges import ScheduleRanges

__all__ = [
    "SCHEDULE_BLOCK",
    "best_schedules",
    "compare_agent_random",
    "dataset_schedules",
    "free_run",
    "md_returns",
    "md_seed",
    "phase_mae",
    "policy_arrays",
    "policy_from_arrays",
    "ranges_from_dict",
    "ranges_to_dict",
    "split_initial_s2",
]

#: Schedules per generator block of :func:`dataset_schedules`.
SCHEDULE_BLOCK = 256


def ranges_to_dict(ranges: ScheduleRanges) -> dict:
    """JSON form of a :class:`ScheduleRanges` (for store attributes)."""
    return {"low": list(ranges.low), "high": list(ranges.high), "step_std": list(ranges.step_std)}


def ranges_from_dict(d: dict) -> ScheduleRanges:
    """Inverse of :func:`ranges_to_dict`."""
    return ScheduleRanges(low=tuple(d["low"]), high=tuple(d["high"]), step_std=tuple(d["step_std"]))


def dataset_schedules(ranges: ScheduleRanges, start: int, stop: int, n_stages: int, seed: int) -> np.ndarray:
    """Rows ``start:stop`` of the dataset's random schedules, shape (stop - start, n_stages, 4).

    Block ``b`` holds rows ``b * SCHEDULE_BLOCK ... (b + 1) * SCHEDULE_BLOCK - 1`` and is
    drawn by :meth:`ScheduleRanges.random_schedules` (uniform start, Gaussian steps of
    ``step_std`` clipped to the ranges; Rajak et al. 2021, doi:10.1038/s41524-021-00535-3)
    from ``numpy.random.default_rng([seed, b])``: a row never depends on how many rows
    are asked for.
    """
    if start < 0 or stop < start:
        raise ValueError(f"need 0 <= start <= stop, got {start}, {stop}")
    out = np.empty((stop - start, int(n_stages), 4))
    for b in range(start // SCHEDULE_BLOCK, -(-stop // SCHEDULE_BLOCK)):
        lo = b * SCHEDULE_BLOCK
        block = ranges.random_schedules(SCHEDULE_BLOCK, n_stages, np.random.default_rng([int(seed), b]))
        a, z = max(start, lo), min(stop, lo + SCHEDULE_BLOCK)
        out[a - start:z - start] = block[a - lo:z - lo]
    return out


def md_seed(seed: int, purpose: int, row: int, attempt: int) -> int:
    """A 31-bit MD seed for attempt ``attempt`` of row ``row`` (``purpose``: 0 dataset, 1 validation)."""
    state = np.random.SeedSequence([int(seed), int(purpose), int(row), int(attempt)]).generate_state(1)
    return int(state[0] % (2**31 - 2)) + 1


def free_run(model, X, ranges: ScheduleRanges) -> tuple[np.ndarray, np.ndarray]:
    """Autoregressive NADE-CVD prediction of schedules ``X`` (N, S, 4) from ``Z_0``.

    At each stage the predicted *mean* fractions are fed back as the next input (what the
    agent sees), so errors compound as they would in a synthesis plan.

    Returns
    -------
    mean, var : arrays (N, S, 3)
        Predicted mean and variance of ``(2H, 1T, defect)`` after each stage.
    """
    x = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=torch.float32)
    if x.ndim == 2:
        x = x[None]
    u = ranges.normalise(ranges.clip(x))
    means, variances = [], []
    model.eval()
    with torch.no_grad():
        z = torch.tensor(Z0, dtype=torch.float32).expand(x.shape[0], 3)
        state = None
        for t in range(x.shape[1]):
            mean, var, state = model.step(z, u[:, t], state)
            means.append(mean)
            variances.append(var)
            z = mean
    return torch.stack(means, 1).numpy().astype(np.float64), torch.stack(variances, 1).numpy().astype(np.float64)


def phase_mae(pred, Z) -> dict[str, float]:
    """Mean absolute error per phase, averaged over runs and stages."""
    err = np.abs(np.asarray(pred) - np.asarray(Z)).reshape(-1, 3).mean(0)
    return {name: float(v) for name, v in zip(PHASES, err)}


def md_returns(Z, gamma: float = 0.99) -> np.ndarray:
    """Discounted return of runs with fractions ``Z`` (N, S, 3): the agent's reward (the 2H
    fraction after each stage) summed with discount ``gamma``, shape (N,)."""
    z2h = torch.as_tensor(np.asarray(Z)[..., 0], dtype=torch.float64)
    return discounted_returns(z2h, gamma)[:, 0].numpy()


def policy_arrays(policy: PolicyValue) -> dict[str, np.ndarray]:
    """The policy's state dict as numpy arrays (for ``write_array_checkpoint``)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in policy.state_dict().items()}


def policy_from_arrays(arrays: dict[str, np.ndarray], *, input_size: int, hidden: Sequence[int],
                       action_scale: Sequence[float]) -> PolicyValue:
    """Rebuild a :class:`PolicyValue` from :func:`policy_arrays` output."""
    policy = PolicyValue(input_size=int(input_size), hidden=tuple(hidden), action_scale=tuple(action_scale))
    policy.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()}, strict=True)
    return policy.eval()


def compare_agent_random(surrogate, policy: PolicyValue, *, ranges: ScheduleRanges, n_stages: int,
                         n_episodes: int, seed: int, gamma: float = 0.99) -> dict[str, float]:
    """Expected return of the agent and of random schedules from the same starts.

    The starts are ``ranges.uniform_start(n_episodes, default_rng(seed))``, which are also
    the first stages of ``ranges.random_schedules(n_episodes, n_stages, seed)``; the
    agent acts with its Gaussian policy (``agent``) and with its mean action
    (``agent_greedy``). ``ratio`` is ``agent / random`` (Rajak et al. 2021,
    doi:10.1038/s41524-021-00535-3, report > 1.5); NaN when random schedules make no
    2H at all (a return of 0).
    """
    kw = {"n_episodes": n_episodes, "n_stages": n_stages, "gamma": gamma, "ranges": ranges, "seed": seed}
    agent = expected_return(surrogate, policy, **kw)
    greedy = expected_return(surrogate, policy, greedy=True, **kw)
    random = expected_return(surrogate, ranges.random_schedules(n_episodes, n_stages, seed),
                             n_stages=n_stages, gamma=gamma, ranges=ranges)
    nan = float("nan")
    return {"agent": agent, "agent_greedy": greedy, "random": random,
            "ratio": agent / random if random > 0 else nan,
            "ratio_greedy": greedy / random if random > 0 else nan}


def best_schedules(surrogate, policy: PolicyValue, *, ranges: ScheduleRanges, n_stages: int,
                   n_episodes: int, k: int, seed: int, gamma: float = 0.99) -> dict[str, np.ndarray]:
    """The agent's greedy schedules from ``n_episodes`` uniform starts and the ``k`` best.

    Returns
    -------
    dict of arrays
        ``schedules`` (k, S, 4), ``returns`` (k,) and ``z`` (k, S, 3) (predicted mean
        fractions) of the best distinct schedules, best first; ``all_x0`` (n, 4),
        ``all_returns`` (n,) and ``all_final_2h`` (n,) of every proposal.
    """
    x0 = ranges.uniform_start(n_episodes, np.random.default_rng(seed))
    with torch.no_grad():
        ep = rollout(surrogate, policy, x0, n_stages, None, ranges, gamma=gamma, greedy=True)
    x = ep["x"].numpy().astype(np.float64)
    z = ep["z"][:, 1:].numpy().astype(np.float64)
    ret = ep["returns"][:, 0].numpy().astype(np.float64)
    order = np.argsort(-ret, kind="stable")
    _, first = np.unique(np.round(x[order], 6).reshape(len(order), -1), axis=0, return_index=True)
    keep = order[np.sort(first)][: int(k)]
    return {"schedules": x[keep], "returns": ret[keep], "z": z[keep],
            "all_x0": x[:, 0], "all_returns": ret, "all_final_2h": z[:, -1, 0]}


def split_initial_s2(X, values, ranges: ScheduleRanges) -> dict:
    """Split ``values`` (N,) of runs ``X`` (N, S, 4) by their initial S2 count.

    Low: first-stage ``n_S2`` below the middle of its range; high: at or above it (the
    paper's Fig. 3c compares the 2H fraction of the two groups). Returns ``low``,
    ``high`` (arrays) and ``threshold``.
    """
    X, values = np.asarray(X), np.asarray(values)
    threshold = 0.5 * (ranges.low[1] + ranges.high[1])
    low = X[:, 0, 1] < threshold
    return {"low": values[low], "high": values[~low], "threshold": float(threshold)}
