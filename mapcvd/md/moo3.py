"""Starting structures of the CVD sulfidation runs: an alpha-MoO3 slab in S2/H2S/H2 gas.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, run
reactive MD of an alpha-MoO3 "monolayer" (one double layer; 288 Mo + 864 O = 1,152
atoms) in a gas of S2, H2S and H2 molecules whose numbers (20-250 S2 and H2, 20-200
H2S) the RL agent sets at each stage (``/work/shared/reference/facts.md`` section 2).
This module builds that system:

* :func:`moo3_slab` cuts one double layer out of the packaged alpha-MoO3 crystal
  (``data/structures/alpha-MoO3-2x2x1.xyz``, from USCCACS/RXMD) and repeats it in
  plane to a chosen number of Mo;
* the gas molecules and their insertion into the vacuum gap are in
  :mod:`mapcvd.md.gas`.

Every atom carries a molecule id in ``atoms.arrays["mapcvd_molecule"]``: 0 for the
slab, k > 0 for the k-th inserted gas molecule. Ids are labels set at insertion; they
do not follow the chemistry once MD breaks or forms bonds.
"""

from __future__ import annotations

import functools

import numpy as np
from ase import Atoms
from scipy.spatial import cKDTree

from mapcvd.errors import InputError, MapcvdError
from mapcvd.md.gas import MOLECULE_ARRAY

#: In-plane repeat of one alpha-MoO3 double layer holds this many Mo (see :func:`moo3_slab`).
MO_PER_CELL = 4
#: Largest in-plane aspect ratio :func:`moo3_slab` accepts.
MAX_ASPECT = 3.0

_STRUCTURE = ("structures", "alpha-MoO3-2x2x1.xyz")
_MO_PER_DOUBLE_LAYER_FILE = 8


