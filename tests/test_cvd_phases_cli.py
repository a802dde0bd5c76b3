"""``mapcvd cvd phases``: per-Mo 2H/1T/defect counts of a structure file.

Criterion of Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3,
checked on ideal MoS2 sheets built by :func:`ase.build.mx2`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import make_supercell, mx2

from cli_helpers import cli


RECTANGLE = [[4, 0, 0], [2, 4, 0], [0, 0, 1]]  # orthogonal 4a x 2 sqrt(3) a cell, 16 Mo


def sheet(kind: str) -> Atoms:
    unit = mx2(formula="MoS2", kind=kind, a=3.18, thickness=3.19, size=(1, 1, 1), vacuum=10.0)
    atoms = make_supercell(unit, RECTANGLE)
    atoms.wrap()
    return atoms




@pytest.mark.parametrize("kind", ["2H", "1T"])
def test_phases_json_of_ideal_sheet(tmp_path, capsys, kind):
    path = tmp_path / f"{kind}.extxyz"
    sheet(kind).write(path)
    code, out, err = cli(capsys, "cvd", "phases", path, "--json")
    assert code == 0, err
    payload = json.loads(out)
    counts = {p: (16 if p == kind else 0) for p in ("2H", "1T", "defect")}
    assert payload == {"n_mo": 16, "counts": counts, "fractions": {p: n / 16 for p, n in counts.items()}}
    assert list(payload) == ["n_mo", "counts", "fractions"]
    assert list(payload["counts"]) == ["2H", "1T", "defect"] and list(payload["fractions"]) == ["2H", "1T", "defect"]
    assert out.count("\n") == 1  # exactly one JSON line


def test_phases_json_mixed_structure(tmp_path, capsys):
    atoms = sheet("2H")
    s_index = int(np.flatnonzero(np.asarray(atoms.get_chemical_symbols()) == "S")[0])
    del atoms[s_index]  # an S vacancy makes its 3 Mo neighbours defects
    path = tmp_path / "vacancy.xyz"
    atoms.write(path, format="extxyz")
    code, out, _ = cli(capsys, "cvd", "phases", path, "--json")
    assert code == 0
    assert json.loads(out) == {
        "n_mo": 16,
        "counts": {"2H": 13, "1T": 0, "defect": 3},
        "fractions": {"2H": 13 / 16, "1T": 0.0, "defect": 3 / 16},
    }


def test_phases_text_output(tmp_path, capsys):
    path = tmp_path / "1T.extxyz"
    sheet("1T").write(path)
    code, out, _ = cli(capsys, "cvd", "phases", path)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == f"{path}: 16 Mo"
    assert lines[1].split() == ["2H", "0", "0.000"]
    assert lines[2].split() == ["1T", "16", "1.000"]
    assert lines[3].split() == ["defect", "0", "0.000"]


def test_phases_options(tmp_path, capsys):
    path = tmp_path / "2H.extxyz"
    sheet("2H").write(path)
    # With a cut-off below the Mo-S bond (2.43 A) no Mo has S neighbours: all defect.
    code, out, _ = cli(capsys, "cvd", "phases", path, "--json", "--cutoff", "2.0")
    assert code == 0 and json.loads(out)["counts"]["defect"] == 16
    code, out, _ = cli(capsys, "cvd", "phases", path, "--json", "--normal", "x")
    assert code == 0 and json.loads(out)["counts"]["defect"] == 16


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "structure file not found"),
        (lambda p: p.write_text("garbage\n"), "cannot read structure"),
        (lambda p: Atoms("S2", [[0, 0, 0], [0, 0, 2.0]]).write(p, format="extxyz"), "no Mo atoms"),
    ],
)
def test_phases_errors_are_one_line(tmp_path, capsys, make, expected):
    path = tmp_path / "s.xyz"
    make(path)
    code, out, err = cli(capsys, "cvd", "phases", path, "--json")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and out == ""
    assert lines[0].startswith("mapcvd: error: ") and expected in lines[0]


def test_phases_bad_option_is_one_line(tmp_path, capsys):
    path = tmp_path / "2H.extxyz"
    sheet("2H").write(path)
    code, _, err = cli(capsys, "cvd", "phases", path, "--normal", "w")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "layer normal" in err
