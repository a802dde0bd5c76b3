"""Amorphous silica, water insertion and the neighbour helpers.

Default tests read the prebuilt ``data/structures/silica-192*.extxyz`` (see
``data/STRUCTURES.md``); the ``heavy`` test melt-quenches 192 atoms from scratch.
"""

import time

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from mapcvd.data import data_path

from mapcvd.errors import InputError
from mapcvd.md.analysis import (
    coordination_stats,
    density,
    min_interatomic_distance,
    nearest_distances,
    neighbor_counts,
    neighbor_pairs,
)
from mapcvd.md.engine import Engine
from mapcvd.md.potentials import reaxff
from mapcvd.md.silica import box_length, build_amorphous_silica, check_request, random_start
from mapcvd.md.water import find_water, insert_water, water_geometry_of

SIOH = data_path("forcefields", "ffield.SiOH")
SILICA_192 = data_path("structures", "silica-192.extxyz")
WATER_192 = data_path("structures", "silica-192-water.extxyz")


@pytest.fixture(scope="module")
def silica():
    return ase.io.read(SILICA_192)


@pytest.fixture(scope="module")
def wet(silica):
    return insert_water(silica, seed=11)


# ---------------------------------------------------------------- brute force
def brute_force_distances(atoms):
    """All minimum-image distances by plain numpy broadcasting (periodic dirs only)."""
    pos = atoms.get_positions()
    box = np.where(atoms.pbc, np.diag(atoms.cell[:]), 0.0)
    d = pos[None, :, :] - pos[:, None, :]
    periodic = box > 0
    d[..., periodic] -= box[periodic] * np.round(d[..., periodic] / box[periodic])
    return np.linalg.norm(d, axis=-1)


def random_box(seed, pbc=True, n=60, cell=(9.0, 10.0, 11.0)):
    rng = np.random.default_rng(seed)
    symbols = rng.choice(["Si", "O"], size=n, p=[1 / 3, 2 / 3])
    pos = rng.uniform(0, 1, size=(n, 3)) * cell
    pos[:5] += np.asarray(cell) * rng.integers(-2, 3, size=(5, 3))  # some outside the cell
    return Atoms(symbols=list(symbols), positions=pos, cell=cell, pbc=pbc)


