"""Choosing a CVD surrogate by name: ``store``, ``paper`` or a checkpoint path.

The agent, the schedule predictor, the optimiser and the validation of Rajak et al.,
npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, all work on a frozen
surrogate of the reactive-MD runs (:class:`~mapcvd.cvd.agent.Surrogate`). Three kinds:

``store``
    the NADE-CVD that ``mapcvd cvd nade`` trained on the campaign's own dataset (its
    ranges are the paper's scaled to the campaign's slab);
``paper``
    the NADE-CVD that the paper's authors trained on about 10,000 runs of a 288-Mo
    slab, shipped with mapcvd (:mod:`mapcvd.cvd.paper_nade`);
``PATH.pt``
    a user's own checkpoint in the paper model's format, loaded weights-only.

:func:`resolve_surrogate` turns the name into a :class:`SurrogateChoice` that carries
the model, the ranges its inputs live in, its stage count and slab, and where in a
campaign store the results of an agent trained on it are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mapcvd.errors import InputError

from .ranges import PAPER_N_MO, PAPER_RANGES, ScheduleRanges
from mapcvd.store.layout import agent_stage

from .stored import dataset_table, load_nade

__all__ = ["PAPER_STAGES", "SurrogateChoice", "resolve_surrogate", "surrogate_kind"]

#: Stages per run of the paper's dataset (20 x 1 ns).
PAPER_STAGES = 20


@dataclass(frozen=True)
class SurrogateChoice:
    """A resolved surrogate and what the commands need to know about it.

    Attributes
    ----------
    kind : str
        ``store``, ``paper`` or ``file``.
    label : str
        What the user asked for (``store``, ``paper`` or the path), for messages.
    model : Surrogate
        The frozen model (``step``/``features``), inputs normalised in :attr:`ranges`.
    ranges : ScheduleRanges
        Physical ranges of the schedules it was trained on (units of its slab).
    n_stages : int
        Stages of the runs it was trained on.
    n_mo : int
        Mo atoms of its slab (gas counts are for this slab).
    meta : dict
        Provenance: the NADE version for ``store``, the file and sha256 otherwise.
    """

    kind: str
    label: str
    model: Any = field(repr=False)
    ranges: ScheduleRanges
    n_stages: int
    n_mo: int
    meta: dict

    @property
    def stage(self) -> str:
        """Campaign stage name of training an agent on this surrogate."""
        return agent_stage(self.kind)


def surrogate_kind(spec: str) -> str:
    """``store``, ``paper`` or ``file`` for a ``--surrogate`` value; InputError when it is none."""
    spec = str(spec).strip()
    if spec in ("store", "paper"):
        return spec
    if spec.endswith(".pt"):
        return "file"
    raise InputError(f"unknown surrogate {spec!r}: use 'store' (the campaign's own NADE-CVD), 'paper' "
                     "(the CVD paper's trained NADE-CVD) or the path of a .pt checkpoint of that format")


def resolve_surrogate(spec: str, group=None) -> SurrogateChoice:
    """Load the surrogate named ``spec``.

    Parameters
    ----------
    spec : str
        ``store``, ``paper`` or a path ending in ``.pt``.
    group : zarr.Group or None
        The campaign store; needed for ``store``.

    Raises
    ------
    InputError, StoreError
        An unknown name, a missing or malformed checkpoint, or ``store`` without a
        store or without a trained NADE-CVD in it.
    """
    from .paper_nade import PAPER_SHA256, load_paper_checkpoint  # noqa: PLC0415

    kind = surrogate_kind(spec)
    if kind == "store":
        if group is None:
            raise InputError("surrogate 'store' needs --store, the campaign whose NADE-CVD to use "
                             "(or choose another with --surrogate paper|PATH.pt)")
        model, version, meta, ranges = load_nade(group)
        n_mo = int(dataset_table(group).attrs.get("n_mo", PAPER_N_MO))
        return SurrogateChoice("store", "store", model, ranges, int(meta["n_stages"]), n_mo,
                               {"nade_version": int(version)})
    if kind == "paper":
        return SurrogateChoice("paper", "paper", load_paper_checkpoint(), PAPER_RANGES, PAPER_STAGES, PAPER_N_MO,
                               {"file": "data/surrogates/rl_cvd_MD_MoS2.pt", "sha256": PAPER_SHA256})
    from .paper_nade import file_sha256  # noqa: PLC0415

    path = Path(spec).expanduser()
    model = load_paper_checkpoint(path)
    return SurrogateChoice("file", str(path), model, PAPER_RANGES, PAPER_STAGES, PAPER_N_MO,
                           {"file": str(path.resolve()), "sha256": file_sha256(path)})
