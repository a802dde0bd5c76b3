"""Ranges of the CVD schedule variables and random schedules.

A CVD synthesis run is split into stages; each stage ``t`` is set by four numbers
``X_t = (T, n_S2, n_H2, n_H2S)``: the temperature in K and the numbers of S2, H2 and
H2S molecules in the gas. The ranges and the random-schedule recipe follow Rajak et al.,
"Autonomous reinforcement learning agent for chemical vapor deposition synthesis of
quantum materials", npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3:
T 750-3750 K, S2 20-250, H2 20-250, H2S 20-200 molecules for a slab of 288 Mo; random
schedules start uniformly in range and take Gaussian steps of standard deviation
(250 K, 20, 20, 20), clipped to the ranges.

Everything here is vectorised: numpy for the schedule generator, numpy or torch for
:meth:`ScheduleRanges.normalise`, :meth:`ScheduleRanges.denormalise` and
:meth:`ScheduleRanges.clip` (the type of the input is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Names of the four schedule variables, in order.
VARIABLES: tuple[str, ...] = ("T", "n_S2", "n_H2", "n_H2S")

#: Number of Mo atoms in the paper's MoO3 slab (1,152 atoms = 288 Mo + 864 O).
PAPER_N_MO: int = 288


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _as_like(values: tuple[float, ...], x):
    """``values`` as an array or tensor that broadcasts against ``x`` (last axis 4)."""
    if _is_torch(x):
        import torch

        return torch.as_tensor(values, dtype=x.dtype, device=x.device)
    return np.asarray(values, dtype=np.result_type(np.asarray(x).dtype, np.float64))


@dataclass(frozen=True)
class ScheduleRanges:
    """Box ranges and random-walk step sizes of the schedule variables.

    Parameters
    ----------
    low, high : tuple of float
        Lower and upper bounds of ``(T [K], n_S2, n_H2, n_H2S)``.
    step_std : tuple of float
        Standard deviation of one random-schedule step of each variable; also the
        fixed standard deviation of the agent's Gaussian policy.

    Notes
    -----
    Ranges of Rajak et al., npj Comput. Mater. 7, 108 (2021),
    doi:10.1038/s41524-021-00535-3, are :data:`PAPER_RANGES`. Gas counts are floats;
    whoever builds an MD box rounds them.
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    step_std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("low", "high", "step_std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != len(VARIABLES):
                raise ValueError(f"{name} needs {len(VARIABLES)} values, got {len(value)}")
            object.__setattr__(self, name, value)
        if any(h <= lo for lo, h in zip(self.low, self.high)):
            raise ValueError(f"every high must exceed its low: low={self.low}, high={self.high}")
        if any(s < 0 for s in self.step_std):
            raise ValueError(f"step_std must be non-negative: {self.step_std}")

    @property
    def span(self) -> tuple[float, ...]:
        """``high - low`` of each variable."""
        return tuple(h - lo for lo, h in zip(self.low, self.high))

    def scaled(self, n_mo: int, reference_n_mo: int = PAPER_N_MO) -> ScheduleRanges:
        """Ranges for a slab of ``n_mo`` Mo: gas counts (and their steps) scale with it.

        The temperature range is kept; the three molecule counts, their bounds and step
        sizes are multiplied by ``n_mo / reference_n_mo`` (the paper's slab has 288 Mo),
        which keeps the gas-to-Mo ratio of Rajak et al. (2021),
        doi:10.1038/s41524-021-00535-3.
        """
        if n_mo <= 0:
            raise ValueError(f"n_mo must be positive, got {n_mo}")
        f = float(n_mo) / float(reference_n_mo)
        scale = (1.0, f, f, f)
        return ScheduleRanges(
            low=tuple(v * s for v, s in zip(self.low, scale)),
            high=tuple(v * s for v, s in zip(self.high, scale)),
            step_std=tuple(v * s for v, s in zip(self.step_std, scale)),
        )

    def normalise(self, x):
        """Map physical values ``x`` (..., 4) to ``[0, 1]`` per variable (numpy or torch)."""
        return (x - _as_like(self.low, x)) / _as_like(self.span, x)

    def denormalise(self, u):
        """Inverse of :meth:`normalise`: ``low + u * (high - low)`` (numpy or torch)."""
        return _as_like(self.low, u) + u * _as_like(self.span, u)

    def clip(self, x):
        """Clip physical values ``x`` (..., 4) into the box (numpy or torch)."""
        lo, hi = _as_like(self.low, x), _as_like(self.high, x)
        if _is_torch(x):
            import torch

            return torch.clamp(x, lo, hi)
        return np.clip(x, lo, hi)

    def contains(self, x, atol: float = 1e-6) -> bool:
        """True when every value of ``x`` (..., 4) lies in the box (numpy or torch)."""
        x = np.asarray(x.detach().cpu() if _is_torch(x) else x, dtype=np.float64)
        return bool(
            np.all(x >= np.asarray(self.low) - atol) and np.all(x <= np.asarray(self.high) + atol)
        )

    def uniform_start(self, n_runs: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n_runs`` first-stage conditions drawn uniformly in the box, shape (n_runs, 4)."""
        rng = np.random.default_rng(rng)
        return rng.uniform(self.low, self.high, size=(int(n_runs), len(VARIABLES)))

    def random_schedules(
        self,
        n_runs: int,
        n_stages: int = 20,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """Random schedules as in the paper's dataset, shape ``(n_runs, n_stages, 4)``.

        The first stage is uniform in the box; each next stage adds a Gaussian step of
        standard deviation :attr:`step_std` and is clipped to the box (Rajak et al. 2021,
        doi:10.1038/s41524-021-00535-3). Vectorised over runs: the only loop is over
        stages, as each stage is clipped before the next step.

        Parameters
        ----------
        n_runs, n_stages : int
            Number of schedules and of stages per schedule.
        rng : numpy Generator, int seed or None
            Source of randomness (``np.random.default_rng(rng)``).
        """
        if n_runs < 0 or n_stages < 1:
            raise ValueError(f"need n_runs >= 0 and n_stages >= 1, got {n_runs}, {n_stages}")
        rng = np.random.default_rng(rng)
        out = np.empty((int(n_runs), int(n_stages), len(VARIABLES)), dtype=np.float64)
        out[:, 0] = self.uniform_start(n_runs, rng)
        steps = rng.normal(0.0, 1.0, size=(int(n_runs), int(n_stages) - 1, len(VARIABLES)))
        steps *= np.asarray(self.step_std)
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        for t in range(1, int(n_stages)):
            out[:, t] = np.clip(out[:, t - 1] + steps[:, t - 1], lo, hi)
        return out


#: The paper's ranges for the 288-Mo slab (Rajak et al. 2021, doi:10.1038/s41524-021-00535-3).
PAPER_RANGES = ScheduleRanges(
    low=(750.0, 20.0, 20.0, 20.0),
    high=(3750.0, 250.0, 250.0, 200.0),
    step_std=(250.0, 20.0, 20.0, 20.0),
)

__all__ = ["PAPER_N_MO", "PAPER_RANGES", "VARIABLES", "ScheduleRanges"]
