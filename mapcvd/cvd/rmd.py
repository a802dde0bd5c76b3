"""Staged reactive MD of a MoO3 slab in S2/H2S/H2 gas (INTERFACE STUB, being implemented).

Contract shared by the dataset workflow and the ``mapcvd cvd rmd`` command; the
implementation fills in the bodies and keeps these names and fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

#: Order of the gas counts in ``RmdResult.gas_counts`` (as in the schedule's columns 1..3).
GAS_ORDER: tuple[str, str, str] = ("S2", "H2", "H2S")
#: Molecular species reported per stage.
SPECIES: tuple[str, ...] = ("S2", "H2S", "H2", "H2O", "SO", "SO2")


@dataclass(frozen=True)
class RmdSettings:
    """Settings of one staged run, built from the ``[cvd]`` config table by :meth:`from_config`."""

    n_mo: int = 16
    # ... further fields (vacuum, stage length, timestep, damping, ...) by the implementation

    @classmethod
    def from_config(cls, table: dict) -> "RmdSettings":
        raise NotImplementedError


@dataclass
class RmdResult:
    """What one staged run produced (S stages).

    schedule (S, 4): the (T, n_S2, n_H2, n_H2S) run; fractions (S, 3): (2H, 1T, defect)
    at the end of each stage; gas_counts (S, 3): molecules at each stage start, GAS_ORDER;
    temperature_K (S,): mean over the second half of each stage; energy_eV (S,): PE at
    each stage end; species (S, len(SPECIES)) int; n_atoms (S,) at each stage end;
    frames: positions/numbers/cell per stage end (for validation plots);
    md_seconds (inside LAMMPS) and wall_seconds.
    """

    schedule: np.ndarray
    fractions: np.ndarray
    gas_counts: np.ndarray
    temperature_K: np.ndarray
    energy_eV: np.ndarray
    species: np.ndarray
    n_atoms: np.ndarray
    md_seconds: float
    wall_seconds: float
    frames: list = field(default_factory=list)


def run_schedule(
    schedule: np.ndarray,
    settings: RmdSettings,
    *,
    seed: int = 0,
    progress: Callable[[int, dict], None] | None = None,
) -> RmdResult:
    """Run every stage of ``schedule``; raise :class:`~mapcvd.errors.MDError` on a LAMMPS failure."""
    raise NotImplementedError
