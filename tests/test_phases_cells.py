"""MoS2 phase analysis and neighbour search in any periodic cell (hexagonal, triclinic).

Phase criterion of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, checked on ideal sheets of :func:`ase.build.mx2` in their
own hexagonal cells, in triclinic supercells of them and in fully general (rotated,
sheared) cells; and the neighbour search of a tilted cell against an orthogonal-cell
search of the same periodic crystal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import make_supercell, mx2
from scipy.spatial.transform import Rotation

from cli_helpers import cli

from mapcvd.cvd.phases import MO_S_CUTOFF, PHASES, classify_mo
from mapcvd.cvd.species import find_molecules
from mapcvd.errors import InputError
from mapcvd.md.analysis import neighbor_pairs

A, THICKNESS, VACUUM = 3.18, 3.19, 10.0
#: Supercell matrices giving other cell shapes of the same crystal: an oblique cell
#: (neither hexagonal nor rectangular) and a rectangle rotated 30 deg off the x axis.
TRICLINIC = [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
ROTATED_RECTANGLE = [[1, 1, 0], [-1, 1, 0], [0, 0, 1]]


def hexagonal(kind: str, n: int) -> Atoms:
    """Ideal n x n MoS2 sheet in the hexagonal cell of mx2 (periodic in x and y)."""
    return mx2(formula="MoS2", kind=kind, a=A, thickness=THICKNESS, size=(n, n, 1), vacuum=VACUUM)


def supercell(atoms: Atoms, matrix) -> Atoms:
    out = make_supercell(atoms, matrix)
    out.wrap()
    return out


def general(atoms: Atoms, seed: int = 7) -> tuple[Atoms, np.ndarray]:
    """The sheet in a fully general cell: c sheared, periodic in x, y, z, rotated in 3-D.

    Returns the structure and its layer normal (the rotated z axis).
    """
    out = atoms.copy()
    cell = out.cell[:].copy()
    cell[2] += 0.3 * cell[0] - 0.2 * cell[1]  # tilted c: every cell vector off its axis
    out.set_cell(cell)
    out.pbc = True
    rot = Rotation.from_euler("zyx", [23.0, 31.0, -17.0], degrees=True).as_matrix()
    out.positions = out.positions @ rot.T
    out.set_cell(out.cell[:] @ rot.T)
    out.positions += np.random.default_rng(seed).uniform(-20.0, 20.0, 3)  # atoms off the cell
    return out, rot @ np.array([0.0, 0.0, 1.0])


def assert_tilted(atoms: Atoms) -> None:
    """The periodic cell is not an axis-aligned box (so the tilted-cell path is tested)."""
    cell = atoms.cell[:]
    assert np.abs(cell[:2] - np.diag(np.diag(cell))[:2]).max() > 1.0


def two_far_s_vacancies(atoms: Atoms) -> tuple[Atoms, np.ndarray]:
    """Remove two S far apart; return the structure and the Mo bonded to them (old indices).

    The Mo neighbours are found with ASE's minimum-image distances, independently of
    :func:`mapcvd.md.analysis.neighbor_pairs`.
    """
    symbols = np.asarray(atoms.get_chemical_symbols())
    s = np.flatnonzero(symbols == "S")
    first = int(s[0])
    far = atoms.get_distances(first, s, mic=True)
    second = int(s[np.argmax(far)])
    assert far.max() > 10.0
    mo = np.flatnonzero(symbols == "Mo")
    bonded = [mo[atoms.get_distances(k, mo, mic=True) < MO_S_CUTOFF] for k in (first, second)]
    assert [b.size for b in bonded] == [3, 3]
    defect_mo = np.union1d(*bonded)
    out = atoms.copy()
    del out[[first, second]]
    # old Mo index -> new index (both removed atoms are S, so Mo shift by the S before them)
    new_index = defect_mo - np.searchsorted(np.sort([first, second]), defect_mo)
    return out, new_index




# ------------------------------------------------------------ hexagonal cells
@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_hexagonal_sheet_is_pure_phase(kind):
    atoms = hexagonal(kind, 6)
    assert_tilted(atoms)
    result = classify_mo(atoms)
    assert result.n_mo == 36
    assert result.fractions[kind] == 1.0
    assert result.counts == {p: (36 if p == kind else 0) for p in PHASES}


@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_cli_on_hexagonal_extxyz(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}_hex.extxyz"
    hexagonal(kind, 6).write(path, format="extxyz")
    code, out, err = cli(capsys, "cvd", "phases", path, "--json")
    assert code == 0, err
    counts = {p: (36 if p == kind else 0) for p in PHASES}
    assert json.loads(out) == {"n_mo": 36, "counts": counts, "fractions": {p: n / 36 for p, n in counts.items()}}


def test_two_s_vacancies_in_hexagonal_cell_make_six_defects():
    atoms, expected = two_far_s_vacancies(hexagonal("2H", 8))
    result = classify_mo(atoms)
    assert result.counts == {"2H": 64 - 6, "1T": 0, "defect": 6}
    np.testing.assert_array_equal(result.mo_indices[result.names == "defect"], expected)


def test_small_hexagonal_cell_uses_the_shortest_lattice_vector():
    # 2 x 2 cell: lengths 6.36 A, shortest lattice vector 6.36 A (half 3.18 > 2.9): fine.
    assert classify_mo(hexagonal("2H", 2)).counts["2H"] == 4
    # Sheared by a whole lattice vector, the same lattice has a long cell vector but the
    # shortest lattice vector is unchanged: still accepted, same result.
    sheared = supercell(hexagonal("2H", 2), [[1, 3, 0], [0, 1, 0], [0, 0, 1]])
    assert classify_mo(sheared).counts["2H"] == 4
    # 1 x 1 cell: lattice vector 3.18 A, a 2.9 A cut-off would count periodic images twice.
    with pytest.raises(InputError, match="half the smallest periodic cell"):
        classify_mo(hexagonal("2H", 1))


# ------------------------------------------------- triclinic and general cells
@pytest.mark.parametrize("matrix", [TRICLINIC, ROTATED_RECTANGLE], ids=["oblique", "rotated-rectangle"])
@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_triclinic_supercell_is_pure_phase(kind, matrix):
    atoms = supercell(hexagonal(kind, 3), matrix)
    assert_tilted(atoms)
    n_mo = 9 * round(abs(np.linalg.det(matrix)))
    result = classify_mo(atoms)
    assert result.n_mo == n_mo
    assert result.counts == {p: (n_mo if p == kind else 0) for p in PHASES}


@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_fully_general_cell_is_pure_phase(kind):
    atoms, normal = general(supercell(hexagonal(kind, 3), TRICLINIC))
    assert np.all(np.abs(atoms.cell[:]) > 0.1)  # no zero entry: a fully general cell
    result = classify_mo(atoms, normal=normal)
    assert result.counts == {p: (36 if p == kind else 0) for p in PHASES}


@pytest.mark.parametrize("matrix", [TRICLINIC, ROTATED_RECTANGLE], ids=["oblique", "rotated-rectangle"])
def test_two_s_vacancies_in_triclinic_supercell_make_six_defects(matrix):
    atoms, expected = two_far_s_vacancies(supercell(hexagonal("2H", 4), matrix))
    n_mo = 16 * round(abs(np.linalg.det(matrix)))
    result = classify_mo(atoms)
    assert result.counts == {"2H": n_mo - 6, "1T": 0, "defect": 6}
    np.testing.assert_array_equal(result.mo_indices[result.names == "defect"], expected)


def test_two_s_vacancies_in_fully_general_cell_make_six_defects():
    atoms, expected = two_far_s_vacancies(supercell(hexagonal("2H", 4), TRICLINIC))
    atoms, normal = general(atoms)
    result = classify_mo(atoms, normal=normal)
    assert result.counts == {"2H": 64 - 6, "1T": 0, "defect": 6}
    np.testing.assert_array_equal(result.mo_indices[result.names == "defect"], expected)


def test_species_in_tilted_cell():
    # Two S2 in a hexagonal, sheared gas box, each split by a cell face once wrapped:
    # only the minimum image joins them, and each is found as one S2.
    cell = [[12.0, 0.0, 0.0], [-6.0, 6.0 * np.sqrt(3), 0.0], [2.0, 1.0, 12.0]]
    gas = Atoms("S4", cell=cell, pbc=True)
    gas.set_scaled_positions([[0.01, 0.5, 0.5], [0.5, 0.5, 0.01], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    gas.positions[2] = gas.positions[0] - [1.97, 0.0, 0.0]  # across the face a = 0
    gas.positions[3] = gas.positions[1] - [0.0, 0.0, 1.97]  # across the face c = 0
    gas.wrap()
    assert np.linalg.norm(gas.positions[2] - gas.positions[0]) > 5.0
    assert np.linalg.norm(gas.positions[3] - gas.positions[1]) > 5.0
    mol = find_molecules(gas)
    assert len(mol) == 2 and mol.count("S2") == 2
    assert mol.label[0] == mol.label[2] and mol.label[1] == mol.label[3]


# -------------------------------------------------------- neighbour search
def random_crystal(seed: int, pbc) -> Atoms:
    """Random Mo, S, O atoms in an orthogonal 12 x 11 x 13 A box."""
    rng = np.random.default_rng(seed)
    lengths = np.array([12.0, 11.0, 13.0])
    pos = rng.uniform(0.0, 1.0, (180, 3)) * lengths
    return Atoms(symbols=["Mo", "S", "O"] * 60, positions=pos, cell=lengths, pbc=pbc)


def retiled(atoms: Atoms) -> Atoms:
    """The same periodic crystal in a tilted cell (unimodular change of the periodic
    cell vectors: b -> b + a, and c -> c + b - a when c is periodic), with every atom
    moved by a random lattice vector."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    a, b, c = atoms.cell[:]
    out = atoms.copy()
    out.set_cell([a, b + a, c + b - a if pbc[2] else c])
    shifts = np.random.default_rng(3).integers(-2, 3, (len(out), 3)) * pbc
    out.positions += shifts @ atoms.cell[:]
    return out


