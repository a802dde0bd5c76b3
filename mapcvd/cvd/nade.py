"""NADE-CVD: an autoregressive Gaussian surrogate of reactive-MD CVD runs.

The model of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3: ``p(Z_{t+1} | Z_{1:t}, X_{1:t+1})`` as a Gaussian
with diagonal covariance, where ``Z_t = (f_2H, f_1T, f_defect)`` are the phase
fractions of the Mo atoms after stage ``t`` and ``X_t`` the stage's conditions
``(T, n_S2, n_H2, n_H2S)``. An encoder MLP maps the 7-vector (Z, X normalised to
[0, 1]) to 72 features (7 -> 24 -> 48 -> 72, ReLU), an LSTM with 128 hidden units
carries the history, and a decoder (128 -> 72 -> 24 -> 2 x 3) gives the mean and the
variance (softplus plus a floor) of the next fractions.

Conventions
-----------
* A run of ``T`` stages is stored as ``X`` of shape ``(T, 4)`` (physical units; the
  conditions *during* each stage) and ``Z`` of shape ``(T, 3)`` (the fractions at the
  *end* of each stage). Batches add a leading axis.
* Every run starts all defect: ``Z_0 = (0, 0, 1)`` (:data:`Z0`). The model input at
  stage ``t`` (0-based) is ``(Z_t, u_t)`` with ``Z_t`` the fractions *before* the stage
  (``Z_0`` for the first) and ``u_t`` the stage's normalised conditions; the output is
  the distribution of ``Z[:, t]``, the fractions after it. :meth:`NadeCVD.forward` and
  :meth:`NadeCVD.nll` take the observed ``Z`` and prepend ``Z_0`` themselves.
* The model works on normalised conditions ``u`` in [0, 1]; :func:`train_nade` and
  :func:`evaluate_nade` take physical ``X`` and a :class:`~mapcvd.cvd.ranges.ScheduleRanges`.
* Weights travel as plain arrays (:func:`to_arrays` / :func:`from_arrays`), never pickles.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mapcvd.config import default

from .ranges import PAPER_RANGES, ScheduleRanges

#: Names of the three phase fractions, in order.
PHASES: tuple[str, ...] = ("2H", "1T", "defect")

#: Composition at the start of every run: all Mo counted as defect.
Z0: tuple[float, float, float] = (0.0, 0.0, 1.0)

_LOG_2PI = math.log(2.0 * math.pi)

State = tuple[torch.Tensor, torch.Tensor]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def _linears(seq: nn.Sequential) -> tuple[nn.Linear, ...]:
    return tuple(m for m in seq if isinstance(m, nn.Linear))


def relu_mlp(x: torch.Tensor, linears: Sequence[nn.Linear]) -> torch.Tensor:
    """``relu(linear(...))`` through ``linears``, functionally (no module-call overhead)."""
    for m in linears:
        x = torch.relu(F.linear(x, m.weight, m.bias))
    return x


class NadeCVD(nn.Module):
    """The NADE-CVD surrogate (Rajak et al. 2021, doi:10.1038/s41524-021-00535-3).

    Parameters
    ----------
    encoder : sequence of int
        Widths of the encoder's ReLU layers after the 7 inputs (paper: 24, 48, 72).
    lstm : int
        LSTM hidden size (paper: 128); also the size of the agent's state.
    decoder : sequence of int
        Widths of the decoder's ReLU layers before the output (paper: 72, 24).
    var_floor : float
        Added to the softplus of the variance output, so the variance never vanishes.
    n_phase, n_cond : int
        Sizes of Z (3) and X (4).
    """

    def __init__(
        self,
        encoder: Sequence[int] = (24, 48, 72),
        lstm: int = 128,
        decoder: Sequence[int] = (72, 24),
        var_floor: float = 1e-5,
        n_phase: int = 3,
        n_cond: int = 4,
    ) -> None:
        super().__init__()
        self._config = {
            "encoder": [int(v) for v in encoder],
            "lstm": int(lstm),
            "decoder": [int(v) for v in decoder],
            "var_floor": float(var_floor),
            "n_phase": int(n_phase),
            "n_cond": int(n_cond),
        }
        self.n_phase, self.n_cond = int(n_phase), int(n_cond)
        self.hidden_size = int(lstm)
        self.var_floor = float(var_floor)
        self.encoder = _mlp([n_phase + n_cond, *encoder])
        enc_out = encoder[-1] if len(encoder) else n_phase + n_cond
        self.lstm = nn.LSTM(enc_out, lstm, batch_first=True)
        self.decoder = _mlp([lstm, *decoder])
        dec_out = decoder[-1] if len(decoder) else lstm
        self.head = nn.Linear(dec_out, 2 * n_phase)
        # plain tuples (not registered): the per-stage path calls F.linear directly
        self._enc_layers = _linears(self.encoder)
        self._dec_layers = _linears(self.decoder)
        self.register_buffer("z0", torch.tensor(Z0, dtype=torch.float32), persistent=False)

    @property
    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable (for :func:`from_arrays`)."""
        return copy.deepcopy(self._config)

    def _decode(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.linear(relu_mlp(h, self._dec_layers), self.head.weight, self.head.bias)
        mean, raw_var = out.split(self.n_phase, dim=-1)
        return mean, F.softplus(raw_var) + self.var_floor

    def shift(self, z: torch.Tensor) -> torch.Tensor:
        """Model inputs from observed fractions: ``[Z_0, z[:, :-1]]`` along the stage axis."""
        z0 = self.z0.to(z.dtype).expand(z.shape[0], 1, self.n_phase)
        return torch.cat([z0, z[:, :-1]], dim=1)

    def forward(
        self, z: torch.Tensor, u: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced predictions for whole sequences.

        Parameters
        ----------
        z : tensor (batch, T, 3)
            Observed fractions after each stage (``Z_1 .. Z_T``); ``Z_0`` is prepended
            and the last stage dropped to form the inputs.
        u : tensor (batch, T, 4)
            Normalised conditions of each stage.
        state : (h, c) or None
            Initial LSTM state, each (1, batch, lstm); zeros when None.

        Returns
        -------
        mean, var : tensors (batch, T, 3)
            Gaussian of ``z[:, t]`` given ``z[:, :t]`` and ``u[:, :t+1]``.
        hidden : tensor (batch, T, lstm)
            LSTM output after each stage (the agent's state).
        """
        inputs = torch.cat([self.shift(z), u], dim=-1)
        hidden, _ = self.lstm(self.encoder(inputs), state)
        mean, var = self._decode(hidden)
        return mean, var, hidden

    def step(
        self, z_t: torch.Tensor, u_t: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Advance one stage for a batch: ``(Z_t, u_t) -> p(Z_{t+1})``.

        Parameters
        ----------
        z_t : tensor (batch, 3)
            Fractions before the stage (``Z_0`` at the first stage, see :data:`Z0`).
        u_t : tensor (batch, 4)
            Normalised conditions of the stage.
        state : (h, c) or None
            LSTM state, each (batch, lstm); zeros when None.

        Returns
        -------
        mean, var : tensors (batch, 3)
        state : (h, c)
            New state; ``h`` (= :meth:`features`) is the agent's observation.
        """
        x = relu_mlp(torch.cat([z_t, u_t], dim=-1), self._enc_layers)
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        h, c = torch.lstm_cell(
            x,
            state,
            self.lstm.weight_ih_l0,
            self.lstm.weight_hh_l0,
            self.lstm.bias_ih_l0,
            self.lstm.bias_hh_l0,
        )
        mean, var = self._decode(h)
        return mean, var, (h, c)

    @staticmethod
    def features(state: State) -> torch.Tensor:
        """The agent's state: the LSTM hidden vector ``h`` (batch, lstm)."""
        return state[0]

    def initial_z(self, batch: int) -> torch.Tensor:
        """``Z_0`` repeated ``batch`` times, shape (batch, 3)."""
        return self.z0.expand(int(batch), self.n_phase).clone()

    def nll(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Gaussian negative log-likelihood of ``z`` given ``u``, averaged over all entries.

        ``z`` (batch, T, 3) are the observed fractions after each stage, ``u`` (batch, T, 4)
        the normalised conditions; the mean is over runs, stages and phases of
        ``0.5 * (log(2 pi var) + (z - mean)^2 / var)``.
        """
        mean, var, _ = self(z, u)
        return gaussian_nll(z, mean, var)


def gaussian_nll(z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Mean of ``0.5 * (log(2 pi var) + (z - mean)^2 / var)`` over all entries."""
    return 0.5 * (_LOG_2PI + torch.log(var) + (z - mean) ** 2 / var).mean()


def _tensors(X, Z, ranges: ScheduleRanges) -> tuple[torch.Tensor, torch.Tensor]:
    X = np.asarray(X, dtype=np.float64)
    Z = np.asarray(Z, dtype=np.float64)
    if X.ndim == 2:
        X, Z = X[None], Z[None]
    if X.ndim != 3 or X.shape[-1] != 4 or Z.shape != X.shape[:2] + (3,):
        raise ValueError(f"need X (runs, stages, 4) and Z (runs, stages, 3), got {X.shape}, {Z.shape}")
    u = torch.as_tensor(ranges.normalise(X), dtype=torch.float32)
    return torch.as_tensor(Z, dtype=torch.float32), u


def train_nade(
    X,
    Z,
    *,
    epochs: int = default("cvd_learning", "nade_epochs"),
    batch_size: int = default("cvd_learning", "nade_batch"),
    lr: float = default("cvd_learning", "nade_lr"),
    validation_fraction: float = default("cvd_learning", "nade_val_fraction"),
    patience: int | None = default("cvd_learning", "nade_patience"),
    seed: int = 0,
    ranges: ScheduleRanges = PAPER_RANGES,
    model: NadeCVD | None = None,
    config: dict | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[NadeCVD, dict]:
    """Fit NADE-CVD by maximum likelihood with a validation split and early stopping.

    Parameters
    ----------
    X : array (runs, stages, 4)
        Physical schedule of each run (normalised here with ``ranges``).
    Z : array (runs, stages, 3)
        Phase fractions after each stage.
    epochs, batch_size, lr : training length, minibatch size and Adam learning rate
        (paper's code: 1,000 epochs, 32, 1e-4; Rajak et al. 2021,
        doi:10.1038/s41524-021-00535-3).
    validation_fraction : float
        Share of runs (at least one, chosen by ``seed``) held out for validation.
    patience : int or None
        Stop after this many epochs without a better validation loss; None trains all
        epochs. Either way the weights of the best validation epoch are restored.
    seed : int
        Seeds the split, the initial weights (when ``model`` is None) and the shuffling.
    model, config : an existing model to continue, or constructor arguments of a new one.
    progress : callable(epoch, train_loss, val_loss) or None
        Called after each epoch.

    Returns
    -------
    model : NadeCVD, in eval mode, holding the best validation weights.
    history : dict
        ``train`` and ``val`` (per-epoch mean NLL), ``best_epoch`` (0-based),
        ``best_val``, ``epochs_run``, ``train_runs`` and ``val_runs`` (run indices).
    """
    z_all, u_all = _tensors(X, Z, ranges)
    n = z_all.shape[0]
    n_val = max(1, round(validation_fraction * n)) if validation_fraction > 0 else 0
    if n - n_val < 1:
        raise ValueError(f"{n} runs leave none to train on with validation_fraction={validation_fraction}")
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if model is None:
        with torch.random.fork_rng():
            torch.manual_seed(int(seed))
            model = NadeCVD(**(config or {}))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict = {"train": [], "val": [], "best_epoch": -1, "best_val": math.inf,
                     "train_runs": train_idx.tolist(), "val_runs": val_idx.tolist()}
    best_state = copy.deepcopy(model.state_dict())
    since_best = 0
    z_tr, u_tr = z_all[train_idx], u_all[train_idx]
    for epoch in range(int(epochs)):
        model.train()
        order = torch.randperm(len(train_idx), generator=gen)
        total = 0.0
        for start in range(0, len(order), batch_size):
            b = order[start:start + batch_size]
            loss = model.nll(z_tr[b], u_tr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        train_loss = total / len(order)
        model.eval()
        if n_val:
            with torch.no_grad():
                val_loss = float(model.nll(z_all[val_idx], u_all[val_idx]))
        else:
            val_loss = train_loss
        history["train"].append(train_loss)
        history["val"].append(val_loss)
        if progress is not None:
            progress(epoch, train_loss, val_loss)
        if val_loss < history["best_val"]:
            history["best_val"], history["best_epoch"] = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            since_best = 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
    history["epochs_run"] = len(history["train"])
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def evaluate_nade(model: NadeCVD, X, Z, *, ranges: ScheduleRanges = PAPER_RANGES) -> dict[str, float]:
    """Mean absolute error of the predicted mean, per phase, on (held-out) runs.

    One-stage-ahead, teacher-forced: each stage is predicted from the true history.
    Returns ``{"2H": mae, "1T": mae, "defect": mae}`` averaged over runs and stages.
    """
    z, u = _tensors(X, Z, ranges)
    model.eval()
    with torch.no_grad():
        mean, _, _ = model(z, u)
    mae = (mean - z).abs().mean(dim=(0, 1))
    return {name: float(v) for name, v in zip(PHASES, mae)}


def to_arrays(model: NadeCVD) -> dict[str, np.ndarray]:
    """The model's weights as a dict of float32 numpy arrays (its ``state_dict``)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def from_arrays(arrays: dict[str, np.ndarray], config: dict | None = None) -> NadeCVD:
    """Rebuild a :class:`NadeCVD` from :func:`to_arrays` output and :attr:`NadeCVD.config`."""
    model = NadeCVD(**(config or {}))
    state = {k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


__all__ = [
    "PHASES",
    "Z0",
    "NadeCVD",
    "evaluate_nade",
    "from_arrays",
    "gaussian_nll",
    "to_arrays",
    "train_nade",
]
