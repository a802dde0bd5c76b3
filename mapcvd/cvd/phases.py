"""Per-Mo phase analysis of MoS2: 2H, 1T or defect.

The phase of each Mo follows the criterion of Rajak et al., "Autonomous reinforcement
learning agent for chemical vapor deposition synthesis of quantum materials", npj
Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, and its public code
(rajak7/RL_CVD):

* A Mo with exactly 6 S neighbours within the cut-off, 3 above and 3 below it along the
  layer normal, and no O neighbour within the cut-off, is a candidate.
* Its S neighbours are projected onto the plane normal to the layer normal; the 9
  in-plane angles at the Mo between each top S and each bottom S are sorted. When the
  three smallest sum to less than ``eclipsed_tolerance_deg`` (20 deg) the top and bottom
  S triangles are eclipsed: trigonal prismatic, **2H**. Otherwise they are staggered
  (rotated by 60 deg, the three smallest angles are then about 60 deg each):
  octahedral, **1T**.
* Every other Mo (other S counts, not 3 + 3, any O neighbour) is a **defect**.

The phase fractions (2H, 1T, defect), counted per Mo, are the state Z_t of the
NADE-CVD surrogate and of the RL agent.

Default cut-off
---------------
:data:`MO_S_CUTOFF` = 2.9 A. In ideal MoS2 (a = 3.18 A, S-S thickness 3.19 A, as built
by :func:`ase.build.mx2`) the Mo-S bond is 2.43 A (2.41 A in the experimental
crystal) and the next S shell lies at 4.00 A, in 2H and 1T alike. 2.9 A is about 0.5 A
above the bond (room for thermal stretching and ReaxFF bond lengths at the high CVD
temperatures) and 1.1 A below the second shell, so the first shell is counted alone.
Mo-O bonds (1.67-2.33 A in MoO3) fall inside it, so an O bonded to a Mo is seen. The
Mo-Mo distance (3.18 A) does not matter: only S and O are neighbours.

Cells
-----
Any periodic cell is accepted: the hexagonal cell of :func:`ase.build.mx2` and of most
MoS2 files, a triclinic supercell, an orthogonal box, periodic in all directions or in
the sheet plane only. All neighbour work goes through
:func:`mapcvd.md.analysis.neighbor_pairs`, which returns Cartesian minimum-image vectors
Mo -> S for any cell; the heights along the layer normal and the in-plane projections
are taken from those Cartesian vectors, so the cell shape plays no part (for an mx2
sheet the normal is z, whatever the in-plane cell vectors). The classification is
vectorised over Mo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from mapcvd.errors import InputError
from mapcvd.md.analysis import neighbor_pairs

__all__ = [
    "ECLIPSED_TOLERANCE_DEG",
    "MO_S_CUTOFF",
    "PHASES",
    "PHASE_CODES",
    "PhaseResult",
    "classify_mo",
    "layer_normal",
]

#: Default Mo-(S, O) neighbour cut-off in A (see the module docstring).
MO_S_CUTOFF = 2.9
#: Default bound on the sum of the three smallest top-bottom in-plane angles (deg) for 2H.
ECLIPSED_TOLERANCE_DEG = 20.0
#: Phase names, in the order of the integer labels (and of the state Z = (2H, 1T, defect)).
PHASES: tuple[str, str, str] = ("2H", "1T", "defect")
#: Phase name -> integer label.
PHASE_CODES: dict[str, int] = {name: code for code, name in enumerate(PHASES)}

_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class PhaseResult:
    """Phase of every Mo of a structure.

    Attributes
    ----------
    labels
        Integer label per Mo (``numpy.int8``), in the order of ``mo_indices``:
        0 = 2H, 1 = 1T, 2 = defect (see :data:`PHASES`, :data:`PHASE_CODES`).
    mo_indices
        Indices of the Mo atoms in the structure, ascending.
    counts
        ``{"2H": n, "1T": n, "defect": n}``, numbers of Mo.
    fractions
        The same divided by ``n_mo``.
    n_mo
        Number of Mo atoms.
    """

    labels: np.ndarray
    mo_indices: np.ndarray
    counts: dict
    fractions: dict
    n_mo: int

    @property
    def names(self) -> np.ndarray:
        """Phase name per Mo (array of str), in the order of ``mo_indices``."""
        return np.asarray(PHASES)[self.labels]

    @property
    def vector(self) -> np.ndarray:
        """Fractions as an array ``(f_2H, f_1T, f_defect)``: the state Z of the paper."""
        return np.array([self.fractions[p] for p in PHASES], dtype=float)

    def to_json(self) -> dict:
        """``{"n_mo": ..., "counts": {...}, "fractions": {...}}`` with plain Python numbers."""
        return {
            "n_mo": int(self.n_mo),
            "counts": {p: int(self.counts[p]) for p in PHASES},
            "fractions": {p: float(self.fractions[p]) for p in PHASES},
        }


def layer_normal(normal) -> np.ndarray:
    """Unit layer normal from ``"x"``, ``"y"``, ``"z"`` or a 3-vector.

    Raises
    ------
    InputError
        For an unknown axis name, a vector of the wrong shape, or a zero vector.
    """
    if isinstance(normal, str):
        key = normal.strip().lower().lstrip("+-")
        if key not in _AXES:
            raise InputError(f"layer normal must be 'x', 'y', 'z' or a 3-vector, got {normal!r}")
        out = np.zeros(3)
        out[_AXES[key]] = 1.0
        return out
    try:
        vec = np.asarray(normal, dtype=float).ravel()
    except (TypeError, ValueError):
        raise InputError(f"layer normal must be 'x', 'y', 'z' or a 3-vector, got {normal!r}") from None
    if vec.shape != (3,) or not np.all(np.isfinite(vec)):
        raise InputError(f"layer normal must be a finite 3-vector, got {normal!r}")
    norm = float(np.linalg.norm(vec))
    if norm == 0.0:
        raise InputError("layer normal must not be the zero vector")
    return vec / norm


def _load(atoms) -> Atoms:
    """An :class:`ase.Atoms` from an ``Atoms`` or a path to any file ASE reads (last frame)."""
    if isinstance(atoms, Atoms):
        return atoms
    if isinstance(atoms, (str, os.PathLike)):
        import ase.io
        from ase.io.formats import UnknownFileTypeError

        path = os.fspath(atoms)
        if not os.path.isfile(path):
            raise InputError(f"structure file not found: {path}")
        try:
            return ase.io.read(path)
        except (OSError, ValueError, KeyError, IndexError, StopIteration, UnknownFileTypeError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise InputError(f"cannot read structure {path}: {detail}") from None
    raise InputError(f"expected an ase.Atoms or a structure file path, got {type(atoms).__name__}")


def classify_mo(
    atoms,
    *,
    cutoff: float = MO_S_CUTOFF,
    normal="z",
    eclipsed_tolerance_deg: float = ECLIPSED_TOLERANCE_DEG,
) -> PhaseResult:
    """Classify each Mo of a structure as 2H, 1T or defect.

    Criterion of Rajak et al., npj Comput. Mater. 7, 108 (2021),
    doi:10.1038/s41524-021-00535-3: a Mo with exactly 6 S neighbours within ``cutoff``,
    3 above and 3 below it along ``normal``, and no O neighbour within ``cutoff``, is
    2H when its top and bottom S triangles are eclipsed (trigonal prismatic) and 1T
    when they are staggered (octahedral). Eclipsed means: with the S neighbour vectors
    projected onto the plane normal to ``normal``, the three smallest of the 9
    top-bottom in-plane angles at the Mo sum to less than ``eclipsed_tolerance_deg``.
    Every other Mo is a defect (so a structure without S is all defect).

    Parameters
    ----------
    atoms
        :class:`ase.Atoms`, or the path of any file :func:`ase.io.read` reads (its last
        frame). Any cell (orthogonal, hexagonal, triclinic) and any ``pbc``: periodic
        boundaries are honoured through minimum-image neighbour vectors.
    cutoff
        Mo-S and Mo-O neighbour cut-off in A (default 2.9: the Mo-S bond is about
        2.41-2.43 A, the next S shell 4.0 A). Must be below half the shortest
        periodic lattice vector (the smallest cell length of an orthogonal box).
    normal
        Layer normal, a Cartesian direction: ``"x"``, ``"y"``, ``"z"`` or a 3-vector
        (its sign does not matter). For an :func:`ase.build.mx2` sheet it is ``"z"``.
    eclipsed_tolerance_deg
        Bound on the sum of the three smallest in-plane angles for 2H (default 20 deg;
        ideal 2H gives 0 deg, ideal 1T 180 deg).

    Returns
    -------
    PhaseResult
        Labels per Mo, counts and fractions of 2H, 1T and defect.

    Raises
    ------
    InputError
        If the structure has no Mo, cannot be read, or a parameter is out of range
        (including a cut-off too long for the periodic cell).
    """
    atoms = _load(atoms)
    cutoff = float(cutoff)
    tolerance = float(eclipsed_tolerance_deg)
    if not np.isfinite(cutoff) or cutoff <= 0:
        raise InputError(f"cut-off must be a positive number of A, got {cutoff}")
    if not np.isfinite(tolerance) or tolerance <= 0:
        raise InputError(f"eclipsed_tolerance_deg must be positive, got {eclipsed_tolerance_deg}")
    n_hat = layer_normal(normal)

    symbols = np.asarray(atoms.get_chemical_symbols())
    mo = np.flatnonzero(symbols == "Mo")
    n_mo = int(mo.size)
    if n_mo == 0:
        raise InputError(f"the structure has no Mo atoms ({atoms.get_chemical_formula()}), so no MoS2 phases")

    ligands = np.flatnonzero((symbols == "S") | (symbols == "O"))
    pairs = neighbor_pairs(atoms, cutoff, centers=mo, neighbors=ligands)

    slot = np.searchsorted(mo, pairs.i)  # which Mo (0..n_mo-1) each pair belongs to
    is_s = symbols[pairs.j] == "S"
    is_o = ~is_s
    height = pairs.vector @ n_hat
    above = is_s & (height > 0)
    below = is_s & (height < 0)

    n_s = np.bincount(slot[is_s], minlength=n_mo)
    n_o = np.bincount(slot[is_o], minlength=n_mo)
    n_above = np.bincount(slot[above], minlength=n_mo)
    n_below = np.bincount(slot[below], minlength=n_mo)
    candidate = (n_s == 6) & (n_o == 0) & (n_above == 3) & (n_below == 3)

    labels = np.full(n_mo, PHASE_CODES["defect"], dtype=np.int8)
    if candidate.any():
        keep = is_s & candidate[slot]
        k_slot, k_above, k_vec = slot[keep], above[keep], pairs.vector[keep]
        # 6 S per candidate: order by Mo, then bottom (False) before top (True).
        order = np.lexsort((k_above, k_slot))
        vec = k_vec[order].reshape(-1, 6, 3)
        planar = vec - (vec @ n_hat)[..., None] * n_hat  # projection onto the layer plane
        bottom, top = planar[:, :3, :], planar[:, 3:, :]
        # Angle between each top and each bottom projection, via atan2(|a x b|, a . b).
        dots = np.einsum("mik,mjk->mij", top, bottom)
        cross = np.linalg.norm(np.cross(top[:, :, None, :], bottom[:, None, :, :]), axis=-1)
        angles = np.degrees(np.arctan2(cross, dots)).reshape(-1, 9)
        smallest3 = np.sort(angles, axis=1)[:, :3].sum(axis=1)
        cand_labels = np.where(smallest3 < tolerance, PHASE_CODES["2H"], PHASE_CODES["1T"])
        labels[np.flatnonzero(candidate)] = cand_labels.astype(np.int8)

    tally = np.bincount(labels, minlength=len(PHASES))
    counts = {p: int(tally[c]) for p, c in PHASE_CODES.items()}
    fractions = {p: counts[p] / n_mo for p in PHASES}
    return PhaseResult(labels=labels, mo_indices=mo, counts=counts, fractions=fractions, n_mo=n_mo)
