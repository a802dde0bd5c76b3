"""The smoke campaign: real ReaxFF apps through Parsl into the Zarr store."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mapcvd.config import validate
from mapcvd.store import open_campaign, open_or_create_campaign, stage_statuses
from mapcvd.workflows.sites import load_site
from mapcvd.workflows.smoke import run_smoke

TINY = {
    "campaign": {"site": "threads"},
    "structures": {"moo3_mo": 8, "gas_S2": 1, "gas_H2S": 1, "gas_H2": 1},
    "smoke": {"water_actions": 3, "steps_per_action": 60, "tether_step_A": 0.5, "moo3_steps": 20},
}


@pytest.mark.timeout(600)
def test_smoke_graph_on_threads_writes_store(tmp_path):
    config = validate(TINY)
    group, created = open_or_create_campaign(tmp_path / "c.zarr", config=config)
    assert created
    lines = []
    # one thread: two LAMMPS instances must not run at once in one process
    site = load_site("threads", run_dir=str(tmp_path / "runinfo"), max_threads=1)
    summary = run_smoke(config, group, site, log=lines.append)
    assert stage_statuses(group) == {"structures": "done", "smoke_md": "done"}
    assert summary["water_moves"] == 3 and summary["moo3_steps"] == 20
    assert summary["moo3_atoms_kept"]
    # the water followed its tether along +x (3 moves of 0.5 A, 30 fs each)
    assert 0.2 < summary["water_o_dx_A"] < 1.6
    stored = open_campaign(tmp_path / "c.zarr", mode="r")
    energies = stored["smoke/results/water/energy_eV"][:]
    assert energies.shape == (3,) and np.all(np.isfinite(energies))
    assert stored["smoke/results/moo3/temperature_K"].shape == (20,)
    numbers = stored["smoke/structures/silica_water/numbers"][:]
    assert sorted(set(numbers.tolist())) == [1, 8, 14]
    assert any("submitted 2 ReaxFF apps" in line for line in lines)
