"""Gas molecules of the CVD sulfidation runs, and their insertion next to a slab.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, run
reactive MD of an alpha-MoO3 slab (:mod:`mapcvd.md.moo3`) in a gas of S2, H2S and H2
molecules whose numbers the RL agent sets at each stage. This module holds that gas:

* :func:`gas_molecule` gives an S2, H2S or H2 molecule at its ReaxFF minimum under
  ``ffield.MoSOH`` (Hong et al., Nano Lett. 17, 4866 (2017));
* :func:`insert_gas` adds molecules at random positions and orientations in the
  vacuum gap (:func:`vacuum_gap`), keeping a minimum distance to every other atom
  under periodic boundary conditions; :func:`count_gas` counts them back.

Every atom carries a molecule id in ``atoms.arrays["mapcvd_molecule"]``
(:data:`MOLECULE_ARRAY`): 0 for the slab, k > 0 for the k-th inserted gas molecule.
Ids are labels set at insertion; they do not follow the chemistry once MD breaks or
forms bonds.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from mapcvd.errors import InputError

#: Gas species of the CVD runs (Rajak et al. 2021), in the order of the paper's X_t.
GAS_MOLECULES = ("S2", "H2S", "H2")

#: Per-atom array holding the molecule id (0 = slab, k > 0 = k-th inserted molecule).
MOLECULE_ARRAY = "mapcvd_molecule"

# ReaxFF minima of the isolated molecules under ffield.MoSOH (LAMMPS CG minimisation,
# fmax 1e-5 eV/A, 30 A periodic box, QEq on). They agree with the reference checks for
# S2 (1.965 A) and H2S (1.22 A, 93 deg); H2 relaxes to 0.838 A with this force field,
# longer than the experimental 0.741 A.
#: S-S bond of S2 (A).
S2_BOND = 1.9647
#: S-H bond of H2S (A).
H2S_BOND = 1.2210
#: H-S-H angle of H2S (degrees).
H2S_ANGLE = 93.33
#: H-H bond of H2 (A).
H2_BOND = 0.8383


# ---------------------------------------------------------------------------- gas
def gas_molecule(name: str) -> Atoms:
    """An isolated gas molecule at its ReaxFF (ffield.MoSOH) minimum, centre of mass at 0.

    S2: 1.965 A; H2S: S-H 1.221 A, H-S-H 93.3 deg (the checks in
    ``/work/shared/data/README.md``); H2: 0.838 A (this force field's minimum; the
    experimental bond is 0.741 A). Atom order: S before H. No cell, not periodic.

    Raises
    ------
    InputError
        For a name not in :data:`GAS_MOLECULES`.
    """
    if name == "S2":
        mol = Atoms("S2", [[0.0, 0.0, 0.0], [S2_BOND, 0.0, 0.0]])
    elif name == "H2S":
        half = math.radians(H2S_ANGLE) / 2.0
        h = H2S_BOND * np.array([[math.sin(half), math.cos(half), 0.0], [-math.sin(half), math.cos(half), 0.0]])
        mol = Atoms("SH2", [[0.0, 0.0, 0.0], *h])
    elif name == "H2":
        mol = Atoms("H2", [[0.0, 0.0, 0.0], [H2_BOND, 0.0, 0.0]])
    else:
        raise InputError(f"unknown gas molecule {name!r}; known: {', '.join(GAS_MOLECULES)}")
    mol.positions -= mol.get_center_of_mass()
    mol.info["name"] = name
    return mol


def _random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` uniformly distributed rotation matrices (from normalised random quaternions)."""
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def _vacuum_gap(z: np.ndarray, lz: float, periodic: bool) -> tuple[float, float]:
    """The widest empty z interval among ``z`` (through the boundary when periodic)."""
    if len(z) == 0:
        return 0.0, lz
    zs = np.sort(z % lz if periodic else z)
    if periodic:
        gaps = np.diff(np.append(zs, zs[0] + lz))
        i = int(np.argmax(gaps))
        return float(zs[i]), float(zs[i] + gaps[i])
    edges = np.concatenate([[0.0], zs, [lz]])
    i = int(np.argmax(np.diff(edges)))
    return float(edges[i]), float(edges[i + 1])


def vacuum_gap(atoms: Atoms, mask=None) -> tuple[float, float]:
    """The widest empty z interval ``(z_lo, z_hi)`` (A) among the atoms selected by ``mask``.

    With z periodic the interval may run through the cell boundary (``z_hi`` above
    the cell length), as :func:`insert_gas` accepts for its ``region``. Pass the
    atoms of the slab and of everything bonded to it to get the gap where gas can be
    inserted during a reactive run (free gas molecules left out of ``mask``).

    Parameters
    ----------
    atoms
        Structure with an orthogonal cell.
    mask
        Boolean mask or index array of the atoms that bound the gap (default: all).
    """
    z = atoms.positions[:, 2] if mask is None else atoms.positions[np.asarray(mask), 2]
    return _vacuum_gap(np.asarray(z, dtype=float), float(atoms.cell[2, 2]), bool(atoms.pbc[2]))


