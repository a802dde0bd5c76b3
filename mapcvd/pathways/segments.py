"""MAP pathways: energy profiles, their segments, and stitched piecewise-NEB profiles.

MAP (Chen et al., seed 000) refines a learned pathway piecewise: its energy profile
(the potential energy of frame 0, then after each action) is cut into segments
minimum -> maximum -> minimum, the maxima found as peaks of the profile
(:func:`scipy.signal.find_peaks`, with a prominence so that thermal noise is not cut);
each segment is refined by a climbing-image NEB between its two minima
(:mod:`mapcvd.pathways.neb`) and the refined barriers give the pathway's time by
transition-state theory (:mod:`mapcvd.pathways.tst`).

Everything here is plain numpy on arrays read from the store (the episodes are chosen
by :mod:`mapcvd.pathways.sources`); the NEB runs in the workflow's apps
(``workflows/pathways.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks

from mapcvd.errors import InputError
from mapcvd.pathways.tst import time_over_distance, tst_time


@dataclass(frozen=True)
class Segment:
    """One minimum -> maximum -> minimum piece of a profile (frame indices)."""

    start: int
    peak: int
    end: int

    def raw_barriers(self, energies: np.ndarray) -> tuple[float, float]:
        """Forward and backward barriers of the raw profile, eV."""
        return float(energies[self.peak] - energies[self.start]), float(energies[self.peak] - energies[self.end])


def segment_profile(energies, prominence: float) -> list[Segment]:
    """Cut a profile into minimum -> maximum -> minimum segments.

    The maxima are the peaks of ``energies`` whose prominence is at least
    ``prominence`` (eV); the minimum between two consecutive maxima ends one segment
    and starts the next, so the segments are contiguous. The first segment starts at
    the lowest frame before the first maximum, the last ends at the lowest frame after
    the last one. A profile without such a peak (monotonic, or noise only) has no
    segment; the first and last frames are never maxima (an episode cut while still
    climbing has no minimum to end on).

    Parameters
    ----------
    energies
        Energy of each frame, eV.
    prominence
        Smallest prominence (eV) of a maximum (:func:`scipy.signal.find_peaks`).
    """
    energies = np.asarray(energies, dtype=float)
    if energies.ndim != 1:
        raise InputError(f"an energy profile must be one-dimensional, got shape {energies.shape}")
    if not prominence > 0:
        raise InputError(f"the segment prominence must be positive (eV), got {prominence}")
    if len(energies) < 3 or not np.all(np.isfinite(energies)):
        return []
    peaks, _ = find_peaks(energies, prominence=prominence)
    if len(peaks) == 0:
        return []
    bounds = np.concatenate([[0], peaks, [len(energies) - 1]])
    minima = [int(lo + np.argmin(energies[lo : hi + 1])) for lo, hi in zip(bounds[:-1], bounds[1:])]
    return [Segment(minima[k], int(peaks[k]), minima[k + 1]) for k in range(len(peaks))]


def profile_of(frame0_energy: float, step_energies) -> np.ndarray:
    """An episode's profile: the energy of frame 0, then the energy after each action (eV)."""
    return np.concatenate([[float(frame0_energy)], np.asarray(step_energies, dtype=float)])


def pathway_time(barriers_eV, length_A: float, temperature_K: float, distance_A: float) -> tuple[float, float]:
    """TST time of a pathway (s), and that time scaled to ``distance_A`` by its length ``length_A``.

    The scaled time is ``nan`` for a pathway that does not advance.
    """
    time_s = tst_time(barriers_eV, temperature_K)
    scaled = time_over_distance(time_s, length_A, distance_A) if length_A > 0 else float("nan")
    return time_s, scaled


# ------------------------------------------------------------------ refined profiles
def stitch(segments: list[dict]) -> dict[str, np.ndarray]:
    """Join refined segments into one profile.

    Parameters
    ----------
    segments
        In path order, each with ``energies`` (I,) and ``coordinate`` (I,) of its band.

    Returns
    -------
    dict
        ``energy``, ``coordinate`` (the shared minimum of two consecutive segments
        appears once, from the earlier segment), ``segment`` (the segment of each
        point) and ``ts`` (index of each segment's highest image in these arrays).
    """
    energy, coordinate, owner, ts = [], [], [], []
    offset = 0
    for k, seg in enumerate(segments):
        e = np.asarray(seg["energies"], dtype=float)
        x = np.asarray(seg["coordinate"], dtype=float)
        skip = 1 if k else 0
        ts.append(offset + int(np.argmax(e)) - skip)
        energy.append(e[skip:])
        coordinate.append(x[skip:])
        owner.append(np.full(len(e) - skip, k, dtype=np.int64))
        offset += len(e) - skip
    if not segments:
        empty = np.zeros(0)
        return {"energy": empty, "coordinate": empty, "segment": np.zeros(0, np.int64), "ts": np.zeros(0, np.int64)}
    ts_index = np.asarray(ts, dtype=np.int64)
    return {"energy": np.concatenate(energy), "coordinate": np.concatenate(coordinate),
            "segment": np.concatenate(owner), "ts": np.maximum(ts_index, 0)}

