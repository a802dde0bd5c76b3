"""Harmonic transition-state theory: from barriers to waiting times.

MAP (Chen et al., seed 000) turns the barriers of a refined pathway into the time a
molecule needs to travel it. Each barrier ``E_i`` is crossed at the Eyring rate
``k_i = (k_B T / h) exp(-E_i / (k_B T))`` (Eyring, J. Chem. Phys. 3, 107 (1935),
doi:10.1063/1.1749604), with the transmission coefficient and the entropy of
activation taken as 1; the hops are consecutive, so their mean waiting times add up:

    tau = sum_i h / (k_B T) * exp(E_i / (k_B T)).

The paper compares pathways by the time to cross 3 nm of silica at 350 C: a pathway
whose guided molecule travels ``L`` along the goal axis is repeated ``D / L`` times to
cover ``D`` (:func:`time_over_distance`). A single 2.12 eV barrier at 623.15 K gives
about 0.124 days, the paper's two-step hop.
"""

from __future__ import annotations

import re

import numpy as np

from mapcvd.errors import InputError

#: Planck constant, eV s (CODATA 2018, exact).
PLANCK_EV_S = 4.135667696e-15
#: Boltzmann constant, eV/K (CODATA 2018, exact).
BOLTZMANN_EV_K = 8.617333262e-5
#: Seconds per day.
SECONDS_PER_DAY = 86_400.0
#: 0 C in kelvin.
ZERO_CELSIUS_K = 273.15

_TEMPERATURE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(K|C|°C|degC)\s*$", re.IGNORECASE)


def parse_temperature(text: str | float) -> float:
    """A temperature written with its unit, in kelvin: ``"623.15K"``, ``"350C"``, ``"350 C"``.

    Raises
    ------
    InputError
        For a bare number, an unknown unit, or a temperature at or below 0 K.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        raise InputError(f"temperature {text} has no unit: write it as e.g. 623.15K or 350C")
    match = _TEMPERATURE.match(str(text))
    if match is None:
        raise InputError(f"cannot read the temperature {text!r}: write a number with its unit K or C, "
                         "e.g. 623.15K or 350C")
    value, unit = float(match.group(1)), match.group(2).upper()
    kelvin = value if unit == "K" else value + ZERO_CELSIUS_K
    if not kelvin > 0:
        raise InputError(f"temperature {text!r} is {kelvin:g} K: it must be above 0 K")
    return kelvin


def attempt_time(temperature_K: float) -> float:
    """``h / (k_B T)`` in seconds: the Eyring prefactor's inverse (7.70e-14 s at 623.15 K)."""
    if not temperature_K > 0:
        raise InputError(f"temperature must be above 0 K, got {temperature_K}")
    return PLANCK_EV_S / (BOLTZMANN_EV_K * temperature_K)


def tst_time(barriers_eV, temperature_K: float) -> float:
    """Mean time (s) to cross consecutive barriers: ``sum_i h/(k_B T) exp(E_i/(k_B T))``.

    Parameters
    ----------
    barriers_eV
        Forward barrier of each hop, eV (non-negative); none gives 0 s.
    temperature_K
        Temperature, K.

    Returns
    -------
    float
        The time in seconds (``inf`` when a barrier is too high for a double).

    Raises
    ------
    InputError
        For a negative or non-finite barrier, or a temperature at or below 0 K.
    """
    barriers = np.atleast_1d(np.asarray(barriers_eV, dtype=float))
    if barriers.size and (not np.all(np.isfinite(barriers)) or barriers.min() < 0):
        raise InputError(f"barriers must be finite and non-negative (eV), got {barriers.tolist()}")
    prefactor = attempt_time(temperature_K)
    with np.errstate(over="ignore"):
        return float(prefactor * np.exp(barriers / (BOLTZMANN_EV_K * temperature_K)).sum())


def time_over_distance(time_s: float, length_A: float, distance_A: float) -> float:
    """Scale the time of a pathway of length ``length_A`` to the distance ``distance_A`` (both A).

    Raises
    ------
    InputError
        When the pathway does not advance (``length_A <= 0``) or the distance is not positive.
    """
    if not length_A > 0:
        raise InputError(f"a pathway must advance along the goal axis to be scaled, got {length_A:g} A")
    if not distance_A > 0:
        raise InputError(f"the distance must be positive, got {distance_A:g} A")
    return float(time_s) * float(distance_A) / float(length_A)


def describe_time(time_s: float) -> dict:
    """``{"time_s": ..., "time_days": ...}`` of a time in seconds."""
    return {"time_s": float(time_s), "time_days": float(time_s) / SECONDS_PER_DAY}