def insert_gas(
    atoms: Atoms,
    counts: dict[str, int],
    *,
    rng: np.random.Generator,
    min_distance: float = 2.5,
    region: tuple[float, float] | None = None,
    max_attempts: int = 2000,
) -> Atoms:
    """Add gas molecules at random positions and orientations in the vacuum along z.

    Molecules (geometries of :func:`gas_molecule`) are inserted one at a time in a
    random interleaved order of species, each at a uniform random centre and a
    uniform random orientation; a trial is accepted when all its atoms lie in the
    region and no atom is closer than ``min_distance`` to any atom already present
    (slab or gas), minimum image in every periodic direction. Trials are checked in
    vectorised batches (a periodic k-d tree of the atoms present plus a numpy
    minimum-image check of the latest insertions). This sets up the gas of the CVD
    runs of Rajak et al. 2021 (doi:10.1038/s41524-021-00535-3).

    Parameters
    ----------
    atoms
        Slab (and possibly gas already inserted), orthogonal cell, periodic in x and y.
        Atoms with molecule id 0 (all atoms when ``arrays["mapcvd_molecule"]`` is
        absent) are the slab.
    counts
        Molecules to add per species, e.g. ``{"S2": 20, "H2S": 20, "H2": 20}``.
    rng
        Random generator (the only source of randomness: same seed, same structure).
    min_distance
        Smallest allowed distance (A) between an inserted atom and any atom of another
        molecule or of the slab.
    region
        ``(z_lo, z_hi)`` in A where gas atoms may lie; with z periodic, ``z_hi`` may
        exceed the cell length (the region crosses the boundary; positions are
        wrapped). Default: the widest gap between slab atoms along z, i.e. from the
        slab's top surface to its bottom surface through the periodic boundary.
    max_attempts
        Trials per molecule before giving up.

    Returns
    -------
    ase.Atoms
        A new structure: the input atoms, then the inserted molecules (atoms of a
        molecule contiguous, positions wrapped into the cell). ``arrays["mapcvd_molecule"]``
        numbers inserted molecules after the largest existing id; ``info["gas_counts"]``
        holds the cumulative count per species.

    Raises
    ------
    InputError
        Unknown species, negative count, a bad cell or region, or no room for a
        molecule within ``max_attempts`` (the message names it and how many fitted).
    """
    if not isinstance(rng, np.random.Generator):
        raise InputError("rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(seed))")
    for name, n in counts.items():
        if name not in GAS_MOLECULES:
            raise InputError(f"unknown gas molecule {name!r}; known: {', '.join(GAS_MOLECULES)}")
        if int(n) != n or n < 0:
            raise InputError(f"count of {name} must be a non-negative integer, got {n!r}")
    if min_distance <= 0 or max_attempts < 1:
        raise InputError("min_distance and max_attempts must be positive")
    cell = np.asarray(atoms.cell[:])
    lengths = np.diag(cell).copy()
    if np.abs(cell - np.diag(lengths)).max() > 1e-8 or np.any(lengths <= 0):
        raise InputError("insert_gas needs an orthogonal cell with positive lengths")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not (pbc[0] and pbc[1]):
        raise InputError("insert_gas needs a structure periodic in x and y")
    period = np.where(pbc, lengths, 0.0)  # 0 = not periodic (cKDTree convention)

    ids = np.asarray(atoms.arrays.get(MOLECULE_ARRAY, np.zeros(len(atoms), dtype=int)), dtype=int)
    pos = atoms.get_positions()
    pos[:, pbc] %= lengths[pbc]
    pos[:, pbc] = np.where(pos[:, pbc] >= lengths[pbc], 0.0, pos[:, pbc])
    if region is None:
        z_lo, z_hi = _vacuum_gap(pos[ids == 0, 2], lengths[2], bool(pbc[2]))
    else:
        z_lo, z_hi = (float(v) for v in region)
        if not z_lo < z_hi or (pbc[2] and z_hi - z_lo > lengths[2]):
            raise InputError(f"region {region} must have z_lo < z_hi and span at most the cell length along z")

    geoms = {name: gas_molecule(name) for name in GAS_MOLECULES}
    todo = np.array([name for name, n in counts.items() for _ in range(int(n))], dtype=object)
    todo = todo[rng.permutation(len(todo))] if len(todo) else todo
    tree, recent = cKDTree(pos, boxsize=period) if len(pos) else None, np.empty((0, 3))
    placed_pos: list[np.ndarray] = []
    placed_sym: list[str] = []
    placed_ids: list[np.ndarray] = []
    fitted: Counter = Counter()
    next_id = int(ids.max()) + 1 if len(ids) else 1

    for name in todo:
        mol = geoms[name]
        radius = float(np.linalg.norm(mol.positions, axis=1).max())
        if z_hi - z_lo < 2 * radius:
            raise InputError(f"region {z_lo:.2f}..{z_hi:.2f} A is too thin for one {name} molecule")
        accepted, tried, batch = None, 0, 8
        while accepted is None and tried < max_attempts:
            b = min(batch, max_attempts - tried)
            centres = rng.uniform(0.0, 1.0, size=(b, 3)) * np.array([lengths[0], lengths[1], 0.0])
            centres[:, 2] = rng.uniform(z_lo + radius, z_hi - radius, size=b)
            trial = np.einsum("bij,aj->bai", _random_rotations(b, rng), mol.positions) + centres[:, None, :]
            flat = trial.reshape(-1, 3)
            flat[:, pbc] %= lengths[pbc]
            flat[:, pbc] = np.where(flat[:, pbc] >= lengths[pbc], 0.0, flat[:, pbc])
            clash = np.zeros(len(flat), dtype=bool)
            if tree is not None:
                clash |= np.isfinite(tree.query(flat, distance_upper_bound=min_distance)[0])
            if len(recent):
                diff = flat[:, None, :] - recent[None, :, :]
                diff[..., pbc] -= lengths[pbc] * np.round(diff[..., pbc] / lengths[pbc])
                clash |= np.einsum("ijk,ijk->ij", diff, diff).min(axis=1) < min_distance**2
            ok = np.flatnonzero(~clash.reshape(b, len(mol)).any(axis=1))
            tried += b if not len(ok) else int(ok[0]) + 1
            if len(ok):
                accepted = trial[ok[0]]
            batch = min(2 * batch, 256)
        if accepted is None:
            made = ", ".join(f"{g} {fitted[g]}/{int(counts.get(g, 0))}" for g in GAS_MOLECULES if g in counts)
            raise InputError(
                f"no room for another {name} molecule after {max_attempts} attempts "
                f"(fitted {made}; min_distance {min_distance} A): enlarge the vacuum or ask for fewer molecules"
            )
        placed_pos.append(accepted)
        placed_sym.extend(mol.get_chemical_symbols())
        placed_ids.append(np.full(len(mol), next_id + len(placed_ids), dtype=int))
        fitted[name] += 1
        recent = np.vstack([recent, accepted])
        if len(recent) > 512:
            everything = np.vstack([pos, *placed_pos])
            tree, recent = cKDTree(everything, boxsize=period), np.empty((0, 3))

    out = atoms.copy()
    if placed_pos:
        out.extend(Atoms(placed_sym, np.vstack(placed_pos)))
    out.arrays[MOLECULE_ARRAY] = np.concatenate([ids, *placed_ids]).astype(int)
    totals = {g: int(dict(atoms.info.get("gas_counts", {})).get(g, 0)) + fitted[g] for g in GAS_MOLECULES}
    out.info["gas_counts"] = totals
    return out


