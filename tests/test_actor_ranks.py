"""A MAP actor on two MPI ranks (``[map] ranks_per_actor``, issue 14).

Real ReaxFF on the shipped silica + water system, cut short (5 relaxation steps, 4
actions): the actor app on two ranks, one LAMMPS over both, must play the serial
actor's episode (same actions, chosen by rank 0 and broadcast; energies to round-off of
two domains) and write the replay ring and episode log once, from rank 0 only.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from mapcvd.config import validate
from mapcvd.map.training_settings import TrainingSettings
from mapcvd.store import create_campaign, open_campaign
from mapcvd.store.episodes import EpisodeLog
from mapcvd.store.layout import actor_episodes_path
from mapcvd.workflows.map_training import actor_task, prepare_map

CONFIG = validate({"campaign": {"seed": 4},
                   "map": {"relax_steps": 5, "max_actions": 4, "grid_points": 8, "actors": 1, "replay_capacity": 64,
                           "replay_chunk": 4, "conv_channels": "4 8", "hidden": 16}})


def _play(tmp_path, name: str, ranks: int) -> tuple:
    path = tmp_path / f"{name}.zarr"
    group = create_campaign(path, config=CONFIG)
    table = {**CONFIG["map"], "ranks_per_actor": ranks}
    prepare_map(group, table)
    summary = actor_task(str(path), table, TrainingSettings.from_table(table), 0, time.time() + 600,
                         CONFIG["campaign"]["seed"], 1, None)
    root = open_campaign(path, "r")
    log = EpisodeLog(root, actor_episodes_path(0))
    return summary, log, int(root["map/replay/actor_000/committed"][0])


@pytest.mark.timeout(600)
def test_an_actor_on_two_ranks_plays_the_serial_episode_and_writes_it_once(tmp_path):
    serial, serial_log, serial_committed = _play(tmp_path, "serial", 1)
    ranks, ranks_log, ranks_committed = _play(tmp_path, "ranks", 2)
    assert ranks["ranks"] == 2 and "ranks" not in serial  # rank 0's summary, from a world of 2
    assert serial["episodes"] == ranks["episodes"] == 1
    assert ranks["actions"] == serial["actions"] and ranks["transitions"] == serial["transitions"]
    assert len(ranks_log) == len(serial_log) == 1  # one episode, logged once (rank 0)
    assert ranks_committed == serial_committed == serial["transitions"]
    np.testing.assert_array_equal(ranks_log.steps(0)["action"], serial_log.steps(0)["action"])
    np.testing.assert_allclose(ranks_log.steps(0)["energy"], serial_log.steps(0)["energy"], rtol=0, atol=1e-2)


def test_map_train_refuses_more_actor_ranks_than_cores_before_any_work(tmp_path):
    import subprocess
    import sys

    from mapcvd.workflows.site_common import cores

    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[campaign]\nsite = 'local'\n[map]\nranks_per_actor = {cores() + 1}\n")
    store = tmp_path / "m.zarr"
    done = subprocess.run([sys.executable, "-m", "mapcvd.cli", "map", "train", str(cfg), "--store", str(store)],
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert f"map.ranks_per_actor = {cores() + 1} is more than the {cores()} cores" in lines[0]
    assert not store.exists()