# --------------------------------------------------------------------------- slab
def _read_crystal() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symbols, Cartesian positions (wrapped) and cell lengths of the packaged crystal."""
    from mapcvd.data import data_path  # noqa: PLC0415 - keep import light

    lines = data_path(*_STRUCTURE).read_text().splitlines()
    n = int(lines[0].split()[0])
    header = [float(v) for v in lines[1].split()[:6]]
    lengths, angles = np.array(header[:3]), np.array(header[3:])
    if np.abs(angles - 90.0).max() > 1e-6:
        raise MapcvdError(f"{_STRUCTURE[1]}: expected an orthorhombic cell, got angles {angles}")
    rows = [line.split() for line in lines[2 : 2 + n]]
    symbols = np.array([r[0] for r in rows])
    frac = np.array([[float(v) for v in r[1:4]] for r in rows]) % 1.0
    return symbols, frac * lengths, lengths


def _double_layers(z_mo: np.ndarray, lz: float) -> list[np.ndarray]:
    """Group Mo into double layers by clustering their z (periodic along z).

    Mo sit on planes (spread < 0.5 A); a double layer is two adjacent planes about
    2.9 A apart, and double layers are separated by the van der Waals gap (about
    4.0 A between Mo planes). Pairs of adjacent planes are formed with the phase
    that minimises the summed intra-pair spacing. Returns Mo index arrays.
    """
    order = np.argsort(z_mo)
    zs = z_mo[order]
    gaps = np.diff(np.append(zs, zs[0] + lz))
    cuts = np.flatnonzero(gaps > 1.0)  # plane i ends at sorted index cuts[i]
    if len(cuts) < 2 or len(cuts) % 2:
        raise MapcvdError(f"{_STRUCTURE[1]}: found {len(cuts)} Mo planes, expected an even number")
    starts = np.roll(cuts, 1) + 1
    planes = [order[np.arange(s, c + 1 if c >= s else c + 1 + len(zs)) % len(zs)] for s, c in zip(starts, cuts)]
    centres = np.array([z_mo[p[0]] + np.mean((z_mo[p] - z_mo[p[0]]) % lz) for p in planes])
    spacing = (np.roll(centres, -1) - centres) % lz  # plane i to plane i+1
    phase = int(np.argmin([spacing[0::2].sum(), spacing[1::2].sum()]))
    k = len(planes)
    return [np.concatenate([planes[(i + phase) % k], planes[(i + phase + 1) % k]]) for i in range(0, k, 2)]


@functools.lru_cache(maxsize=1)
def _one_double_layer() -> tuple[tuple[str, ...], np.ndarray, tuple[float, float]]:
    """The primitive in-plane cell of one double layer: symbols, positions, (a, c) lengths.

    The packaged 2x2x1 cell is exactly periodic under a half shift along x (deviation
    < 0.01 A) but not along y (0.3 A: the structure's y repeat is 7.39 A), so the
    double layer is reduced along x only, averaging the two halves.
    """
    symbols, pos, lengths = _read_crystal()
    is_mo = symbols == "Mo"
    mo_idx = np.flatnonzero(is_mo)
    layers = _double_layers(pos[mo_idx, 2], lengths[2])
    tree = cKDTree(pos[mo_idx], boxsize=lengths)
    _, nearest = tree.query(pos)  # every atom's nearest Mo (a Mo is its own)
    layer_of_mo = np.empty(len(mo_idx), dtype=int)
    for i, members in enumerate(layers):
        layer_of_mo[members] = i
    layer = layer_of_mo[nearest]
    for i in range(len(layers)):
        n_mo, n_o = int(np.sum(is_mo & (layer == i))), int(np.sum(~is_mo & (layer == i)))
        if n_mo != _MO_PER_DOUBLE_LAYER_FILE or n_o != 3 * n_mo:
            raise MapcvdError(f"{_STRUCTURE[1]}: double layer {i} holds {n_mo} Mo + {n_o} O, not MoO3 x8")
    sel = np.flatnonzero(layer == 0)
    sym, p = symbols[sel], pos[sel].copy()
    zc = np.mean(p[sym == "Mo", 2])
    p[:, 2] -= lengths[2] * np.round((p[:, 2] - zc) / lengths[2])  # unwrap around the layer
    # Reduce along x: pair each atom with its image shifted by a/2 and average the pair.
    half = lengths[0] / 2.0
    box = np.array([lengths[0], lengths[1], 0.0])
    shifted = p.copy()
    shifted[:, 0] = (shifted[:, 0] + half) % lengths[0]
    dist, partner = cKDTree(p, boxsize=box).query(shifted)  # x, y already wrapped into the cell
    if dist.max() > 0.05 or np.any(partner[partner] != np.arange(len(p))) or np.any(sym[partner] != sym):
        raise MapcvdError(f"{_STRUCTURE[1]}: double layer is not periodic under a/2 (max deviation {dist.max():.3f} A)")
    keep = np.flatnonzero(p[:, 0] < half)
    if len(keep) != len(p) // 2 or np.any(p[partner[keep], 0] < half):
        keep = np.flatnonzero(np.arange(len(p)) < partner)
    d = p[partner[keep]] - half * np.array([1.0, 0.0, 0.0]) - p[keep]
    d[:, :2] -= np.array([half, lengths[1]]) * np.round(d[:, :2] / np.array([half, lengths[1]]))
    prim = p[keep] + d / 2.0
    prim[:, 0] %= half
    prim[:, 1] %= lengths[1]
    prim.flags.writeable = False
    return tuple(str(s) for s in sym[keep]), prim, (float(half), float(lengths[1]))


def _best_repeat(n_mo: int, a: float, c: float) -> tuple[int, int, float] | None:
    """The (na, nc) with na*nc*MO_PER_CELL == n_mo closest to square, and its aspect ratio."""
    if n_mo <= 0 or n_mo % MO_PER_CELL:
        return None
    cells = n_mo // MO_PER_CELL
    best = None
    for na in range(1, cells + 1):
        if cells % na:
            continue
        nc = cells // na
        lx, ly = na * a, nc * c
        ratio = max(lx, ly) / min(lx, ly)
        if best is None or ratio < best[2]:
            best = (na, nc, ratio)
    return best if best is not None and best[2] <= MAX_ASPECT else None


def valid_mo_counts(lo: int, hi: int) -> list[int]:
    """Mo counts in ``[lo, hi]`` that :func:`moo3_slab` accepts (aspect ratio <= 3:1)."""
    _, _, (a, c) = _one_double_layer()
    return [n for n in range(max(lo, 1), hi + 1) if _best_repeat(n, a, c) is not None]


def moo3_slab(n_mo: int, *, vacuum: float = 15.0) -> Atoms:
    """One alpha-MoO3 double layer (the "monolayer" of Rajak et al. 2021) with n_mo Mo.

    The double layer is cut from the packaged alpha-MoO3 crystal (orthorhombic, b
    stacking axis along z, from USCCACS/RXMD) by clustering the Mo z coordinates,
    reduced to its in-plane repeat (x: a = 3.96 A, y: 2c = 7.39 A, 4 Mo + 12 O) and
    repeated ``na x nc`` times in plane, with ``4 na nc = n_mo`` and the most nearly
    square slab among such choices. The paper's 1,152-atom slab is ``n_mo=288``
    (12 x 6 cells, 47.5 x 44.3 A; doi:10.1038/s41524-021-00535-3).

    Parameters
    ----------
    n_mo
        Number of Mo atoms (the slab has ``4 n_mo`` atoms, MoO3 stoichiometry).
    vacuum
        Width of the vacuum gap along z, from the top surface to the bottom surface
        through the periodic boundary (A, >= 6).

    Returns
    -------
    ase.Atoms
        Orthogonal cell ``(na a, nc 2c, thickness + vacuum)``, periodic in all three
        directions (ReaxFF sees the slab's periodic images across the gap, which is
        wider than its 10 A QEq cutoff at the default vacuum), slab centred in z.
        Atom order: all Mo first (indices ``0 .. n_mo-1``), then all O; within each
        element, in the cell order of :meth:`ase.Atoms.repeat`. ``info`` holds
        ``n_mo``, ``repeat`` (na, nc) and ``vacuum``; ``arrays["mapcvd_molecule"]`` is 0.

    Raises
    ------
    InputError
        If ``n_mo`` is not a positive multiple of 4 with a repeat of aspect ratio
        <= 3:1 (the message suggests the nearest valid counts), or ``vacuum < 6``.
    """
    if not isinstance(n_mo, (int, np.integer)) or isinstance(n_mo, bool):
        raise InputError(f"n_mo must be an integer, got {n_mo!r}")
    if not vacuum >= 6.0:
        raise InputError(f"vacuum must be at least 6 A (got {vacuum}); gas needs room between slab images")
    symbols, prim, (a, c) = _one_double_layer()
    best = _best_repeat(int(n_mo), a, c)
    if best is None:
        below = next((n for n in range(int(n_mo) - 1, 0, -1) if _best_repeat(n, a, c)), None)
        above = next((n for n in range(max(int(n_mo) + 1, 1), int(n_mo) + 10_000) if _best_repeat(n, a, c)), None)
        near = " or ".join(str(n) for n in (below, above) if n is not None)
        raise InputError(
            f"cannot build an alpha-MoO3 slab with n_mo={n_mo} (needs a multiple of {MO_PER_CELL} "
            f"with an in-plane aspect ratio <= {MAX_ASPECT:g}:1); nearest valid counts: {near}"
        )
    na, nc, _ = best
    cell = Atoms(symbols, prim, cell=[a, c, 1.0], pbc=True).repeat((na, nc, 1))
    order = np.argsort(np.array(cell.get_chemical_symbols()) != "Mo", kind="stable")
    slab = cell[order]
    z = slab.positions[:, 2]
    lz = (z.max() - z.min()) + float(vacuum)
    slab.set_cell([na * a, nc * c, lz])
    slab.positions[:, 2] += lz / 2.0 - (z.max() + z.min()) / 2.0
    slab.pbc = True
    slab.arrays[MOLECULE_ARRAY] = np.zeros(len(slab), dtype=int)
    slab.info.update(n_mo=int(n_mo), repeat=(int(na), int(nc)), vacuum=float(vacuum))
    return slab
