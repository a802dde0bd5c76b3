"""One water molecule in silica: insertion at an open site, and finding it again.

MAP (Chen et al., seed 000) follows a single H2O through melt-quenched silica: the
agent's spring is bound to the water's O and the reward grows with its x
coordinate, so the molecule starts near the entry plane at small x and is pushed
towards +x. :func:`insert_water` puts that molecule into a dry silica at the most
open site near a chosen plane x = X and relaxes the whole system with ReaxFF
(``ffield.SiOH``, Fogarty et al. 2010; an isolated H2O relaxes there to O-H 0.948 A,
H-O-H 102.4 deg, the geometry used for the inserted molecule).

Atom order convention: the water is appended at the END of the structure as O, H,
H, so its O is atom ``len(silica)`` and its H atoms the two after it.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from scipy.spatial.transform import Rotation

from mapcvd.data import data_path
from mapcvd.errors import InputError
from mapcvd.md.analysis import (
    SI_O_CUTOFF,
    minimum_image,
    nearest_distances,
    neighbor_counts,
    neighbor_pairs,
    orthogonal_box,
)
from mapcvd.md.engine import Engine
from mapcvd.md.potentials import reaxff

#: Default entry plane x = X (A): near the x = 0 face, where the MAP agent starts.
DEFAULT_ENTRY_X = 2.0
#: ReaxFF (ffield.SiOH) equilibrium geometry of an isolated water: O-H (A), H-O-H (deg).
WATER_OH = 0.948
WATER_ANGLE = 102.4
#: Sites closer than this (A) to a network defect (3-fold Si, non-bridging O) are
#: skipped when possible: a water next to a non-bridging O gives it a proton in ReaxFF.
DEFECT_CLEARANCE = 5.0
#: Both O-H shorter than this (A): the inserted water is intact (not giving away a proton).
INTACT_OH = 1.1
#: O-H distance (A) below which an H belongs to an O when looking for the water.
WATER_OH_CUTOFF = 1.2


def _check_silica(silica: Atoms) -> np.ndarray:
    """Refuse a structure that is not dry orthogonal-periodic silica; return the box lengths."""
    if len(silica) == 0:
        raise InputError("the silica structure is empty")
    if not np.all(silica.pbc):
        raise InputError("the silica structure must be periodic in x, y and z")
    box = orthogonal_box(silica)
    symbols = set(silica.get_chemical_symbols())
    missing = [el for el in ("Si", "O") if el not in symbols]
    if missing:
        raise InputError(f"the structure lacks {' and '.join(missing)}: not a silica")
    if "H" in symbols:
        raise InputError("the structure already contains H (water or silanol); insert water into dry silica")
    return box


def water_geometry(oh: float = WATER_OH, angle_deg: float = WATER_ANGLE) -> np.ndarray:
    """Positions (O, H, H) of a water with its O at the origin, in the xy plane, shape (3, 3)."""
    half = np.radians(angle_deg) / 2.0
    return np.array([[0.0, 0.0, 0.0], [oh * np.cos(half), oh * np.sin(half), 0.0], [oh * np.cos(half), -oh * np.sin(half), 0.0]])


def network_defects(silica: Atoms, cutoff: float = SI_O_CUTOFF) -> np.ndarray:
    """Indices of network defects: Si without exactly 4 O and O without exactly 2 Si within ``cutoff``."""
    symbols = np.asarray(silica.get_chemical_symbols())
    si, o = np.flatnonzero(symbols == "Si"), np.flatnonzero(symbols == "O")
    bad_si = si[neighbor_counts(silica, "Si", "O", cutoff) != 4]
    bad_o = o[neighbor_counts(silica, "O", "Si", cutoff) != 2]
    return np.sort(np.concatenate([bad_si, bad_o]))


def find_open_site(
    silica: Atoms,
    x: float,
    *,
    slab_width: float = 3.0,
    spacing: float = 0.25,
    avoid=None,
    avoid_distance: float = 0.0,
    exclude_points=None,
    exclude_radius: float = 3.0,
) -> tuple[np.ndarray, float, float]:
    """The most open point of the slab ``|x' - x| <= slab_width / 2`` (periodic).

    A grid of spacing ``spacing`` covers the slab over the whole y-z cross-section;
    the grid point farthest from its nearest atom wins. Grid points closer than
    ``avoid_distance`` to any atom of ``avoid`` (indices) are skipped, unless that
    leaves none; so are points within ``exclude_radius`` of any of
    ``exclude_points`` (sites already tried), unless that leaves none.

    Returns
    -------
    site : numpy.ndarray
        Position of the site in A, wrapped into the cell.
    free_radius : float
        Distance from the site to the nearest atom, A.
    avoid_gap : float
        Distance from the site to the nearest atom of ``avoid`` (``inf`` if none).
    """
    box = orthogonal_box(silica)
    half = slab_width / 2.0
    xs = x + np.arange(-half, half + 1e-9, spacing)
    ys = np.arange(0.0, box[1], spacing)
    zs = np.arange(0.0, box[2], spacing)
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1).reshape(-1, 3)
    dist, _ = nearest_distances(grid, silica)
    gap = np.full(len(grid), np.inf)
    if avoid is not None and len(avoid) > 0:
        gap, _ = nearest_distances(grid, silica, among=np.asarray(avoid))
    allowed = np.ones(len(grid), dtype=bool)
    if exclude_points is not None and len(exclude_points) > 0:
        tried = Atoms(positions=np.atleast_2d(exclude_points), cell=silica.cell, pbc=silica.pbc)
        allowed, _ = nearest_distances(grid, tried)
        allowed = allowed > exclude_radius
        if not allowed.any():
            allowed[:] = True
    score = np.where(allowed & (gap >= avoid_distance), dist, -np.inf)
    if not np.isfinite(score).any():
        score = np.where(allowed, dist, -np.inf)
    best = int(np.argmax(score))
    site = np.mod(grid[best], box)
    return site, float(dist[best]), float(gap[best])


def _orient(silica: Atoms, site: np.ndarray, rng: np.random.Generator, n_orientations: int) -> tuple[np.ndarray, float]:
    """Water positions at ``site`` whose H atoms are farthest from the silica (best of random rotations)."""
    rotations = Rotation.random(n_orientations, rng)  # positional: `random_state` in old SciPy, `rng` in new
    h_local = water_geometry()[1:]
    h = site + np.einsum("rij,hj->rhi", rotations.as_matrix(), h_local)  # (n, 2, 3)
    dist, _ = nearest_distances(h.reshape(-1, 3), silica)
    clearance = dist.reshape(n_orientations, 2).min(axis=1)
    best = int(np.argmax(clearance))
    return np.vstack([site, h[best]]), float(clearance[best])


def water_geometry_of(atoms: Atoms, o_index: int, h_indices) -> tuple[float, float, float]:
    """The two O-H distances (A) and the H-O-H angle (deg) of a water (minimum image)."""
    box = orthogonal_box(atoms)
    pos = atoms.get_positions()
    v = minimum_image(pos[list(h_indices)] - pos[o_index], box)
    d = np.linalg.norm(v, axis=1)
    angle = np.degrees(np.arccos(np.clip(v[0] @ v[1] / (d[0] * d[1]), -1.0, 1.0)))
    return float(d[0]), float(d[1]), float(angle)


def _make_whole(atoms: Atoms, o_index: int, h_indices) -> None:
    """Move the H atoms to the periodic image nearest their O (the molecule is then whole)."""
    box = orthogonal_box(atoms)
    pos = atoms.get_positions()
    h = list(h_indices)
    pos[h] = pos[o_index] + minimum_image(pos[h] - pos[o_index], box)
    atoms.set_positions(pos)


def insert_water(
    silica: Atoms,
    *,
    x: float | None = None,
    seed: int = 0,
    relax: bool = True,
    forcefield=None,
    slab_width: float = 3.0,
    grid_spacing: float = 0.25,
    n_orientations: int = 256,
    defect_clearance: float = DEFECT_CLEARANCE,
    max_attempts: int = 3,
    relax_fmax: float = 0.05,
    relax_max_iterations: int = 1000,
) -> tuple[Atoms, dict]:
    """Insert one H2O at the most open site near the plane x = ``x`` and relax with ReaxFF.

    Parameters
    ----------
    silica
        Dry silica (Si and O only, no H) in an orthogonal cell periodic in x, y, z.
    x
        The plane x = X (A) near which the water goes; default
        :data:`DEFAULT_ENTRY_X` = 2 A (the entry side of the MAP agent's path, which
        moves towards +x). Must lie inside the cell, ``0 <= x < Lx``.
    seed
        Seed of the random orientations tried for the molecule.
    relax
        Minimise the whole system with ReaxFF after the insertion (default).
    forcefield
        ReaxFF parameter file; default the packaged ``ffield.SiOH``.
    slab_width, grid_spacing
        Width (A) of the slab around the plane searched for the site, and spacing
        (A) of the search grid.
    n_orientations
        Random orientations tried; the one whose H atoms are farthest from any
        silica atom is kept.
    defect_clearance
        Skip sites closer than this (A) to a network defect (Si without four O, O
        without two Si, within 2.0 A), unless no site in the slab is that far: in
        ReaxFF a water beside a non-bridging O hands it a proton on relaxation.
    max_attempts
        If the relaxed water is not intact (it gave a proton to the silica), try
        the next most open site at least 3 A from those tried, up to this many
        sites in all; the last attempt is returned either way (see ``intact``).
    relax_fmax, relax_max_iterations
        Stopping criteria (eV/A, CG iterations) of the ReaxFF minimisation.

    Returns
    -------
    atoms : ase.Atoms
        The silica with O, H, H appended at the end: the water's O is atom
        ``len(silica)``. Silica atoms are wrapped into the cell; the water is kept
        whole (its H atoms are the images nearest its O). ``info`` is the
        silica's plus ``water_o_index``.
    info : dict
        ``o_index``, ``h_indices``, ``plane_x``, ``site`` (x, y, z of the chosen
        site, A), ``free_radius`` (site to nearest silica atom before insertion, A),
        ``h_clearance`` (closest silica atom to an H of the chosen orientation, A),
        ``defect_distance`` (site to the nearest network defect, A),
        and after the relaxation (or of the unrelaxed geometry if ``relax`` is
        false): ``o_position``, ``o_min_distance`` (water O to nearest silica atom,
        A), ``oh_distances``, ``hoh_angle``, ``intact`` (both O-H shorter than
        :data:`INTACT_OH` = 1.1 A), ``energy`` (ReaxFF, eV; ``None`` without
        relaxation) and ``attempts`` (sites tried).

    Raises
    ------
    InputError
        For a structure that is not orthogonal-periodic, lacks Si or O, or already
        contains H, or a plane outside the cell.
    MDError
        If the ReaxFF relaxation fails.
    """
    box = _check_silica(silica)
    plane = DEFAULT_ENTRY_X if x is None else float(x)
    if not (0.0 <= plane < box[0]):
        raise InputError(f"--x must lie inside the cell (0 <= x < {box[0]:.3f} A), got {plane}")
    if slab_width < 0 or grid_spacing <= 0 or n_orientations < 1:
        raise InputError("slab_width must be >= 0, grid_spacing > 0 and n_orientations >= 1")
    defects = network_defects(silica)
    if relax and forcefield is None:
        forcefield = data_path("forcefields", "ffield.SiOH")
    rng = np.random.default_rng(seed)
    n_silica = len(silica)
    o_index, h_indices = n_silica, (n_silica + 1, n_silica + 2)
    tried: list[np.ndarray] = []
    for attempt in range(1, max(1, int(max_attempts)) + 1):
        site, free_radius, defect_gap = find_open_site(
            silica, plane, slab_width=slab_width, spacing=grid_spacing, avoid=defects,
            avoid_distance=defect_clearance, exclude_points=tried,
        )
        tried.append(site)
        water, h_clearance = _orient(silica, site, rng, int(n_orientations))
        atoms = Atoms(
            symbols=list(silica.get_chemical_symbols()) + ["O", "H", "H"],
            positions=np.vstack([np.mod(silica.get_positions(), box), water]),
            cell=silica.cell.copy(),
            pbc=True,
        )
        energy = None
        if relax:
            with Engine(atoms, reaxff(forcefield, ["Si", "O", "H"]), seed=12345 + int(seed)) as eng:
                energy = eng.minimize(fmax=relax_fmax, max_iterations=relax_max_iterations,
                                      max_evaluations=10 * relax_max_iterations)
                atoms = eng.to_atoms()
        _make_whole(atoms, o_index, h_indices)
        d1, d2, angle = water_geometry_of(atoms, o_index, h_indices)
        if max(d1, d2) < INTACT_OH:
            break
    atoms.info.update(silica.info)
    atoms.info["water_o_index"] = o_index
    o_dist, _ = nearest_distances(atoms.positions[o_index], atoms, among=np.arange(n_silica))
    info = {
        "o_index": o_index,
        "h_indices": h_indices,
        "plane_x": plane,
        "site": tuple(float(v) for v in site),
        "free_radius": free_radius,
        "h_clearance": h_clearance,
        "defect_distance": defect_gap,
        "o_position": tuple(float(v) for v in atoms.positions[o_index]),
        "o_min_distance": float(o_dist[0]),
        "oh_distances": (d1, d2),
        "hoh_angle": angle,
        "intact": bool(max(d1, d2) < INTACT_OH),
        "energy": None if energy is None else float(energy),
        "attempts": attempt,
    }
    return atoms, info


def find_water(atoms: Atoms) -> tuple[int, tuple[int, int]]:
    """Locate the H2O molecule: an O with exactly two H within 1.2 A.

    If several O qualify, the one with the highest index is returned (the most
    recently appended water, see :func:`insert_water`).

    Returns
    -------
    o_index : int
        Index of the water's O.
    h_indices : tuple of int
        Indices of its two H atoms, ascending.

    Raises
    ------
    InputError
        If the structure holds no water molecule.
    """
    symbols = np.asarray(atoms.get_chemical_symbols())
    if not np.any(symbols == "H") or not np.any(symbols == "O"):
        raise InputError("the structure contains no water molecule (no H or no O atoms)")
    pairs = neighbor_pairs(atoms, WATER_OH_CUTOFF, centers="O", neighbors="H")
    o_ids, counts = np.unique(pairs.i, return_counts=True)
    candidates = o_ids[counts == 2]
    if candidates.size == 0:
        raise InputError("the structure contains no water molecule (no O with two H within 1.2 A)")
    o_index = int(candidates.max())
    h = np.sort(pairs.j[pairs.i == o_index])
    return o_index, (int(h[0]), int(h[1]))
