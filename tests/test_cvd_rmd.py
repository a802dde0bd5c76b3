"""Staged reactive MD (mapcvd.cvd.rmd), schedule files (mapcvd.cvd.schedule), ``mapcvd cvd rmd``.

Method of Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3:
a MoO3 slab in S2/H2/H2S gas, stages set by (T, n_S2, n_H2, n_H2S), ReaxFF (ffield.MoSOH)
with a Nose-Hoover thermostat (25 fs) and 0.25 fs steps (Hong et al. 2017).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mapcvd.cli import main
from mapcvd.config import defaults
from mapcvd.cvd.phases import classify_mo
from mapcvd.cvd.ranges import PAPER_RANGES
from mapcvd.cvd.rmd import (
    GAS_ORDER,
    PRODUCTS,
    SPECIES,
    GasInsertionError,
    RmdResult,
    RmdSettings,
    exhaust_products,
    frame_atoms,
    run_schedule,
)
from mapcvd.cvd.schedule import read_schedule, validate_schedule, write_schedule
from mapcvd.errors import InputError, LostAtomsError, MDError
from mapcvd.md.gas import MOLECULE_ARRAY

# A 16-Mo slab (64 atoms) with 88-99 atoms in all; stage 2 inserts S2 and H2S and removes
# H2, stage 3 removes S2 and H2S and inserts H2. 0.5 ps stages: the second-half mean of the
# temperature of ~90 atoms then scatters by about 1.5% (canonical fluctuations under
# Nose-Hoover), so the 5% bound is about 3 standard deviations. About 30 s on one core.
SCHEDULE = np.array([[1500.0, 5, 4, 3], [2500.0, 8, 2, 5], [2000.0, 3, 6, 2]])
ATOMS_PER = np.array([2, 2, 3])  # atoms of one S2, H2, H2S (GAS_ORDER)


@pytest.fixture(scope="module")
def staged():
    calls = []
    result = run_schedule(SCHEDULE, RmdSettings(n_mo=16, stage_ps=0.5), seed=0,
                          progress=lambda k, info: calls.append((k, info)))
    return result, calls


def test_gas_counts_match_targets_at_each_stage_start(staged):
    result, _ = staged
    targets = SCHEDULE[:, 1:].astype(int)
    assert np.abs(result.gas_counts - targets).max() <= 1
    assert result.inserted[0].tolist() == targets[0].tolist() and not result.removed[0].any()
    assert result.inserted[1, 0] >= 3 and result.removed[2, 0] >= 1  # S2 went up, then down
    assert result.removed[1, 1] >= 1 and result.inserted[2, 1] >= 1  # H2 went down, then up


def test_mean_temperature_of_second_half_within_5_percent(staged):
    result, _ = staged
    deviation = result.temperature_K / SCHEDULE[:, 0] - 1.0
    assert np.all(np.abs(deviation) < 0.05), deviation


def test_no_atoms_lost_and_slab_never_removed(staged):
    result, _ = staged
    n_expected = 64 + np.cumsum((result.inserted - result.removed) @ ATOMS_PER - result.exhausted_atoms)
    np.testing.assert_array_equal(result.n_atoms, n_expected)
    for frame, n in zip(result.frames, result.n_atoms):
        numbers = np.asarray(frame["numbers"])
        assert len(numbers) == n and frame["positions"].shape == (n, 3)
        assert np.count_nonzero(numbers == 42) == 16 and np.count_nonzero(numbers == 8) == 48
        assert np.count_nonzero(np.asarray(frame["molecule"]) == 0) == 64  # every slab atom kept
        assert np.all(np.isfinite(frame["positions"]))


def test_result_fields(staged):
    result, calls = staged
    assert isinstance(result, RmdResult)
    s = len(SCHEDULE)
    assert result.schedule.shape == (s, 4) and result.fractions.shape == (s, 3)
    assert result.gas_counts.shape == (s, len(GAS_ORDER)) and result.species.shape == (s, len(SPECIES))
    assert result.temperature_K.shape == result.energy_eV.shape == result.n_atoms.shape == (s,)
    np.testing.assert_allclose(result.fractions.sum(axis=1), 1.0)
    assert np.all(np.isfinite(result.energy_eV)) and np.all(result.energy_eV < 0)
    assert 0 < result.build_seconds < result.md_seconds <= result.wall_seconds
    assert 1 <= result.n_builds <= s and result.steps_per_stage == 2000
    assert result.simulated_ps == pytest.approx(1.5)
    assert [k for k, _ in calls] == [0, 1, 2] and calls[-1][1]["stage"] == 3
    assert calls[1][1]["gas"] == dict(zip(GAS_ORDER, result.gas_counts[1].tolist()))
    for k, frame in enumerate(result.frames):  # recorded fractions are those of the frame
        np.testing.assert_allclose(classify_mo(frame_atoms(frame)).vector, result.fractions[k])
        assert np.all(result.species[k] >= 0)


def test_exhaust_takes_free_products_and_nothing_else():
    """Free H2O, SO2, O2 and an S atom leave (flow reactor); the feed gas S2 and the slab stay."""
    from ase import Atoms

    from mapcvd.md.moo3 import moo3_slab

    slab = moo3_slab(8, vacuum=30.0)
    top = slab.positions[:, 2].max()
    cx, cy = np.diag(slab.cell[:])[:2] / 2
    gas = Atoms("OH2SO2S2O2S", positions=[
        [cx, cy, top + 8.0], [cx + 0.96, cy, top + 8.0], [cx - 0.24, cy + 0.93, top + 8.0],  # H2O
        [cx, cy, top + 14.0], [cx + 1.25, cy + 0.7, top + 14.0], [cx - 1.25, cy + 0.7, top + 14.0],  # SO2
        [cx, cy, top + 20.0], [cx + 1.9, cy, top + 20.0],  # S2
        [cx, cy, top + 26.0], [cx + 1.21, cy, top + 26.0],  # O2
        [cx + 5.0, cy + 3.0, top + 17.0],  # a lone S atom
    ])
    atoms = slab + gas
    velocities = np.arange(3 * len(atoms), dtype=float).reshape(-1, 3)
    kept, kept_v, exhausted, n_gone = exhaust_products(atoms, velocities)
    assert dict(zip(PRODUCTS, exhausted.tolist())) == {"H2O": 1, "SO": 0, "SO2": 1, "other": 2}
    assert n_gone == 9 and len(kept) == len(slab) + 2 and kept.get_chemical_symbols()[-2:] == ["S", "S"]
    s2 = len(slab) + 6
    np.testing.assert_array_equal(kept_v, velocities[[*range(len(slab)), s2, s2 + 1]])
    np.testing.assert_array_equal(kept.positions[: len(slab)], slab.positions)


def test_hot_full_gas_schedule_keeps_room_for_its_gas():
    """At 3750 K and the most gas of the range, S2 breaks up faster than it is counted:
    in a closed box the fragments fill the vacuum and stage 7 has no room for its gas
    (seed 3, measured); with the flow reactor's exhaust (the default) every stage runs."""
    settings = RmdSettings(n_mo=16, vacuum_A=40.0, stage_ps=0.1)
    high = np.floor(settings.ranges.high)
    schedule = np.array([[3750.0, *high[1:]]] * 8)
    result = run_schedule(schedule, settings, seed=3)
    assert len(result.fractions) == 8 and result.exhausted[1:].sum() > 0
    assert np.abs(result.gas_counts - schedule[:, 1:]).max() <= 1  # every stage started at its targets
    assert not result.exhausted[0].any()  # nothing leaves before the first stage


