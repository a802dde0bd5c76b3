"""Endpoints and the first band of a nudged elastic band, and minimum-image geometry.

Both NEB drivers (:mod:`mapcvd.pathways.neb`, :mod:`mapcvd.pathways.neb_lammps`) build
on these: endpoints checked to bound one band, the final endpoint moved to the periodic
images nearest the initial one, and a first band laid linearly or along a guiding
trajectory (Henkelman, Uberuaga and Jonsson, J. Chem. Phys. 113, 9901 (2000),
doi:10.1063/1.1329672). Orthogonal cells only: periods are the cell's diagonal.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mapcvd.errors import InputError


def _period_shift(delta: np.ndarray, cell_lengths, pbc) -> np.ndarray:
    """Whole periods to take from ``delta`` to bring it to its minimum image (0 along open axes)."""
    lengths = np.where(np.asarray(pbc, dtype=bool), np.asarray(cell_lengths, dtype=float), 0.0)
    safe = np.where(lengths > 0, lengths, 1.0)
    return np.where(lengths > 0, np.round(delta / safe) * lengths, 0.0)


def check_endpoints(initial: Atoms, final: Atoms) -> None:
    """Refuse endpoints that cannot bound one band: other atoms, another order, another cell.

    Raises
    ------
    InputError
        With one line saying what differs.
    """
    if len(initial) != len(final):
        raise InputError(f"the endpoints have different numbers of atoms ({len(initial)} and {len(final)})")
    if not np.array_equal(initial.numbers, final.numbers):
        first = int(np.flatnonzero(initial.numbers != final.numbers)[0])
        raise InputError(
            f"the endpoints hold different atoms or another order (atom {first}: "
            f"{initial[first].symbol} vs {final[first].symbol})")
    if not np.array_equal(initial.pbc, final.pbc):
        raise InputError(f"the endpoints have different boundary conditions ({initial.pbc} vs {final.pbc})")
    if np.abs(np.asarray(initial.cell[:]) - np.asarray(final.cell[:])).max() > 1e-6:
        raise InputError("the endpoints have different cells")


def align_final(initial: np.ndarray, final: np.ndarray, cell_lengths: np.ndarray, pbc) -> np.ndarray:
    """``final`` shifted by whole periods so that each atom is at its nearest image of ``initial``."""
    return final - _period_shift(final - initial, cell_lengths, pbc)


def initial_band(start: np.ndarray, end: np.ndarray, images: int, guide: np.ndarray | None = None) -> np.ndarray:
    """A first band of ``images + 2`` structures from ``start`` to ``end``.

    Without ``guide`` the images are linearly interpolated. With ``guide`` (frames of a
    trajectory between the endpoints, ``(m, n_atoms, 3)``) the images are spaced evenly
    by arc length along the piecewise-linear path ``start -> guide... -> end`` in
    configuration space, so the band follows the route the trajectory took.
    """
    nodes = [start] if guide is None else [start, *np.asarray(guide, dtype=float), end]
    if guide is None:
        nodes.append(end)
    nodes = np.asarray(nodes, dtype=float)
    lengths = np.linalg.norm(np.diff(nodes, axis=0).reshape(len(nodes) - 1, -1), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    if arc[-1] <= 0:
        return np.repeat(start[None], images + 2, axis=0)
    targets = np.linspace(0.0, arc[-1], images + 2)
    seg = np.clip(np.searchsorted(arc, targets, side="right") - 1, 0, len(nodes) - 2)
    span = np.where(lengths[seg] > 0, lengths[seg], 1.0)
    frac = np.clip((targets - arc[seg]) / span, 0.0, 1.0)[:, None, None]
    band = nodes[seg] + frac * (nodes[seg + 1] - nodes[seg])
    band[0], band[-1] = start, end
    return band


def nearest_atom(positions: np.ndarray, center: int, candidates: np.ndarray, cell_lengths, pbc) -> tuple[int, float]:
    """Index of the candidate atom nearest to atom ``center`` (minimum image), and the distance (A)."""
    candidates = np.asarray(candidates, dtype=int)
    candidates = candidates[candidates != center]
    if candidates.size == 0:
        return -1, float("nan")
    delta = positions[candidates] - positions[center]
    delta -= _period_shift(delta, cell_lengths, pbc)
    distances = np.linalg.norm(delta, axis=1)
    k = int(np.argmin(distances))
    return int(candidates[k]), float(distances[k])
