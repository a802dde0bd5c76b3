"""The CVD paper's own trained NADE-CVD, loaded safely, with the paper model's conventions.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, trained
their NADE-CVD on about 10,000 reactive-MD runs of a 288-Mo MoO3 slab (20 stages of
1 ns each) and published the weights (repository rajak7/RL_CVD, GPL-3.0). mapcvd ships
that checkpoint unchanged (``data/surrogates/rl_cvd_MD_MoS2.pt``; provenance in
``data/README.md``). Its conventions differ from mapcvd's own :class:`~mapcvd.cvd.nade.NadeCVD`:

* the input at stage ``t`` is the 7-vector ``(Z_t, X_t)`` in *raw physical units*
  (T in K, molecule counts for the 288-Mo slab): no normalisation;
* the encoder is 7 -> 24 -> 48 -> 72 with a ReLU after every layer, the LSTM has 128
  hidden units, the decoder 128 -> 72 -> 24 (ReLU) and two heads:
  mean = ``exp(output(h))``, variance = ``softplus(sigma(h)) + 1e-8``;
* every run starts all defect, ``Z_0 = (0, 0, 1)``; the ranges it was trained on are
  :data:`~mapcvd.cvd.ranges.PAPER_RANGES`.

:class:`PaperNade` implements the agent's :class:`~mapcvd.cvd.agent.Surrogate` protocol
(normalised conditions in, turned back into physical units inside :meth:`PaperNade.step`)
and :meth:`PaperNade.step_physical` for callers that hold physical conditions.

Loading never unpickles code: :func:`load_paper_checkpoint` reads with
``torch.load(..., weights_only=True)`` and checks every key and tensor shape against
:data:`FORMAT` before building the model; the shipped file is also checked against its
sha256 (:data:`PAPER_SHA256`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from mapcvd.errors import InputError

from .nade import Z0
from .ranges import PAPER_RANGES, ScheduleRanges

__all__ = ["FORMAT", "PAPER_FILE", "PAPER_SHA256", "PaperNade", "file_sha256", "load_paper_checkpoint", "paper_checkpoint_path"]

#: Name of the shipped checkpoint under ``data/surrogates/``.
PAPER_FILE = "rl_cvd_MD_MoS2.pt"
#: sha256 of the shipped checkpoint (rajak7/RL_CVD, checkpoints/MD_MoS2/model-latest.pt).
PAPER_SHA256 = "2fa19fa413fabb02caa692dc3e3f67d9e5dba5ab8765513fc88ab49a52554d11"

#: Tensor shapes of each state dict of the checkpoint format.
FORMAT: dict[str, dict[str, tuple[int, ...]]] = {
    "encoder": {
        "linear_1.weight": (24, 7), "linear_1.bias": (24,),
        "linear_2.weight": (48, 24), "linear_2.bias": (48,),
        "output.weight": (72, 48), "output.bias": (72,),
    },
    "lstm": {
        "weight_ih_l0": (512, 72), "weight_hh_l0": (512, 128),
        "bias_ih_l0": (512,), "bias_hh_l0": (512,),
    },
    "decoder": {
        "linear_1.weight": (72, 128), "linear_1.bias": (72,),
        "linear_2.weight": (24, 72), "linear_2.bias": (24,),
        "output.weight": (3, 24), "output.bias": (3,),
        "sigma.weight": (3, 24), "sigma.bias": (3,),
    },
}
_VAR_FLOOR = 1e-8


def paper_checkpoint_path() -> Path:
    """Path of the shipped checkpoint of the paper's trained NADE-CVD."""
    from mapcvd.data import data_path  # noqa: PLC0415

    return data_path("surrogates", PAPER_FILE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_format(checkpoint, where: str) -> dict[str, dict[str, torch.Tensor]]:
    """The three state dicts of ``checkpoint``; InputError naming the first key or shape that is off."""
    if not isinstance(checkpoint, dict):
        raise InputError(f"{where}: not a NADE-CVD checkpoint (a {type(checkpoint).__name__}, not a dict)")
    missing = [part for part in FORMAT if part not in checkpoint]
    if missing:
        raise InputError(f"{where}: not a NADE-CVD checkpoint: missing key(s) {', '.join(missing)} "
                         f"(needs {', '.join(FORMAT)})")
    parts = {}
    for part, shapes in FORMAT.items():
        state = checkpoint[part]
        if not isinstance(state, dict):
            raise InputError(f"{where}: '{part}' must be a state dict, got {type(state).__name__}")
        extra = sorted(set(state) - set(shapes))
        lacking = sorted(set(shapes) - set(state))
        if lacking or extra:
            what = (f"missing {', '.join(lacking)}" if lacking else "") + ("; " if lacking and extra else "") + \
                   (f"unexpected {', '.join(extra)}" if extra else "")
            raise InputError(f"{where}: '{part}' state dict does not match the NADE-CVD format: {what}")
        for name, shape in shapes.items():
            tensor = state[name]
            if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
                got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise InputError(f"{where}: '{part}.{name}' has shape {got}, the NADE-CVD format needs {shape}")
        parts[part] = {k: v.detach().to(torch.float32) for k, v in state.items()}
    return parts


class PaperNade(nn.Module):
    """NADE-CVD with the conventions of the paper's checkpoint (Rajak et al. 2021).

    Parameters
    ----------
    parts : dict
        ``encoder``, ``lstm`` and ``decoder`` state dicts of the format :data:`FORMAT`.
    ranges : ScheduleRanges
        The box the agent and optimiser work in (default the paper's ranges, the ones
        the model was trained on); :meth:`step` maps its normalised inputs back to
        physical units with it.

    Notes
    -----
    Doi of the method: 10.1038/s41524-021-00535-3. The predicted mean fractions are
    ``exp`` of a linear head, so they are positive but not constrained to sum to 1.

    The weights are frozen buffers, stored transposed for ``addmm``; the LSTM's two
    gate matrices are stacked into one ``(72 + 128, 512)`` matrix and its gates
    reordered to (input, forget, output, cell) so that one sigmoid covers three gates.
    This is the same arithmetic as ``torch.nn.LSTM`` (checked against the plain model
    in the tests) at about two thirds of the cost per stage, which matters because the
    agent's training is a loop of 20 stages per update. Gradients flow to the inputs
    (:mod:`mapcvd.cvd.optimise` uses this), never to the weights.
    """

    hidden_size = 128

    def __init__(self, parts: dict[str, dict[str, torch.Tensor]], ranges: ScheduleRanges = PAPER_RANGES) -> None:
        super().__init__()
        self.ranges = ranges
        enc, dec, lstm = parts["encoder"], parts["decoder"], parts["lstm"]
        for k, name in enumerate(("linear_1", "linear_2", "output")):
            self.register_buffer(f"enc_w{k}", enc[f"{name}.weight"].t().contiguous())
            self.register_buffer(f"enc_b{k}", enc[f"{name}.bias"].clone())
        for k, name in enumerate(("linear_1", "linear_2")):
            self.register_buffer(f"dec_w{k}", dec[f"{name}.weight"].t().contiguous())
            self.register_buffer(f"dec_b{k}", dec[f"{name}.bias"].clone())
        # heads: columns 0-2 the mean's log, 3-5 the variance's softplus argument
        self.register_buffer("head_w", torch.cat([dec["output.weight"], dec["sigma.weight"]]).t().contiguous())
        self.register_buffer("head_b", torch.cat([dec["output.bias"], dec["sigma.bias"]]))
        n = self.hidden_size
        order = torch.cat([torch.arange(0, 2 * n), torch.arange(3 * n, 4 * n), torch.arange(2 * n, 3 * n)])
        gates = torch.cat([lstm["weight_ih_l0"], lstm["weight_hh_l0"]], dim=1)[order]
        self.register_buffer("lstm_w", gates.t().contiguous())
        self.register_buffer("lstm_b", (lstm["bias_ih_l0"] + lstm["bias_hh_l0"])[order])
        lo = torch.tensor(ranges.low, dtype=torch.float32)
        self.register_buffer("_low", lo, persistent=False)
        self.register_buffer("_span", torch.tensor(ranges.high, dtype=torch.float32) - lo, persistent=False)
        self.register_buffer("z0", torch.tensor(Z0, dtype=torch.float32), persistent=False)
        self.eval()

    def _layers(self, prefix: str, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(weight, bias)`` buffers ``<prefix>_w0, <prefix>_b0, ...`` of ``n`` ReLU layers."""
        return [(getattr(self, f"{prefix}_w{k}"), getattr(self, f"{prefix}_b{k}")) for k in range(n)]

    def hidden(self, z_t: torch.Tensor, x_t: torch.Tensor, state=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM state ``(h, c)`` after a stage with fractions ``z_t`` and physical ``x_t``."""
        y = torch.cat([z_t, x_t], dim=-1)
        for w, b in self._layers("enc", 3):
            y = torch.relu(torch.addmm(b, y, w))
        n = self.hidden_size
        if state is None:
            h = c = y.new_zeros(y.shape[0], n)
        else:
            h, c = state
        g = torch.addmm(self.lstm_b, torch.cat([y, h], dim=-1), self.lstm_w)
        s = torch.sigmoid(g[:, : 3 * n])
        c = s[:, n:2 * n] * c + s[:, :n] * torch.tanh(g[:, 3 * n:])
        return s[:, 2 * n:] * torch.tanh(c), c

    def decode(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (``exp`` head) and variance (softplus head + 1e-8) of the fractions from ``h``."""
        f = h
        for w, b in self._layers("dec", 2):
            f = torch.relu(torch.addmm(b, f, w))
        out = torch.addmm(self.head_b, f, self.head_w)
        return torch.exp(out[:, :3]), F.softplus(out[:, 3:]) + _VAR_FLOOR

    def step_physical(self, z_t: torch.Tensor, x_t: torch.Tensor, state=None):
        """One stage: ``Z_t`` (B, 3) and physical ``X_t`` (B, 4) -> (mean, var, (h, c)) of ``Z_{t+1}``."""
        h, c = self.hidden(z_t, x_t, state)
        mean, var = self.decode(h)
        return mean, var, (h, c)

    def step(self, z_t: torch.Tensor, u_t: torch.Tensor, state=None):
        """The :class:`~mapcvd.cvd.agent.Surrogate` step: ``u_t`` normalised in :attr:`ranges`."""
        return self.step_physical(z_t, self._low + u_t * self._span, state)

    @staticmethod
    def features(state) -> torch.Tensor:
        """The agent's state: the LSTM hidden vector ``h`` (batch, 128)."""
        return state[0]

    def initial_z(self, batch: int) -> torch.Tensor:
        """``Z_0`` repeated ``batch`` times, shape (batch, 3)."""
        return self.z0.expand(int(batch), 3).clone()


def load_paper_checkpoint(path: str | Path | None = None, *, sha256: str | None = None) -> PaperNade:
    """Load a checkpoint of the paper's NADE-CVD format as a frozen :class:`PaperNade`.

    Parameters
    ----------
    path : path or None
        Checkpoint file; None loads the shipped one (and checks :data:`PAPER_SHA256`).
    sha256 : str or None
        Expected sha256 of the file; checked before the file is read.

    Raises
    ------
    InputError
        A missing or unreadable file, a wrong checksum, or keys or shapes that do not
        match :data:`FORMAT`: one line naming what is wrong.
    """
    if path is None:
        path, sha256 = paper_checkpoint_path(), PAPER_SHA256
    path = Path(path)
    if not path.is_file():
        raise InputError(f"surrogate checkpoint {path} does not exist")
    if sha256 is not None and (got := file_sha256(path)) != sha256:
        raise InputError(f"surrogate checkpoint {path} has sha256 {got[:16]}..., expected {sha256[:16]}... "
                         "(the file was changed or is not the shipped one)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"surrogate checkpoint {path} cannot be read as weights only: {first}") from None
    return PaperNade(_check_format(checkpoint, str(path)))