def test_positions_and_velocities_carried_across_stages():
    """Two stages of 40 steps at the same T and gas equal one stage of 80 steps."""
    schedule = np.array([[900.0, 1, 1, 1], [900.0, 1, 1, 1]])
    two = run_schedule(schedule, RmdSettings(n_mo=8, stage_ps=0.01, rescale_velocities=False), seed=5)
    one = run_schedule(schedule[:1], RmdSettings(n_mo=8, stage_ps=0.02, rescale_velocities=False), seed=5)
    assert two.n_builds == 1 and not two.inserted[1].any() and not two.removed[1].any()  # engine reused
    assert two.n_atoms[-1] == one.n_atoms[-1]
    np.testing.assert_allclose(two.frames[-1]["positions"], one.frames[-1]["positions"], atol=1e-4)
    assert two.energy_eV[-1] == pytest.approx(one.energy_eV[-1], abs=1e-3)


def test_non_finite_dynamics_is_md_error(monkeypatch):
    from mapcvd.cvd import rmd

    monkeypatch.setattr(rmd, "maxwell_boltzmann", lambda m, t, rng: np.full((len(m), 3), np.nan))
    with pytest.raises(MDError, match=r"stage 1/1 .*non-finite"):
        run_schedule(np.array([[750.0, 1, 1, 1]]), RmdSettings(n_mo=8, stage_ps=0.01), seed=0)


