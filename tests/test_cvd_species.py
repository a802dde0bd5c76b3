"""Molecule detection by bond connectivity (mapcvd.cvd.species) and gas adjustment.

The gas of the staged CVD runs (Rajak et al. 2021, doi:10.1038/s41524-021-00535-3):
S2, H2S and H2, plus the products H2O, SO and SO2; only free molecules are removed.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from mapcvd.cvd.rmd import RmdSettings, adjust_gas
from mapcvd.cvd.species import BOND_CUTOFFS, FORMULAS, count_species, find_molecules
from mapcvd.errors import InputError
from mapcvd.md.gas import MOLECULE_ARRAY, gas_molecule
from mapcvd.md.moo3 import moo3_slab

BOX = 20.0


def _molecule(name: str) -> Atoms:
    """Hand-built molecules at typical bond lengths (A)."""
    if name in ("S2", "H2S", "H2"):
        return gas_molecule(name)
    if name == "H2O":
        return Atoms("OH2", [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    if name == "SO":
        return Atoms("SO", [[0, 0, 0], [1.48, 0, 0]])
    if name == "SO2":
        return Atoms("SO2", [[0, 0, 0], [1.43, 0.0, 0.0], [-0.56, 1.32, 0.0]])
    raise KeyError(name)


def gas_box(names, *, spacing: float = 5.0) -> Atoms:
    """Molecules on a grid 5 A apart in a 20 A periodic box."""
    atoms = Atoms(cell=[BOX, BOX, BOX], pbc=True)
    grid = np.stack(np.meshgrid(*[np.arange(1.0, BOX - 2, spacing)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for name, centre in zip(names, grid):
        mol = _molecule(name)
        mol.positions += centre
        atoms += mol
    return atoms


def test_each_species_is_named():
    names = ["S2", "H2S", "H2", "H2O", "SO", "SO2", "S2", "H2"]
    mol = find_molecules(gas_box(names))
    assert len(mol) == len(names)
    assert sorted(mol.names.tolist()) == sorted(names)
    assert count_species(gas_box(names)) == {"S2": 2, "H2S": 1, "H2": 2, "H2O": 1, "SO": 1, "SO2": 1}
    assert set(FORMULAS) == {"S2", "H2S", "H2", "H2O", "SO", "SO2"}


def test_molecule_across_periodic_boundary():
    atoms = Atoms("S2H2", positions=[[0.5, 10, 10], [BOX - 1.3, 10, 10], [10, 0.2, 10], [10, BOX - 0.5, 10]],
                  cell=[BOX] * 3, pbc=True)
    assert count_species(atoms, ("S2", "H2")) == {"S2": 1, "H2": 1}
    atoms.pbc = False  # without periodicity the pairs are 18 A apart: four lone atoms
    assert count_species(atoms, ("S2", "H2")) == {"S2": 0, "H2": 0}
    assert len(find_molecules(atoms)) == 4


def test_stretched_and_broken_bonds():
    stretched = Atoms("S2", positions=[[5, 5, 5], [5, 5, 5 + 0.95 * BOND_CUTOFFS[frozenset({"S"})]]], cell=[BOX] * 3, pbc=True)
    assert count_species(stretched, ("S2",)) == {"S2": 1}
    broken = Atoms("S2", positions=[[5, 5, 5], [5, 5, 5 + 1.05 * BOND_CUTOFFS[frozenset({"S"})]]], cell=[BOX] * 3, pbc=True)
    assert count_species(broken, ("S2",)) == {"S2": 0}


def test_h2s_bonded_to_h2_is_neither():
    # H2S with an H2 whose H sits 1.0 A from an H of the H2S: one H4S component, no name.
    atoms = gas_box(["H2S"])
    h = atoms.positions[1]
    atoms += Atoms("H2", [h + [0, 0, 1.0], h + [0, 0, 1.84]])
    mol = find_molecules(atoms)
    assert len(mol) == 1 and mol.names[0] == ""
    assert count_species(mol, ("H2S", "H2")) == {"H2S": 0, "H2": 0}


def test_unknown_species_and_small_cell():
    with pytest.raises(InputError, match="unknown species"):
        count_species(gas_box(["S2"]), ("S8",))
    tiny = Atoms("S2", positions=[[0, 0, 0], [1.9, 0, 0]], cell=[5.0, 5.0, 5.0], pbc=True)
    with pytest.raises(InputError, match="half the smallest periodic cell"):
        find_molecules(tiny)


# ---------------------------------------------------------------- adjust_gas
def _slab_with_adsorbed_s2() -> tuple[Atoms, np.ndarray]:
    """8-Mo slab; an S2 standing on its top O (S-O 1.6 A), labelled as gas molecule 1."""
    slab = moo3_slab(8, vacuum=40.0)
    top = int(np.argmax(slab.positions[:, 2]))
    assert slab.get_chemical_symbols()[top] == "O"
    base = slab.positions[top]
    s2 = Atoms("S2", [base + [0, 0, 1.6], base + [0, 0, 1.6 + 1.97]])
    s2.arrays[MOLECULE_ARRAY] = np.array([1, 1])
    atoms = slab + s2
    return atoms, np.arange(len(slab), len(atoms))


def test_adsorbed_s2_is_not_free_and_never_removed():
    atoms, adsorbed = _slab_with_adsorbed_s2()
    assert count_species(atoms, ("S2",)) == {"S2": 0}  # bonded to the slab: part of its component
    # Add three free S2 and two H2 (min distance 3 A keeps them off the slab and the adsorbate).
    from mapcvd.md.gas import insert_gas, vacuum_gap

    gas = insert_gas(atoms, {"S2": 3, "H2": 2}, rng=np.random.default_rng(4), min_distance=3.0,
                     region=vacuum_gap(atoms))
    assert count_species(gas, ("S2", "H2")) == {"S2": 3, "H2": 2}
    n0 = len(gas)
    velocities = np.arange(3 * n0, dtype=float).reshape(n0, 3) * 1e-4
    settings = RmdSettings(n_mo=8)
    out, v, inserted, removed = adjust_gas(gas, velocities, np.array([0, 2, 1]), 1500.0,
                                           np.random.default_rng(0), settings)
    assert removed.tolist() == [3, 0, 0] and inserted.tolist() == [0, 0, 1]
    assert count_species(out, ("S2", "H2", "H2S")) == {"S2": 0, "H2": 2, "H2S": 1}
    # Every slab atom and the adsorbed S2 survive, in order, with their velocities.
    n_keep = len(atoms)
    assert np.array_equal(out.numbers[:n_keep], atoms.numbers)
    np.testing.assert_array_equal(out.positions[:n_keep], gas.positions[:n_keep])
    np.testing.assert_array_equal(v[:n_keep], velocities[:n_keep])
    assert np.all(out.arrays[MOLECULE_ARRAY][adsorbed] == 1) and np.all(out.arrays[MOLECULE_ARRAY][:adsorbed[0]] == 0)
    assert len(out) == n0 - 6 + 3 and v.shape == (len(out), 3)
    # The new H2S keeps 3 A from everything else.
    new = np.arange(len(out) - 3, len(out))
    d = out.get_distances(new[0], np.arange(len(out) - 3), mic=True)
    assert d.min() >= 3.0 - 1e-9


def test_adjust_gas_removes_at_most_the_free_ones():
    atoms, _ = _slab_with_adsorbed_s2()
    v = np.zeros((len(atoms), 3))
    out, _, inserted, removed = adjust_gas(atoms, v, np.array([0, 0, 0]), 1000.0, np.random.default_rng(1),
                                            RmdSettings(n_mo=8))
    assert removed.tolist() == [0, 0, 0] and inserted.tolist() == [0, 0, 0]
    assert len(out) == len(atoms)  # the adsorbed S2 is not free gas: never taken
