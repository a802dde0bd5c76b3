"""Schedules optimised directly by gradient ascent through a frozen CVD surrogate.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, search
for CVD schedules with a REINFORCE agent on their NADE-CVD surrogate. The surrogate is a
differentiable function of the schedule, so the same objective can also be climbed
directly: this module treats the schedule itself as the parameters and runs Adam on it.

Objective: the *return* of a schedule, the sum over its stages of the surrogate's
predicted mean 2H fraction after each stage, the predicted mean fractions fed back
autoregressively as the next stage's input ``Z`` from ``Z_0 = (0, 0, 1)``,
undiscounted (the agent's reward summed with gamma = 1).

Method (:func:`optimise_schedules`):

* ``K`` starting schedules at once, one batched tensor (K, S, 4): the paper's random
  schedules (:meth:`~mapcvd.cvd.ranges.ScheduleRanges.random_schedules`);
* conditions kept inside the surrogate's ranges by a smooth map,
  ``x = low + span * sigmoid(theta)``, with ``theta`` clamped to ``+-THETA_MAX`` so
  that a condition parked at a bound can still come back (a ``theta`` at the clamp
  is written out exactly at the bound);
* loss = minus the mean over the ``K`` returns, so every start gets its own gradient
  (Adam is per element, so the starts do not interact), cosine-decayed learning rate,
  the best iterate of each start kept;
* ``first_stage="random"``: the first stage is drawn uniformly in the ranges, as the
  agent's episodes start, and held fixed; ``"free"``: it is optimised too.

The surrogate's weights are frozen throughout and stepped along the schedules by
:func:`~mapcvd.cvd.surrogate_rollout.fixed_rollout`, the same loop as every other
prediction of fixed schedules.
Results can be kept in the campaign store (:func:`save_optimum`, :func:`read_optimum`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from mapcvd.cvd.learning_settings import LearningSettings
from mapcvd.errors import InputError
from mapcvd.store.layout import optimum_path

from .ranges import ScheduleRanges
from .surrogate_rollout import Frozen, fixed_rollout
from .validation import free_run, schedule_return

__all__ = ["FIRST_STAGE", "THETA_MAX", "fit_optimum", "optimise_schedules", "read_optimum", "save_optimum"]

#: Ways of treating the first stage.
FIRST_STAGE = ("free", "random")
#: Bound of the unconstrained parameters: sigmoid(10) = 1 - 4.5e-5 of the span.
THETA_MAX = 10.0


def _to_u(theta: np.ndarray) -> np.ndarray:
    """``sigmoid(theta)`` in float64, exactly 0 or 1 where ``theta`` sits at the clamp."""
    u = 1.0 / (1.0 + np.exp(-theta))
    u[theta >= THETA_MAX - 1e-4] = 1.0
    u[theta <= -THETA_MAX + 1e-4] = 0.0
    return u


def optimise_schedules(
    surrogate: Any,
    ranges: ScheduleRanges,
    n_stages: int,
    *,
    starts: int = 64,
    steps: int = 1500,
    lr: float = 0.1,
    first_stage: str = "free",
    seed: int = 0,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Gradient ascent (Adam) on ``starts`` schedules through a frozen surrogate.

    Parameters
    ----------
    surrogate : Surrogate
        Frozen model; its weights are not changed (trainable ones are frozen while
        optimising and restored after).
    ranges : ScheduleRanges
        Box of the conditions, also the one the surrogate's normalised inputs refer to.
    n_stages : int
        Stages per schedule.
    starts : int
        Number of starting schedules optimised together (one batched tensor).
    steps : int
        Adam steps.
    lr : float
        Initial learning rate on ``theta`` (``x = low + span * sigmoid(theta)``),
        cosine-decayed to ``lr / 20``.
    first_stage : {"free", "random"}
        ``"random"``: the first stage is ``ranges.uniform_start(starts, seed)`` (the
        agent's episode start) and stays fixed; ``"free"``: it is optimised too.
    seed : int
        Seed of the starting schedules ``ranges.random_schedules(starts, n_stages,
        seed)``; their first stage is the ``"random"`` first stage.
    progress : callable(step, stats), optional
        Called after every step with ``best_return`` and ``mean_return`` of the best
        iterates so far.

    Returns
    -------
    dict
        ``returns`` (K,), ``schedules`` (K, S, 4) physical, ``z`` (K, S, 3) predicted
        mean fractions: the best iterate of each start, re-evaluated in float32 without
        gradients; ``order`` (K,) indices from the best start down; ``initial_returns``
        (K,) of the starting schedules; ``history_best`` and ``history_mean`` (steps,)
        of the current iterates' returns; ``best_return``, ``median_return``,
        ``mean_return``, ``seconds``, ``first_stage``, ``starts``, ``steps``, ``lr``,
        ``seed``, ``n_stages``.

    Notes
    -----
    The method searches the same objective as the REINFORCE agent of Rajak et al.,
    npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3 (undiscounted),
    by following the surrogate's gradient instead of sampling a policy.
    """
    if first_stage not in FIRST_STAGE:
        raise InputError(f"first stage must be one of {', '.join(FIRST_STAGE)}, got {first_stage!r}")
    for name, value in (("starts", starts), ("steps", steps), ("n_stages", n_stages)):
        if int(value) < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")
    if not lr > 0:
        raise InputError(f"learning rate must be positive, got {lr}")
    K, S, steps = int(starts), int(n_stages), int(steps)
    fixed = first_stage == "random"
    if fixed and S < 2:
        raise InputError("first stage 'random' needs at least 2 stages (nothing else to optimise)")
    low, width = np.asarray(ranges.low), np.asarray(ranges.span)
    x0 = ranges.random_schedules(K, S, seed)
    first = ranges.uniform_start(K, np.random.default_rng(seed))  # = x0[:, 0]: the same first draw
    x0[:, 0] = first
    u0 = np.clip((x0 - low) / width, 1e-4, 1.0 - 1e-4)
    theta0 = np.log(u0 / (1.0 - u0))[:, 1:] if fixed else np.log(u0 / (1.0 - u0))
    theta = torch.tensor(theta0, dtype=torch.float32, requires_grad=True)
    u_first = torch.tensor((first - low) / width, dtype=torch.float32)[:, None]
    opt = torch.optim.Adam([theta], lr=float(lr))
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=float(lr) / 20.0)
    best = torch.full((K,), -torch.inf)
    best_theta = theta.detach().clone()
    history = np.empty((2, steps))
    initial = None
    start = time.perf_counter()
    with Frozen(surrogate):
        for i in range(steps):
            u = torch.sigmoid(theta)
            if fixed:
                u = torch.cat([u_first, u], dim=1)
            returns = fixed_rollout(surrogate, u)[0][..., 0].sum(dim=1)
            opt.zero_grad(set_to_none=True)
            (-returns.mean()).backward()
            with torch.no_grad():
                r = returns.detach()
                if initial is None:
                    initial = r.numpy().astype(np.float64)
                better = r > best
                best = torch.where(better, r, best)
                best_theta[better] = theta[better]
                theta.grad.nan_to_num_(0.0, 0.0, 0.0)  # a non-finite prediction moves nothing
            opt.step()
            decay.step()
            with torch.no_grad():
                theta.clamp_(-THETA_MAX, THETA_MAX)
            history[:, i] = float(r.max()), float(r.mean())
            if progress is not None:
                progress(i, {"best_return": float(best.max()), "mean_return": float(best.mean())})
    seconds = time.perf_counter() - start

    # the final iterate was never evaluated: keep it where it beats the best so far
    candidates = [best_theta.numpy().astype(np.float64), theta.detach().numpy().astype(np.float64)]
    schedules, fractions = [], []
    for th in candidates:
        u = _to_u(th)
        if fixed:
            u = np.concatenate([((first - low) / width)[:, None], u], axis=1)
        x = np.clip(low + width * u, low, np.asarray(ranges.high))
        if fixed:
            x[:, 0] = first  # exactly as drawn
        schedules.append(x)
        fractions.append(free_run(surrogate, x, ranges)[0])
    ret = [schedule_return(z) for z in fractions]
    take = ret[1] > ret[0]
    x = np.where(take[:, None, None], schedules[1], schedules[0])
    z = np.where(take[:, None, None], fractions[1], fractions[0])
    returns = np.where(take, ret[1], ret[0])
    return {
        "returns": returns, "schedules": x, "z": z, "order": np.argsort(-returns, kind="stable"),
        "initial_returns": initial, "history_best": history[0], "history_mean": history[1],
        "best_return": float(returns.max()), "median_return": float(np.median(returns)),
        "mean_return": float(returns.mean()), "seconds": seconds, "first_stage": first_stage,
        "starts": K, "steps": steps, "lr": float(lr), "seed": int(seed), "n_stages": S,
    }