def test_lammps_error_keeps_its_class_and_names_the_stage(monkeypatch):
    from mapcvd.md.engine import Engine

    closed = []

    def lost(self, *args, **kwargs):
        raise LostAtomsError("LAMMPS failed (Lost atoms: original 50 current 49) while running: run 40")

    monkeypatch.setattr(Engine, "run_nvt", lost)
    monkeypatch.setattr(Engine, "close", lambda self: closed.append(self))
    with pytest.raises(LostAtomsError, match=r"^stage 1/1 \(T 750 K\): LAMMPS failed \(Lost atoms"):
        run_schedule(np.array([[750.0, 1, 1, 1]]), RmdSettings(n_mo=8, stage_ps=0.01), seed=0)
    assert closed  # the engine is released


def test_gas_that_does_not_fit_is_md_error():
    with pytest.raises(GasInsertionError, match=r"stage 1/1 .*no room") as info:
        run_schedule(np.array([[750.0, 7, 7, 6]]), RmdSettings(n_mo=8, vacuum_A=10.0, stage_ps=0.01), seed=0)
    assert isinstance(info.value, MDError) and "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), [[1000.0, -1, 1, 1]], [[0.0, 1, 1, 1]], [[1000.0, np.nan, 1, 1]]])
def test_bad_schedule_array(bad):
    with pytest.raises(InputError):
        run_schedule(np.asarray(bad), RmdSettings(n_mo=8), seed=0)


# ------------------------------------------------------------------ settings
def test_settings_from_config():
    table = defaults()["cvd"]
    assert RmdSettings.from_config(table) == RmdSettings()
    settings = RmdSettings.from_config({**table, "n_mo": 32, "stage_ps": 0.5, "timestep_fs": 0.25})
    assert settings.n_mo == 32 and settings.stage_steps == 2000
    assert RmdSettings().stage_steps == 400
    assert settings.ranges.high[1] == pytest.approx(250.0 * 32 / 288)
    assert settings.ranges.low[0] == PAPER_RANGES.low[0]


@pytest.mark.parametrize("kwargs", [{"n_mo": 10}, {"n_mo": 4}, {"stage_ps": 0.0}, {"timestep_fs": -1.0},
                                    {"stage_ps": 0.0001}])
def test_bad_settings(kwargs):
    with pytest.raises(InputError) as info:
        RmdSettings(**kwargs)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ schedule
