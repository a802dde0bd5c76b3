"""A campaign driver killed with SIGKILL at six points, on the local HighThroughputExecutor site (issue 14).

Each run of ``mapcvd campaign run`` is killed (no handler runs) as soon as one of the
kill points not yet used is reached: early and late in MAP training, during the greedy
evaluation, the pathways, the CVD dataset and the agent. The next run resumes the
store. At the end every stage is done, every committed transition, episode and
reactive-MD run is there exactly once, and no process of a killed run is alive.

The killed runs' interchanges and worker pools are real Parsl processes (the
``local`` site); the next run ends them (:mod:`mapcvd.workflows.run_guard`) and
fences their writers off with a new run token (:mod:`mapcvd.store.fence`). A last
test checks that, with no new run, they end by themselves within a minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from test_campaign_graph import TINY, _toml, _wait_for

from mapcvd.store import open_campaign, stage_info, stage_runs, stage_statuses
from mapcvd.store.cvd_dataset import RunTable
from mapcvd.store.episodes import EpisodeLog
from mapcvd.store.fence import read_run
from mapcvd.store.layout import DATASET_PATH, STAGES, evaluation_path
from mapcvd.store.learner_state import LearnerReplay

pytestmark = pytest.mark.heavy

RUNS = 6
CONFIG = {**TINY, "campaign": {**TINY["campaign"], "site": "local"},
          # a ring far larger than what the actor writes: the learner never overruns it (lost stays 0)
          "map": {**TINY["map"], "minutes": 0.6, "eval_episodes": 3, "replay_capacity": 1024},
          "cvd": {**TINY["cvd"], "stage_ps": 0.05},
          "cvd_learning": {**TINY["cvd_learning"], "runs": RUNS, "agent_updates": 400}}
ACTOR_LOG = "map/episodes/actor_000"


def _running(group, stage: str) -> bool:
    """``stage`` is running in the run that holds the store now (not left ``running`` by a killed one)."""
    record = read_run(group.store.root)
    return stage_statuses(group).get(stage) == "running" and record is not None and \
        stage_runs(group).get(stage) == record["token"]


def _training(group, early: bool) -> bool:
    if not _running(group, "map_train") or len(EpisodeLog(group, ACTOR_LOG)) < 1:
        return False
    left = stage_info(group).get("map_train", {}).get("deadline", 0.0) - time.time()
    return left > 12.0 if early else 0.0 < left < 10.0


def _dataset_part_done(group) -> bool:
    return _running(group, "cvd_dataset") and DATASET_PATH in group and \
        1 <= RunTable.open(group, DATASET_PATH).counts()["done"] < RUNS


KILL_POINTS = {
    "early MAP training": lambda g: _training(g, early=True),
    "late MAP training": lambda g: _training(g, early=False),
    "greedy evaluation": lambda g: _running(g, "map_evaluate_greedy"),
    "pathways": lambda g: _running(g, "map_paths"),
    "CVD dataset": _dataset_part_done,
    "CVD agent": lambda g: _running(g, "cvd_agent"),
}


def _alive(record: dict) -> list:
    """Processes of the run of ``record`` still alive: its interchanges (PID and start time) and pools."""
    from mapcvd.workflows.run_guard import earlier_run_processes

    return [p for p in earlier_run_processes(record) if p.status() != psutil.STATUS_ZOMBIE]


def _start(cfg, store):
    args = [sys.executable, "-m", "mapcvd.cli", "campaign", "run", str(cfg), "--store", str(store), "--no-dashboard"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.timeout(1500)
def test_sigkill_at_six_points_then_resume_loses_and_repeats_nothing(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(_toml(CONFIG))
    store = tmp_path / "c.zarr"
    left, killed_runs, committed_seen = dict(KILL_POINTS), [], 0
    for _ in range(len(KILL_POINTS) + 2):
        if not left:
            break
        proc = _start(cfg, store)
        hit = []
        try:
            def reached(group):
                record = read_run(store)
                if record is None or record["pid"] != proc.pid:
                    return False  # this run has not taken the store yet: what it shows is the killed run's
                hit.extend(name for name, predicate in left.items() if predicate(group))
                return bool(hit)

            _wait_for(reached, store, timeout=240, what=f"one of {sorted(left)}")
        finally:
            proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
        for name in hit:
            left.pop(name, None)
        record = read_run(store)
        assert record["pid"] == proc.pid  # the killed run held the store and recorded its Parsl processes
        killed_runs.append(record)
        group = open_campaign(store, "r")
        if "map/replay/actor_000" in group:
            committed = int(group["map/replay/actor_000/committed"][0])
            assert committed >= committed_seen  # commit counters only grow, across every run
            committed_seen = committed
    assert not left, f"kill points never reached: {sorted(left)}"
    assert [r["token"] for r in killed_runs] == list(range(1, len(killed_runs) + 1))

    final = subprocess.run([sys.executable, "-m", "mapcvd.cli", "campaign", "run", "--store", str(store), "--resume",
                            "--no-dashboard"], capture_output=True, text=True, timeout=900,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert final.returncode == 0, final.stderr[-3000:]
    group = open_campaign(store, "r")
    assert stage_statuses(group) == {s: "done" for s in STAGES}
    # no process of any killed run is alive (the resumed runs ended what each left)
    for record in killed_runs:
        assert _alive(record) == [], f"run {record['token']} left {_alive(record)}"
    # MAP: episodes numbered once each, transitions committed once, none lost by the learner
    episodes = EpisodeLog(group, ACTOR_LOG).summary()["episode"]
    np.testing.assert_array_equal(episodes, np.arange(len(episodes)))
    committed = int(group["map/replay/actor_000/committed"][0])
    assert committed >= committed_seen
    learner = LearnerReplay(group)
    assert learner.lost.tolist() == [0] and learner.cursors[0] <= committed
    assert committed > 0
    for policy in ("greedy", "random"):  # the killed evaluation kept its episodes and ran only the missing ones
        assert len(EpisodeLog(group, evaluation_path(policy))) == CONFIG["map"]["eval_episodes"]
    # CVD: every planned run done exactly once
    runs = RunTable.open(group, DATASET_PATH)
    assert runs.n_runs == RUNS and runs.counts()["done"] == RUNS


@pytest.mark.timeout(600)
def test_parsl_processes_of_a_killed_driver_end_by_themselves_within_a_minute(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(_toml({**CONFIG, "map": {**CONFIG["map"], "minutes": 2.0}}))
    store = tmp_path / "c.zarr"
    proc = _start(cfg, store)
    try:
        _wait_for(lambda g: _training(g, early=True), store, timeout=240, what="MAP training")
        record = read_run(store)
        assert len(record["parsl"]) == 1 and len(record["parsl"][0]["pids"]) == 2  # cpu and gpu interchanges
        assert _alive(record), "the run's Parsl processes should be alive before the kill"
    finally:
        proc.kill()
        proc.wait(timeout=60)
    killed = time.monotonic()
    while _alive(record) and time.monotonic() - killed < 60:
        time.sleep(1.0)
    gone_after = time.monotonic() - killed
    assert _alive(record) == [], f"still alive {gone_after:.0f} s after the driver was killed"
