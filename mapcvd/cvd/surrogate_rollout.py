"""Running a frozen CVD surrogate along fixed schedules (one implementation for all callers).

The NADE-CVD of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, predicts the phase fractions after each stage from the
fractions before it and the stage's conditions. Along a fixed schedule the predicted
mean is fed back as the next stage's input, from ``Z_0 = (0, 0, 1)``: this is what the
agent sees, what ``cvd predict`` prints, what the validation compares with reactive MD
and what the optimiser climbs (gradients flow to the conditions).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .nade import Z0

__all__ = ["Frozen", "fixed_rollout"]


class Frozen:
    """Context: a torch surrogate in eval mode with ``requires_grad`` off, restored after."""

    def __init__(self, surrogate: Any) -> None:
        self.module = surrogate if isinstance(surrogate, nn.Module) else None

    def __enter__(self):
        if self.module is not None:
            self.flags = [p.requires_grad for p in self.module.parameters()]
            self.training = self.module.training
            self.module.eval().requires_grad_(False)
        return self

    def __exit__(self, *exc) -> None:
        if self.module is not None:
            for p, f in zip(self.module.parameters(), self.flags):
                p.requires_grad_(f)
            self.module.train(self.training)


def fixed_rollout(surrogate: Any, u: torch.Tensor, *, variance: bool = False):
    """Predicted mean (and variance) fractions after each stage of schedules ``u``.

    Parameters
    ----------
    surrogate : Surrogate
        Model with ``step(z_t, u_t, state) -> (mean, var, state)``; freeze it first
        (:class:`Frozen`).
    u : tensor (K, S, 4)
        Conditions normalised in the surrogate's ranges; may require grad.
    variance : bool
        Also stack the predicted variances.

    Returns
    -------
    mean : tensor (K, S, 3)
    var : tensor (K, S, 3) or None
    """
    z = torch.tensor(Z0, dtype=u.dtype, device=u.device).expand(u.shape[0], 3)
    state, means, variances = None, [], []
    for u_t in u.unbind(1):
        z, var, state = surrogate.step(z, u_t, state)
        means.append(z)
        if variance:
            variances.append(var)
    return torch.stack(means, dim=1), (torch.stack(variances, dim=1) if variance else None)