@pytest.mark.parametrize("pbc", [True, (True, False, True)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neighbor_helpers_match_brute_force(seed, pbc):
    atoms = random_box(seed, pbc=pbc)
    dist = brute_force_distances(atoms)
    symbols = np.asarray(atoms.get_chemical_symbols())
    cutoff = 2.6
    si, o = np.flatnonzero(symbols == "Si"), np.flatnonzero(symbols == "O")
    expected = (dist[np.ix_(si, o)] < cutoff).sum(axis=1)
    np.testing.assert_array_equal(neighbor_counts(atoms, "Si", "O", cutoff), expected)
    expected_oo = ((dist[np.ix_(o, o)] < cutoff).sum(axis=1) - 1)  # minus self
    np.testing.assert_array_equal(neighbor_counts(atoms, "O", "O", cutoff), expected_oo)

    pairs = neighbor_pairs(atoms, cutoff)
    ii, jj = np.nonzero((dist < cutoff) & ~np.eye(len(atoms), dtype=bool))
    np.testing.assert_array_equal(pairs.i, ii)
    np.testing.assert_array_equal(pairs.j, jj)
    np.testing.assert_allclose(pairs.distance, dist[ii, jj], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(pairs.vector, axis=1), pairs.distance, atol=1e-9)

    off_diagonal = dist + np.diag(np.full(len(atoms), np.inf))
    assert min_interatomic_distance(atoms) == pytest.approx(off_diagonal.min(), abs=1e-9)
    near, which = nearest_distances(atoms.positions[:3] + 0.3, atoms)
    probe = atoms.copy()
    probe += Atoms("X3", positions=atoms.positions[:3] + 0.3)
    d_probe = brute_force_distances(probe)[len(atoms):, : len(atoms)]
    np.testing.assert_allclose(near, d_probe.min(axis=1), atol=1e-9)
    np.testing.assert_array_equal(which, d_probe.argmin(axis=1))


def test_cutoff_beyond_half_box_is_refused():
    atoms = random_box(0)
    with pytest.raises(InputError, match="half"):
        neighbor_counts(atoms, "Si", "O", 5.0)


def test_coordination_stats_of_a_perfect_network():
    # beta-cristobalite (idealised, Fd-3m): every Si 4 O, every O 2 Si, Si-O 1.55 A.
    a = 7.16
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    si = np.vstack([fcc, fcc + 0.25]) * a
    bonds = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) * a / 8
    o = (fcc * a)[:, None, :] + bonds[None, :, :]
    atoms = Atoms(["Si"] * 8 + ["O"] * 16, positions=np.vstack([si, o.reshape(-1, 3)]), cell=[a] * 3, pbc=True)
    atoms.wrap()
    stats = coordination_stats(atoms)
    assert stats["si4_fraction"] == 1.0
    assert stats["o_bridging_fraction"] == 1.0
    assert stats["si_coordination"] == {4: 8}
    assert stats["mean_si_o"] == pytest.approx(a * np.sqrt(3) / 8, abs=1e-9)
    expected_density = (8 * 28.0855 + 16 * 15.999) * 1.66053906660e-24 / (a**3 * 1e-24)
    assert density(atoms) == pytest.approx(expected_density, rel=1e-4)


# ---------------------------------------------------------------- silica
def test_prebuilt_silica_192_meets_acceptance(silica):
    assert len(silica) == 192
    stats = coordination_stats(silica)
    assert stats["n_si"] == 64 and stats["n_o"] == 128
    assert stats["si4_fraction"] >= 0.90
    assert abs(stats["density"] - 2.2) / 2.2 < 0.05
    assert stats["min_distance"] > 1.3
    assert np.allclose(silica.cell.lengths(), box_length(192, 2.2), atol=1e-6)


@pytest.mark.parametrize("n_atoms", [192, 576])
def test_prebuilt_pairs_are_consistent(n_atoms):
    dry = ase.io.read(data_path("structures", f"silica-{n_atoms}.extxyz"))
    wet = ase.io.read(data_path("structures", f"silica-{n_atoms}-water.extxyz"))
    assert len(dry) == n_atoms and len(wet) == n_atoms + 3
    assert dry.info["seed"] == 11 and dry.info["target_density"] == 2.2
    stats = coordination_stats(dry)
    assert stats["si4_fraction"] >= 0.90 and abs(stats["density"] - 2.2) / 2.2 < 0.05
    o, h = find_water(wet)
    assert (o, h) == (n_atoms, (n_atoms + 1, n_atoms + 2)) and wet.info["water_o_index"] == n_atoms
    d1, d2, angle = water_geometry_of(wet, o, h)
    assert 0.9 <= d1 <= 1.1 and 0.9 <= d2 <= 1.1 and 95.0 <= angle <= 115.0
    o_to_silica, _ = nearest_distances(wet.positions[o], wet, among=np.arange(n_atoms))
    assert o_to_silica[0] >= 2.0
    np.testing.assert_allclose(wet.cell[:], dry.cell[:])


@pytest.mark.parametrize("n_atoms", [100, 0, -3, 1.5, "192"])
def test_atom_count_must_be_positive_multiple_of_three(n_atoms):
    with pytest.raises(InputError, match="positive multiple of 3") as info:
        build_amorphous_silica(n_atoms)
    assert "\n" not in str(info.value)
    if n_atoms == 100:
        assert str(info.value) == "--atoms must be a positive multiple of 3 (SiO2 units), got 100"


@pytest.mark.parametrize("rho", [1.0, 3.5, -2.2, "dense", None])
def test_density_must_be_sane(rho):
    with pytest.raises(InputError, match="density"):
        check_request(192, rho)


def test_negative_seed_refused():
    with pytest.raises(InputError, match="seed"):
        build_amorphous_silica(192, seed=-1)


def test_random_start_has_stoichiometry_and_separation():
    length = box_length(576, 2.2)
    atoms = random_start(576, length, np.random.default_rng(3))
    assert atoms.get_chemical_symbols().count("Si") == 192
    assert density(atoms) == pytest.approx(2.2, rel=1e-9)
    spacing = length / np.ceil(576 ** (1 / 3))
    assert min_interatomic_distance(atoms) >= 0.6 * spacing - 1e-9


# ---------------------------------------------------------------- water
def test_isolated_water_reaxff_geometry():
    water = molecule("H2O")
    water.center(vacuum=7.0)
    water.pbc = True
    with Engine(water, reaxff(SIOH, ["Si", "O", "H"])) as eng:
        eng.minimize(fmax=0.001, max_iterations=1000)
        relaxed = eng.to_atoms()
    o, h = find_water(relaxed)
    d1, d2, angle = water_geometry_of(relaxed, o, h)
    assert 0.93 <= d1 <= 0.99 and 0.93 <= d2 <= 0.99
    assert 95.0 <= angle <= 110.0


def test_insert_water_into_prebuilt_silica(silica, wet):
    atoms, info = wet
    assert len(atoms) == 195
    assert atoms.get_chemical_symbols()[192:] == ["O", "H", "H"]
    assert info["o_index"] == 192 and info["h_indices"] == (193, 194)
    o, h = find_water(atoms)
    assert (o, h) == (192, (193, 194))
    d1, d2, angle = water_geometry_of(atoms, o, h)
    assert 0.9 <= d1 <= 1.1 and 0.9 <= d2 <= 1.1
    assert 95.0 <= angle <= 115.0
    assert info["intact"]
    o_to_silica, _ = nearest_distances(atoms.positions[o], atoms, among=np.arange(192))
    assert o_to_silica[0] >= 2.0
    assert info["o_min_distance"] == pytest.approx(o_to_silica[0])
    # the site lies in the slab around the default entry plane x = 2 A
    assert abs(info["site"][0] - 2.0) <= 1.5 + 1e-9
    assert info["free_radius"] > 2.0
    # the silica network is not broken by the relaxation
    assert coordination_stats(atoms[:192])["si4_fraction"] >= 0.90


def test_insertion_reproduces_prebuilt_water_file(wet):
    # same call as data/STRUCTURES.md: insert_water(read(silica-192), seed=11)
    atoms = ase.io.read(WATER_192)
    assert atoms.get_chemical_symbols() == wet[0].get_chemical_symbols()
    np.testing.assert_allclose(atoms.positions, wet[0].positions, atol=0.02)  # CG minimisation: fp noise


def test_find_water_refuses_dry_silica(silica):
    with pytest.raises(InputError, match="no water"):
        find_water(silica)


def test_find_water_ignores_silanol(silica):
    atoms = silica.copy()
    o = atoms.get_chemical_symbols().index("O")
    atoms += Atoms("H", positions=[atoms.positions[o] + [0.97, 0, 0]])  # one H on an O: a silanol
    with pytest.raises(InputError, match="no water"):
        find_water(atoms)


def test_insert_water_refuses_bad_structures(silica, wet):
    with pytest.raises(InputError, match="contains H"):
        insert_water(wet[0], relax=False)
    no_si = silica[[i for i, s in enumerate(silica.get_chemical_symbols()) if s == "O"]]
    with pytest.raises(InputError, match="lacks Si"):
        insert_water(no_si, relax=False)
    slab = silica.copy()
    slab.pbc = (True, True, False)
    with pytest.raises(InputError, match="periodic"):
        insert_water(slab, relax=False)
    tilted = silica.copy()
    cell = tilted.cell[:].copy()
    cell[1, 0] = 1.0
    tilted.set_cell(cell)
    with pytest.raises(InputError, match="orthogonal"):
        insert_water(tilted, relax=False)
    with pytest.raises(InputError, match="inside the cell"):
        insert_water(silica, x=-1.0, relax=False)


def test_insert_water_without_relaxation_is_fast_and_documented(silica):
    atoms, info = insert_water(silica, x=7.0, seed=3, relax=False)
    assert len(atoms) == 195 and info["energy"] is None
    assert abs(info["site"][0] - 7.0) <= 1.5 + 1e-9
    d1, d2, angle = water_geometry_of(atoms, 192, (193, 194))
    assert d1 == pytest.approx(0.948) and d2 == pytest.approx(0.948) and angle == pytest.approx(102.4)
    assert info["h_clearance"] > 1.5
    np.testing.assert_allclose(atoms.positions[192], info["site"])


# ---------------------------------------------------------------- heavy
@pytest.mark.heavy
def test_build_amorphous_silica_192_from_scratch():
    stages = []
    start = time.perf_counter()
    atoms, stats = build_amorphous_silica(192, seed=11, progress=lambda stage, f: stages.append((stage, f)))
    wall = time.perf_counter() - start
    print(f"\nbuild_amorphous_silica(192, seed=11): {wall:.1f} s, Si4 {stats['si4_fraction']:.3f}, "
          f"Si coordination {stats['si_coordination']}, O bridging {stats['o_bridging_fraction']:.3f}")
    assert wall < 180.0
    assert len(atoms) == 192
    assert stats["si4_fraction"] >= 0.90
    assert abs(stats["density"] - 2.2) / 2.2 < 0.05
    assert stats["reaxff_energy"] is not None
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert [s for s, _ in stages][-1] == "relax"