def test_schedule_file_round_trip(tmp_path):
    ranges = PAPER_RANGES.scaled(16)
    schedule = ranges.random_schedules(1, 20, 3)[0]
    path = write_schedule(tmp_path / "s.csv", schedule)
    np.testing.assert_allclose(read_schedule(path, ranges), schedule, rtol=1e-9)
    assert path.read_text().splitlines()[0] == "T,n_S2,n_H2,n_H2S"
    # half a molecule of slack for counts (they are rounded), none for T
    edge = np.array([[750.0, ranges.low[1] - 0.4, ranges.high[2] + 0.4, 1.0]])
    assert validate_schedule(edge, ranges).shape == (1, 4)
    with pytest.raises(InputError, match="column T"):
        validate_schedule([[749.0, 5, 5, 5]], ranges)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("T,n_S2,n_H2,n_H2S\n1500,5,5\n", r"line 2 \(stage 1\): expected 4 columns .* got 3"),
        ("T,n_S2,n_H2,n_H2S\n1500,5,5,5\n2000,5,abc,5\n", r"line 3 \(stage 2\), column n_H2: 'abc' is not a number"),
        ("T,n_S2,n_H2,n_H2S\n1500,-2,5,5\n", r"line 2 \(stage 1\), column n_S2: molecule count must not be negative"),
        ("T,n_S2,n_H2,n_H2S\n1500,5,5,5\n1500,5,5,40\n", r"line 3 \(stage 2\), column n_H2S: 40 is outside"),
        ("T,n_S2,n_H2,n_H2S\n5000,5,5,5\n", r"line 2 \(stage 1\), column T: 5000 is outside .*750-3750 K"),
        ("T,S2,H2,H2S\n1500,5,5,5\n", r"line 1: header must be T,n_S2,n_H2,n_H2S"),
        ("T,n_S2,n_H2,n_H2S\n", r"no stage rows"),
    ],
)
def test_bad_schedule_file_is_one_line_error(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, _, err = run_cli(capsys, "cvd", "rmd", "--schedule", path, "--out", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("mapcvd: error: ")
    assert str(path) in lines[0]
    import re

    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_missing_schedule_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "cvd", "rmd", "--schedule", tmp_path / "nope.csv", "--out", tmp_path / "o")
    assert code == 1 and err.strip() == f"mapcvd: error: schedule file not found: {tmp_path / 'nope.csv'}"


def _config(tmp_path, **cvd) -> str:
    path = tmp_path / "c.toml"
    path.write_text("[cvd]\n" + "".join(f"{k} = {v}\n" for k, v in cvd.items()))
    return path


def test_rmd_command_writes_stage_table_and_frames(tmp_path, capsys):
    import ase.io

    config = _config(tmp_path, n_mo=8, stage_ps=0.01, vacuum_A=30.0)
    schedule = tmp_path / "s.csv"
    schedule.write_text("T,n_S2,n_H2,n_H2S\n1200,2,2,1\n1800,3,1,2\n")
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "cvd", "rmd", "--schedule", schedule, "--out", out,
                                "--config", config, "--seed", 3)
    assert code == 0, err
    assert "stage 1/2: T 1200 K" in stdout and "stage 2/2: T 1800 K" in stdout and "done:" in stdout
    with open(out / "stages.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["stage"]) for r in rows] == [1, 2]
    assert [int(r["gas_S2"]) for r in rows] == [2, 3] and [int(r["gas_H2S"]) for r in rows] == [1, 2]
    assert float(rows[1]["T_target_K"]) == 1800.0
    assert abs(sum(float(rows[0][f"f_{p}"]) for p in ("2H", "1T", "defect")) - 1.0) < 1e-6
    summary = json.loads((out / "rmd.json").read_text())
    assert summary["seed"] == 3 and summary["settings"]["n_mo"] == 8 and len(summary["n_atoms"]) == 2
    assert 0 < summary["md_seconds"] <= summary["wall_seconds"]
    frames = ase.io.read(out / "frames.extxyz", index=":")
    assert [len(f) for f in frames] == summary["n_atoms"]
    assert frames[1].info["stage"] == 2 and MOLECULE_ARRAY in frames[1].arrays
    np.testing.assert_allclose(read_schedule(out / "schedule.csv"), [[1200, 2, 2, 1], [1800, 3, 1, 2]])


def test_rmd_command_failure_is_one_line(tmp_path, capsys):
    config = _config(tmp_path, n_mo=8, vacuum_A=10.0)
    schedule = tmp_path / "s.csv"
    schedule.write_text("T,n_S2,n_H2,n_H2S\n1200,7,7,6\n")
    code, _, err = run_cli(capsys, "cvd", "rmd", "--schedule", schedule, "--out", tmp_path / "o", "--config", config)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("mapcvd: error: stage 1/1 (T 1200 K): no room")


def test_rmd_command_bad_config_is_one_line(tmp_path, capsys):
    config = _config(tmp_path, n_mo=7)
    schedule = tmp_path / "s.csv"
    schedule.write_text("T,n_S2,n_H2,n_H2S\n1200,1,1,1\n")
    code, _, err = run_cli(capsys, "cvd", "rmd", "--schedule", schedule, "--out", tmp_path / "o", "--config", config)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "cvd.n_mo" in err