# ------------------------------------------------------------------------- store
_ARRAYS = ("returns", "schedules", "z", "order", "initial_returns", "history_best", "history_mean")
_SCALARS = ("best_return", "median_return", "mean_return", "seconds", "first_stage", "starts", "steps", "lr",
            "seed", "n_stages")


def save_optimum(group, choice, result: dict) -> int:
    """Write ``result`` of :func:`optimise_schedules` on ``choice`` as a new version; returns it.

    ``group`` is the campaign root (read-write); ``choice`` a
    :class:`~mapcvd.cvd.surrogates.SurrogateChoice` (its kind and the result's first-stage
    mode name the checkpoint, :func:`optimum_path`).
    """
    from mapcvd.store import write_array_checkpoint  # noqa: PLC0415

    from .stored import jsonable, next_version  # noqa: PLC0415
    from .validation import ranges_to_dict  # noqa: PLC0415

    name = optimum_path(choice.kind, result["first_stage"])
    version = next_version(group, name)
    meta = jsonable({"surrogate": choice.kind, "label": choice.label, "surrogate_meta": choice.meta,
                     "ranges": ranges_to_dict(choice.ranges), "n_mo": choice.n_mo,
                     **{k: result[k] for k in _SCALARS}})
    write_array_checkpoint(group, name, {k: np.asarray(result[k]) for k in _ARRAYS}, version=version, meta=meta)
    return version


