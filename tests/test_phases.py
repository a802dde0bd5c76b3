"""Per-Mo phase analysis (2H / 1T / defect) of MoS2, Rajak et al. 2021 criterion."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import make_supercell, mx2

from mapcvd.cvd.phases import MO_S_CUTOFF, PHASE_CODES, PHASES, PhaseResult, classify_mo
from mapcvd.errors import InputError

A, THICKNESS, VACUUM = 3.18, 3.19, 10.0
# mx2 builds a hexagonal cell (also accepted: tests/test_phases_cells.py); this
# rectangle (4 a x 2 sqrt(3) a, 12.72 x 11.02 A) holds 16 formula units, as size=(4,4,1).
RECTANGLE = [[4, 0, 0], [2, 4, 0], [0, 0, 1]]


def sheet(kind: str = "2H") -> Atoms:
    """Ideal MoS2 sheet, periodic in x and y, orthogonal cell, 16 Mo."""
    unit = mx2(formula="MoS2", kind=kind, a=A, thickness=THICKNESS, size=(1, 1, 1), vacuum=VACUUM)
    atoms = make_supercell(unit, RECTANGLE)
    atoms.wrap()
    return atoms


def mo_s_neighbours(atoms: Atoms, i_s: int) -> np.ndarray:
    """Indices of the Mo within the cut-off of atom ``i_s`` (minimum image)."""
    d = atoms.get_distances(i_s, range(len(atoms)), mic=True)
    mo = np.asarray(atoms.get_chemical_symbols()) == "Mo"
    return np.flatnonzero(mo & (d < MO_S_CUTOFF))


def test_hexagonal_mx2_cell_is_accepted():
    # Tilted periodic cells used to be refused ("only orthogonal cells"); now analysed.
    hexagonal = mx2(formula="MoS2", kind="2H", a=A, thickness=THICKNESS, size=(4, 4, 1), vacuum=VACUUM)
    assert classify_mo(hexagonal).counts == {"2H": 16, "1T": 0, "defect": 0}


@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_ideal_sheet_is_pure_phase(kind):
    result = classify_mo(sheet(kind))
    assert isinstance(result, PhaseResult)
    assert result.n_mo == 16
    assert result.fractions[kind] == 1.0
    assert result.counts == {p: (16 if p == kind else 0) for p in PHASES}
    assert np.all(result.labels == PHASE_CODES[kind])
    assert list(result.names) == [kind] * 16


def test_to_json_round_trips():
    payload = classify_mo(sheet("2H")).to_json()
    assert json.loads(json.dumps(payload)) == {
        "n_mo": 16,
        "counts": {"2H": 16, "1T": 0, "defect": 0},
        "fractions": {"2H": 1.0, "1T": 0.0, "defect": 0.0},
    }


def test_s_vacancy_makes_three_defects():
    atoms = sheet("2H")
    i_s = int(np.flatnonzero(np.asarray(atoms.get_chemical_symbols()) == "S")[5])
    near = mo_s_neighbours(atoms, i_s)
    assert near.size == 3
    del atoms[i_s]
    result = classify_mo(atoms)
    near = np.where(near > i_s, near - 1, near)  # indices shift after the deletion
    defects = result.mo_indices[result.labels == PHASE_CODES["defect"]]
    assert sorted(defects) == sorted(near)
    assert result.counts == {"2H": 13, "1T": 0, "defect": 3}


def test_o_neighbour_makes_defect():
    atoms = sheet("2H")
    i_mo = int(np.flatnonzero(np.asarray(atoms.get_chemical_symbols()) == "Mo")[7])
    # O 2.2 A above the Mo: within the cut-off of this Mo only (next Mo is 3.18 A away in plane).
    atoms += Atoms("O", positions=[atoms.positions[i_mo] + [0.0, 0.0, 2.2]])
    result = classify_mo(atoms)
    assert result.counts == {"2H": 15, "1T": 0, "defect": 1}
    assert result.mo_indices[result.labels == PHASE_CODES["defect"]].tolist() == [i_mo]


def test_s_replaced_by_o_makes_three_defects():
    atoms = sheet("1T")
    i_s = int(np.flatnonzero(np.asarray(atoms.get_chemical_symbols()) == "S")[0])
    atoms[i_s].symbol = "O"
    result = classify_mo(atoms)
    assert result.counts == {"2H": 0, "1T": 13, "defect": 3}


@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_periodic_edges(kind):
    atoms = sheet(kind)
    reference = classify_mo(atoms)
    shifted = atoms.copy()
    shifted.translate(0.5 * (atoms.cell[0] + atoms.cell[1]) + [0.37, 0.21, 0.0])
    shifted.wrap()
    result = classify_mo(shifted)
    assert result.counts == reference.counts
    np.testing.assert_array_equal(result.labels, reference.labels)
    # Without periodicity the edge Mo lose S neighbours: periodicity is what makes them 2H.
    open_sheet = atoms.copy()
    open_sheet.pbc = False
    assert 0 < classify_mo(open_sheet).counts["defect"] < 16


def test_rotated_sheet_is_still_2h():
    # A 17 deg in-plane rotation breaks the orthogonal periodic cell, so use a finite
    # flake (pbc off): labels must not change with the rotation, interior Mo are 2H.
    flake = make_supercell(sheet("2H"), np.diag([2, 2, 1]))
    flake.pbc = False
    reference = classify_mo(flake)
    assert reference.counts["2H"] >= 20 and reference.counts["1T"] == 0
    rotated = flake.copy()
    rotated.rotate(17.0, "z", center="COM", rotate_cell=True)
    result = classify_mo(rotated)
    np.testing.assert_array_equal(result.labels, reference.labels)


def test_jittered_sheet_is_still_2h():
    atoms = sheet("2H")
    rng = np.random.default_rng(1234)
    atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
    assert classify_mo(atoms).fractions["2H"] == 1.0
    atoms = sheet("1T")
    atoms.positions += rng.normal(0.0, 0.05, size=atoms.positions.shape)
    assert classify_mo(atoms).fractions["1T"] == 1.0


def test_normal_along_x_and_vector():
    atoms = sheet("2H")
    # Permute axes so the layer normal is x; the cell stays orthogonal.
    permuted = Atoms(
        symbols=atoms.get_chemical_symbols(),
        positions=atoms.positions[:, [2, 0, 1]],
        cell=np.diag(np.diag(atoms.cell[:])[[2, 0, 1]]),
        pbc=[False, True, True],
    )
    assert classify_mo(permuted, normal="x").fractions["2H"] == 1.0
    assert classify_mo(permuted, normal=[-2.0, 0.0, 0.0]).fractions["2H"] == 1.0
    # With the wrong normal no Mo has 3 S above and 3 below.
    assert classify_mo(permuted, normal="z").fractions["defect"] == 1.0


def test_tolerance_separates_phases():
    # Ideal 1T: three smallest angles sum to 180 deg; a huge tolerance calls it 2H.
    assert classify_mo(sheet("1T"), eclipsed_tolerance_deg=181.0).fractions["2H"] == 1.0
    assert classify_mo(sheet("1T"), eclipsed_tolerance_deg=179.0).fractions["1T"] == 1.0


def test_no_sulfur_is_all_defect():
    atoms = sheet("2H")
    del atoms[[a.index for a in atoms if a.symbol == "S"]]
    result = classify_mo(atoms)
    assert result.counts == {"2H": 0, "1T": 0, "defect": 16}
    assert result.fractions["defect"] == 1.0


def test_no_mo_raises_input_error():
    with pytest.raises(InputError) as info:
        classify_mo(Atoms("S2", positions=[[0, 0, 0], [0, 0, 2.0]]))
    assert "\n" not in str(info.value)


def test_reads_structure_file(tmp_path):
    path = tmp_path / "sheet.extxyz"
    sheet("1T").write(path)
    assert classify_mo(path).fractions["1T"] == 1.0
    assert classify_mo(str(path)).n_mo == 16
    with pytest.raises(InputError, match="not found"):
        classify_mo(tmp_path / "missing.xyz")


@pytest.mark.parametrize("kwargs", [{"cutoff": -1.0}, {"normal": "w"}, {"normal": [0, 0, 0]},
                                    {"eclipsed_tolerance_deg": 0.0}, {"cutoff": 6.0}])
def test_bad_parameters(kwargs):
    with pytest.raises(InputError):
        classify_mo(sheet("2H"), **kwargs)


def test_unreadable_file_is_input_error(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("garbage\n")
    with pytest.raises(InputError, match="cannot read structure"):
        classify_mo(path)
