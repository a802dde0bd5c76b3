"""The per-process compute clock and task records behind benchmarks/campaign_overhead.py.

The LAMMPS case uses a cheap stand-in potential (``lj/cut``), as these tests say.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from ase import Atoms

from mapcvd import timing
from mapcvd.md.engine import Engine
from mapcvd.md.potentials import lammps_commands


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_measure_counts_cpu_of_its_block_once_when_nested():
    clock = timing.ComputeClock()
    with clock.measure("torch"):
        _burn(0.05)
        with clock.measure("torch"):  # nested: not counted twice
            _burn(0.05)
    time.sleep(0.05)  # outside any block
    totals = clock.snapshot()
    assert 0.09 <= totals["torch_cpu"] <= 0.5
    assert totals["torch_wall"] >= totals["torch_cpu"] * 0.9
    assert totals["lammps_cpu"] == 0.0 and totals["lammps_wall"] == 0.0


def test_sleeping_in_a_block_costs_wall_not_cpu():
    clock = timing.ComputeClock()
    with clock.measure("lammps"):
        time.sleep(0.1)
    totals = clock.snapshot()
    assert totals["lammps_wall"] >= 0.09
    assert totals["lammps_cpu"] < 0.05


def test_engine_runs_are_counted_as_lammps():
    atoms = Atoms("Ar8", positions=np.random.default_rng(0).uniform(0, 8, (8, 3)), cell=[9, 9, 9], pbc=True)
    potential = lammps_commands(["pair_style lj/cut 4.0", "pair_coeff * * 0.0104 3.4"], ("Ar",), units="metal",
                                name="lj-standin")
    before = timing.clock.snapshot()
    with Engine(atoms, potential) as engine:
        engine.command("run 2000")
    after = timing.clock.snapshot()
    assert after["lammps_cpu"] - before["lammps_cpu"] > 0.0
    assert after["torch_cpu"] == before["torch_cpu"]


def test_record_app_writes_one_line_per_task_only_when_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(timing.TIMING_DIR_ENV, raising=False)

    @timing.timed_app
    def task(x):
        with timing.measure("torch"):
            _burn(0.03)
        return 2 * x

    assert task(3) == 6
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(timing.TIMING_DIR_ENV, str(tmp_path))
    assert task(4) == 8
    with pytest.raises(ZeroDivisionError), timing.record_app("failing"):
        1 / 0
    lines = (tmp_path / f"{os.getpid()}.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["name"] for r in rows] == ["task", "failing"]
    assert [r["ok"] for r in rows] == [True, False]
    assert rows[0]["torch_cpu"] >= 0.025 and rows[0]["cpu"] >= rows[0]["torch_cpu"]
    assert rows[0]["process_cpu"] >= rows[0]["cpu"] - 1e-3
    assert rows[0]["end"] >= rows[0]["start"] and rows[0]["pid"] == os.getpid()
    assert task.__name__ == "task"