def read_optimum(group, kind: str, first_stage: str = "random") -> dict | None:
    """The latest stored optimisation on a surrogate of ``kind`` (``store``, ``paper``, ``file``), or None.

    Returns the arrays of :func:`optimise_schedules` (``returns``, ``schedules``, ``z``,
    ``order``, ...), its scalars (``best_return``, ``median_return``, ...), the
    surrogate's ``label`` and ``surrogate_meta``, ``ranges`` (dict) and ``version``.
    """
    from mapcvd.store import read_array_checkpoint  # noqa: PLC0415

    name = optimum_path(kind, first_stage)
    try:
        ckpt = group[name]
    except KeyError:
        return None
    if ckpt.attrs.get("latest") is None:
        return None
    arrays, version, meta = read_array_checkpoint(group, name)
    return {**meta, **arrays, "version": version}


def fit_optimum(group, config: dict, choice, *, log: Callable[[str], None] = print) -> dict | None:
    """The agent's upper reference: schedules optimised from the agent's kind of start, stored.

    Runs :func:`optimise_schedules` on ``choice`` with the first stage drawn uniformly
    and held (``first_stage="random"``, as every agent episode starts),
    ``cvd_learning.optimise_starts`` starts and ``optimise_steps`` steps, seeded by the
    campaign seed, and saves it (:func:`save_optimum`). None when ``optimise_steps`` is 0.
    """
    learning = LearningSettings.from_config(config)
    if learning.optimise_steps == 0:
        return None
    log(f"optimising {learning.optimise_starts} schedules through the {choice.label} surrogate "
        f"({learning.optimise_steps} Adam steps, first stage random as the agent's)")
    result = optimise_schedules(choice.model, choice.ranges, choice.n_stages, starts=learning.optimise_starts,
                                steps=learning.optimise_steps, first_stage="random", seed=int(config["campaign"]["seed"]))
    save_optimum(group, choice, result)
    log(f"optimised in {result['seconds']:.1f} s: mean return {result['mean_return']:.4f}, "
        f"best {result['best_return']:.4f}")
    return result
