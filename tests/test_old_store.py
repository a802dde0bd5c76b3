"""A store written by the previous release (68c1b82) still opens and resumes with this one.

``fixtures/store_68c1b82.tgz`` holds a tiny campaign store written by mapcvd at commit
68c1b82 (the last release before the settings, pathways, replay and stage-runner
changes): ``map train`` (1 actor, 195-atom silica + water, ReaxFF), ``map evaluate``,
``cvd dataset`` (2 runs of 2 short stages of an 8-Mo slab), ``cvd nade`` and ``cvd agent``,
all from the ``old.toml`` it contains. Made with, in a checkout of that commit::

    mapcvd map train old.toml --store s.zarr && mapcvd map evaluate s.zarr --episodes 1
    mapcvd cvd dataset --store s.zarr --config old.toml
    mapcvd cvd nade --store s.zarr && mapcvd cvd agent --store s.zarr

Every command of this release continues it without losing or rewriting what was there.
"""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mapcvd.store import open_campaign, read_array_checkpoint, stage_statuses
from mapcvd.store.episodes import EpisodeLog
from mapcvd.store.layout import DATASET_PATH, NADE_WEIGHTS
from mapcvd.store.weights import read_weights

FIXTURE = Path(__file__).parent / "fixtures" / "store_68c1b82.tgz"


def mapcvd(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def old_store(tmp_path):
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "s.zarr"


def test_a_store_of_the_previous_release_opens_and_resumes(old_store, tmp_path):
    root = open_campaign(old_store, "r")
    log = EpisodeLog(root, "map/episodes/actor_000")
    episodes, summary = len(log), log.summary()
    version = read_weights(root)[1]
    committed = int(root["map/replay/actor_000/committed"][0])
    dataset_z = np.array(root[f"{DATASET_PATH}/Z"][:2])
    nade_version = read_array_checkpoint(root, NADE_WEIGHTS)[1]
    assert episodes >= 1 and version > 0 and committed > 0 and np.isfinite(dataset_z).all()
    assert set(stage_statuses(root).values()) == {"done"}

    status = mapcvd("campaign", "status", old_store)
    assert "map_train" in status and "cvd_dataset" in status

    # MAP: training continues the same replay, episode log and weights
    mapcvd("map", "train", "--store", old_store, "--minutes", 0.1)
    root = open_campaign(old_store, "r")
    log = EpisodeLog(root, "map/episodes/actor_000")
    assert len(log) > episodes and read_weights(root)[1] > version
    assert int(root["map/replay/actor_000/committed"][0]) > committed
    for field in ("return", "progress_A", "actions"):  # the old episodes are as they were
        np.testing.assert_array_equal(log.summary()[field][:episodes], summary[field])
    evaluated = json.loads(mapcvd("map", "evaluate", old_store, "--episodes", 1, "--policy", "straight",
                                  "--json").strip().splitlines()[-1])
    assert evaluated["policy"] == "straight" and evaluated["mean_actions"] >= 1
    assert len(EpisodeLog(open_campaign(old_store, "r"), "map/evaluation/greedy")) == 1  # the old one kept

    # CVD: the dataset grows by one run, the old runs kept; NADE and the agent train again on it
    mapcvd("cvd", "dataset", "--store", old_store, "--runs", 3)
    root = open_campaign(old_store, "r")
    z = np.array(root[f"{DATASET_PATH}/Z"][:3])
    np.testing.assert_array_equal(z[:2], dataset_z)
    assert np.isfinite(z[2]).all()
    mapcvd("cvd", "nade", "--store", old_store, "--out", tmp_path / "figs")
    assert read_array_checkpoint(open_campaign(old_store, "r"), NADE_WEIGHTS)[1] == nade_version + 1
    mapcvd("cvd", "agent", "--store", old_store, "--updates", 2, "--out", tmp_path / "figs")
    statuses = stage_statuses(open_campaign(old_store, "r"))
    assert {statuses[s] for s in ("map_train", "map_evaluate_straight", "cvd_dataset", "cvd_nade", "cvd_agent")} \
        == {"done"}


def test_a_trained_store_refuses_another_map_config(old_store, tmp_path, capsys):
    """``map train`` and ``campaign run`` with a config that changes what MAP learns stop in one line naming
    the keys, before any work; a budget (``minutes``) or the site may change."""
    from cli_helpers import assert_one_line_error, cli

    before = sorted((p.relative_to(old_store).as_posix(), p.stat().st_mtime_ns) for p in old_store.rglob("*"))
    stored = (tmp_path / "old.toml").read_text()
    changed = tmp_path / "changed.toml"
    changed.write_text(stored.replace("max_actions = 6", "max_actions = 12").replace("hidden = 16", "hidden = 32")
                       .replace("minutes = 0.15", "minutes = 0.3"))
    code, _, err = cli(capsys, "map", "train", changed, "--store", old_store)
    assert_one_line_error(code, err, "map.max_actions 6 -> 12", "map.hidden 16 -> 32")
    assert "minutes" not in err
    code, _, err = cli(capsys, "map", "train", "--store", old_store, "--actors", 2)
    assert_one_line_error(code, err, "map.actors 1 -> 2")
    code, _, err = cli(capsys, "campaign", "run", changed, "--store", old_store, "--no-dashboard")
    assert_one_line_error(code, err, "map.max_actions 6 -> 12")
    after = sorted((p.relative_to(old_store).as_posix(), p.stat().st_mtime_ns) for p in old_store.rglob("*"))
    assert after == before  # nothing written
    from mapcvd.commands.common import refuse_changed_map_config
    from mapcvd.config import load_config

    refuse_changed_map_config(old_store, load_config(tmp_path / "old.toml", overrides={"map": {"minutes": 5.0}}))