def sorted_distances_per_atom(pairs, n_atoms: int) -> list[np.ndarray]:
    return [np.sort(pairs.distance[pairs.i == k]) for k in range(n_atoms)]


@pytest.mark.parametrize("pbc", [True, (True, True, False)], ids=["3d", "slab"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tilted_cell_search_matches_orthogonal_cell(seed, pbc):
    orth = random_crystal(seed, pbc)
    tilted = retiled(orth)
    assert_tilted(tilted)
    cutoff = 3.3
    ref = neighbor_pairs(orth, cutoff)
    got = neighbor_pairs(tilted, cutoff)
    assert len(ref) > 5 * len(orth)
    for a, b in zip(sorted_distances_per_atom(got, len(orth)), sorted_distances_per_atom(ref, len(orth))):
        np.testing.assert_allclose(a, b, atol=1e-9)
    np.testing.assert_array_equal(got.i, ref.i)
    np.testing.assert_array_equal(got.j, ref.j)
    np.testing.assert_allclose(got.vector, ref.vector, atol=1e-9)
    np.testing.assert_allclose(got.distance, np.linalg.norm(got.vector, axis=1), atol=1e-12)
    # Selections of centres and neighbours, as the phase analysis asks.
    ref_mo = neighbor_pairs(orth, cutoff, centers="Mo", neighbors=np.flatnonzero(orth.numbers != 42))
    got_mo = neighbor_pairs(tilted, cutoff, centers="Mo", neighbors=np.flatnonzero(tilted.numbers != 42))
    np.testing.assert_array_equal(got_mo.i, ref_mo.i)
    np.testing.assert_array_equal(got_mo.j, ref_mo.j)
    np.testing.assert_allclose(got_mo.vector, ref_mo.vector, atol=1e-9)


@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_hexagonal_sheet_search_matches_orthogonal_sheet(kind):
    # 6 x 6 hexagonal cell and the orthogonal 4a x 2 sqrt(3) a rectangle of the same sheet:
    # every atom of an element has the same sorted neighbour distances (shells to 5.5 A).
    hexa = hexagonal(kind, 6)
    rect = supercell(hexagonal(kind, 1), [[4, 0, 0], [2, 4, 0], [0, 0, 1]])
    assert np.abs(rect.cell[:] - np.diag(np.diag(rect.cell[:]))).max() < 1e-9
    cutoff = 5.5
    rows = {}
    for name, atoms in (("hex", hexa), ("rect", rect)):
        per_atom = sorted_distances_per_atom(neighbor_pairs(atoms, cutoff), len(atoms))
        symbols = np.asarray(atoms.get_chemical_symbols())
        for el in ("Mo", "S"):
            rows[name, el] = np.array([per_atom[k] for k in np.flatnonzero(symbols == el)])
    for el, n_first in (("Mo", 6), ("S", 3)):
        reference = rows["hex", el][0]
        assert np.sum(np.abs(reference - reference[0]) < 1e-6) == n_first  # 6 S per Mo, 3 Mo per S
        np.testing.assert_allclose(rows["hex", el], np.broadcast_to(reference, rows["hex", el].shape), atol=1e-9)
        np.testing.assert_allclose(rows["rect", el], np.broadcast_to(reference, rows["rect", el].shape), atol=1e-9)
