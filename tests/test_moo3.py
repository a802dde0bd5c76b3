"""Tests of the alpha-MoO3 slab and gas insertion (mapcvd.md.moo3).

System of Rajak et al., npj Comput. Mater. 2021, doi:10.1038/s41524-021-00535-3:
one MoO3 double layer (288 Mo, 1,152 atoms in the paper) in S2/H2S/H2 gas.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase import Atoms

from mapcvd.errors import InputError
from mapcvd.md.gas import (
    GAS_MOLECULES,
    MOLECULE_ARRAY,
    count_gas,
    gas_molecule,
    insert_gas,
)
from mapcvd.md.moo3 import moo3_slab


def _gap(atoms: Atoms, mask: np.ndarray) -> float:
    z = atoms.positions[mask, 2]
    return atoms.cell[2, 2] - np.ptp(z)


@pytest.fixture(scope="module")
def slab32() -> Atoms:
    return moo3_slab(32)


# ----------------------------------------------------------------------- slab
def test_slab_32_mo(slab32):
    s = slab32
    symbols = np.array(s.get_chemical_symbols())
    assert (symbols == "Mo").sum() == 32 and (symbols == "O").sum() == 96
    assert s.get_chemical_formula() == "Mo32O96"
    assert list(symbols[:32]) == ["Mo"] * 32  # documented order: Mo first
    assert s.info["n_mo"] == 32
    assert all(s.pbc)
    z = s.positions[:, 2]
    assert np.ptp(z[symbols == "Mo"]) < 7.0  # one double layer
    assert np.ptp(z) < 7.5
    assert _gap(s, slice(None)) >= 15.0 - 1e-9
    assert abs((z.max() + z.min()) / 2 - s.cell[2, 2] / 2) < 1e-9  # centred
    d = s.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 1.5
    assert np.all(s.arrays[MOLECULE_ARRAY] == 0)
    lx, ly = s.cell.lengths()[:2]
    assert max(lx, ly) / min(lx, ly) < 1.2


def test_slab_vacuum_and_mo_o_coordination():
    s = moo3_slab(16, vacuum=22.0)
    assert len(s) == 64
    assert _gap(s, slice(None)) == pytest.approx(22.0)
    # every Mo has 5-6 O within 2.5 A (distorted MoO6 octahedra), periodic in plane
    d = s.get_all_distances(mic=True)
    mo = np.array(s.get_chemical_symbols()) == "Mo"
    n_o = (d[np.ix_(mo, ~mo)] < 2.5).sum(axis=1)
    assert n_o.min() >= 5 and n_o.max() <= 6


def test_paper_slab_288():
    s = moo3_slab(288)
    assert len(s) == 1152
    assert s.get_chemical_formula() == "Mo288O864"
    assert s.info["repeat"] == (12, 6)


@pytest.mark.parametrize("n_mo", [7, 0, -2, 28, 30])
def test_invalid_n_mo(n_mo):
    with pytest.raises(InputError, match="nearest valid") as info:
        moo3_slab(n_mo)
    assert "\n" not in str(info.value)


def test_tiny_vacuum():
    with pytest.raises(InputError, match="vacuum"):
        moo3_slab(32, vacuum=5.0)


# ------------------------------------------------------------------------ gas
def test_gas_geometries():
    s2 = gas_molecule("S2")
    assert s2.get_chemical_formula() == "S2"
    assert s2.get_distance(0, 1) == pytest.approx(1.965, abs=0.002)
    h2s = gas_molecule("H2S")
    assert h2s.get_chemical_symbols() == ["S", "H", "H"]
    assert h2s.get_distance(0, 1) == pytest.approx(1.221, abs=0.002)
    assert h2s.get_distance(0, 2) == pytest.approx(1.221, abs=0.002)
    assert h2s.get_angle(1, 0, 2) == pytest.approx(93.3, abs=0.1)
    h2 = gas_molecule("H2")
    assert h2.get_distance(0, 1) == pytest.approx(0.838, abs=0.002)
    for name in GAS_MOLECULES:
        assert np.allclose(gas_molecule(name).get_center_of_mass(), 0.0, atol=1e-12)
    with pytest.raises(InputError, match="SO2"):
        gas_molecule("SO2")


def test_gas_geometries_are_reaxff_minima():
    """Each stored geometry stays put (< 2 mA) under CG minimisation with ffield.MoSOH."""
    from mapcvd.data import data_path
    from mapcvd.md.engine import Engine
    from mapcvd.md.potentials import reaxff

    pot = reaxff(data_path("forcefields", "ffield.MoSOH"), ["Mo", "O", "S", "H"])
    for name in GAS_MOLECULES:
        mol = gas_molecule(name)
        mol.positions += 15.0
        mol.set_cell([30.0, 30.0, 30.0])
        mol.pbc = True
        with Engine(mol, pot) as engine:
            engine.minimize(fmax=1e-5, max_iterations=5000)
            relaxed = Atoms(mol.get_chemical_symbols(), engine.get_positions(unwrapped=True))
        assert np.abs(relaxed.get_all_distances() - mol.get_all_distances()).max() < 2e-3, name


def _check_gas(out: Atoms, before: Atoms, min_distance: float, region=None):
    ids = out.arrays[MOLECULE_ARRAY]
    d = out.get_all_distances(mic=True)
    other = ids[:, None] != ids[None, :]
    assert d[other].min() >= min_distance - 1e-9
    gas = ids > 0
    z = out.positions[gas, 2]
    if region is None:  # the vacuum: outside the slab's z extent (slab centred in the cell)
        zs = before.positions[before.arrays[MOLECULE_ARRAY] == 0, 2]
        assert np.all((z > zs.max()) | (z < zs.min()))
    else:
        offset = (z - region[0]) % out.cell[2, 2]  # the region may cross the boundary
        assert np.all(offset <= region[1] - region[0] + 1e-9)
    assert np.all(out.positions[gas] >= 0) and np.all(out.positions[gas] < out.cell.lengths())


def test_insert_gas_counts_distances_region(slab32):
    counts = {"S2": 8, "H2S": 6, "H2": 10}
    out = insert_gas(slab32, counts, rng=np.random.default_rng(7))
    symbols = np.array(out.get_chemical_symbols())
    assert (symbols == "S").sum() == 2 * 8 + 6
    assert (symbols == "H").sum() == 2 * 6 + 2 * 10
    assert (symbols == "Mo").sum() == 32 and (symbols == "O").sum() == 96
    ids = out.arrays[MOLECULE_ARRAY]
    assert ids.dtype.kind == "i"
    assert np.all(ids[: len(slab32)] == 0)
    assert sorted(set(ids[len(slab32) :])) == list(range(1, 25))
    assert out.info["gas_counts"] == counts
    assert count_gas(out) == counts
    _check_gas(out, slab32, 2.5)
    # intramolecular geometry kept through rotation and wrapping
    for k in np.unique(ids[ids > 0]):
        mol = out[ids == k]
        if mol.get_chemical_formula() == "S2":
            assert mol.get_distance(0, 1, mic=True) == pytest.approx(1.965, abs=1e-3)
    assert len(slab32) == 128 and MOLECULE_ARRAY in slab32.arrays  # input untouched


def test_insert_gas_again_continues_ids_and_is_reproducible(slab32):
    first = insert_gas(slab32, {"H2": 4}, rng=np.random.default_rng(1), min_distance=3.0)
    second = insert_gas(first, {"S2": 3, "H2S": 2}, rng=np.random.default_rng(2), min_distance=3.0)
    ids = second.arrays[MOLECULE_ARRAY]
    assert ids.max() == 9 and len(np.unique(ids)) == 10
    assert second.info["gas_counts"] == {"S2": 3, "H2S": 2, "H2": 4}
    _check_gas(second, slab32, 3.0)
    again = insert_gas(slab32, {"H2": 4}, rng=np.random.default_rng(1), min_distance=3.0)
    assert np.array_equal(again.positions, first.positions)


@pytest.mark.parametrize("offsets", [(2.0, 6.0), (5.0, 11.0)])  # inside the cell; across its top
def test_insert_gas_explicit_region(slab32, offsets):
    top = slab32.positions[:, 2].max()
    region = (top + offsets[0], top + offsets[1])
    out = insert_gas(slab32, {"S2": 3, "H2": 3}, rng=np.random.default_rng(3), region=region)
    _check_gas(out, slab32, 2.5, region=region)


def test_insert_gas_without_molecule_array():
    bare = moo3_slab(8)
    del bare.arrays[MOLECULE_ARRAY]
    out = insert_gas(bare, {"H2S": 2}, rng=np.random.default_rng(0))
    assert list(np.unique(out.arrays[MOLECULE_ARRAY])) == [0, 1, 2]


def test_insert_gas_too_many(slab32):
    with pytest.raises(InputError, match=r"S2.*fitted S2 \d+/5000") as info:
        insert_gas(slab32, {"S2": 5000}, rng=np.random.default_rng(0), max_attempts=200)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("counts", [{"SO2": 1}, {"H2": -1}, {"S2": 1.5}])
def test_insert_gas_bad_counts(slab32, counts):
    with pytest.raises(InputError):
        insert_gas(slab32, counts, rng=np.random.default_rng(0))


def test_insert_gas_needs_generator(slab32):
    with pytest.raises(InputError, match="Generator"):
        insert_gas(slab32, {"H2": 1}, rng=0)


# ---------------------------------------------------------------------- heavy
@pytest.mark.heavy
def test_slab_in_gas_survives_1ps_at_1500K():
    """32-Mo slab with 4 of each gas: 1 ps NVT at 1500 K, 0.25 fs steps, 25 fs damping
    (Hong et al., Nano Lett. 2017) with ffield.MoSOH, without lost atoms."""
    from mapcvd.data import data_path
    from mapcvd.md.engine import Engine
    from mapcvd.md.potentials import reaxff

    system = insert_gas(moo3_slab(32), {"S2": 4, "H2S": 4, "H2": 4}, rng=np.random.default_rng(11))
    pot = reaxff(data_path("forcefields", "ffield.MoSOH"), ["Mo", "O", "S", "H"])
    start = time.perf_counter()
    with Engine(system, pot, seed=5) as engine:
        trace = engine.run_nvt(4000, 1500.0, timestep_fs=0.25, damping_fs=25.0)  # LostAtomsError if lost
        final = engine.to_atoms()
    wall = time.perf_counter() - start
    print(f"\n{len(system)} atoms, 4000 ReaxFF steps: {wall:.1f} s wall ({1000 * wall / 4000:.1f} ms/step)")
    assert len(final) == len(system)
    assert np.all(np.isfinite(trace.potential_energy)) and np.all(np.isfinite(trace.temperature))
    assert 1000.0 < trace.temperature[2000:].mean() < 2000.0