def count_gas(atoms: Atoms) -> dict[str, int]:
    """Molecules per species from the recorded molecule ids (id 0, the slab, excluded).

    Each id group is named by its composition (S2, H2S, H2, or its formula otherwise).
    Ids are insertion labels: after reactive MD this still counts what was inserted.
    """
    ids = np.asarray(atoms.arrays.get(MOLECULE_ARRAY, np.zeros(len(atoms), dtype=int)), dtype=int)
    symbols = np.array(atoms.get_chemical_symbols())
    result = {g: 0 for g in GAS_MOLECULES}
    gas = ids > 0
    if not gas.any():
        return result
    uniq, inverse = np.unique(ids[gas], return_inverse=True)
    elements = sorted(set(symbols[gas]))
    comp = np.stack([np.bincount(inverse, weights=symbols[gas] == el, minlength=len(uniq)) for el in elements], axis=1)
    known = {tuple(sorted(Counter(gas_molecule(g).get_chemical_symbols()).items())): g for g in GAS_MOLECULES}
    rows, n = np.unique(comp.astype(int), axis=0, return_counts=True)
    for row, k in zip(rows, n):
        key = tuple((el, int(c)) for el, c in zip(elements, row) if c)
        label = known.get(key, "".join(f"{el}{c if c > 1 else ''}" for el, c in key))
        result[label] = result.get(label, 0) + int(k)
    return result
