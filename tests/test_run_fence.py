"""Run tokens (issue 14): a newer run fences off every writer of an earlier one.

The fast tests here check the store layer (:mod:`mapcvd.store.fence`) and the claim
(:mod:`mapcvd.workflows.run_guard`) on real Zarr stores and real processes; the
campaign-level SIGKILL tests are in ``test_sigkill_resume.py`` (heavy).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from mapcvd.errors import InputError
from mapcvd.store import create_campaign, open_campaign
from mapcvd.store.fence import FencedError, FencedStore, begin_run, note_parsl, read_run, run_token
from mapcvd.store.replay import ActorWriter, create_replay
from mapcvd.store.replay_spec import ReplaySpec
from mapcvd.workflows.run_guard import claim_store, earlier_run_processes

SPEC = ReplaySpec(channels=1, points=4, n_actors=1, capacity=16, chunk=4)


def _transition(spec: ReplaySpec, g: int) -> dict:
    grid = np.full((spec.channels, spec.points, spec.points, spec.points), g, dtype=spec.state_dtype)
    return {"state": grid, "next_state": grid, "action": 1, "reward": float(g), "discount": 0.9, "done": False,
            "priority0": 1.0, "episode": 0, "step": g, "energy": 0.0, "position": np.zeros(3, np.float32)}


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "c.zarr"
    create_campaign(path, config={"campaign": {"seed": 1}})
    return path


def test_tokens_increase_and_the_record_names_this_process(store):
    assert read_run(store) is None  # a store from before run tokens
    assert begin_run(store) == 1 and begin_run(store) == 2
    record = read_run(store)
    assert record["token"] == 2 and record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert abs(record["pid_started"] - psutil.Process().create_time()) < 1.0


def test_a_writer_of_an_earlier_run_stops_without_writing(store):
    old = open_campaign(store, "r+", token=begin_run(store))
    assert isinstance(old.store, FencedStore) and run_token(old) == 1
    create_replay(old, SPEC)
    writer = ActorWriter(old, 0, SPEC)
    for g in range(4):
        writer.add(_transition(SPEC, g))  # a whole chunk: written and committed
    assert writer.committed == 4
    begin_run(store)  # a newer run takes the store
    for g in range(4, 6):
        writer.add(_transition(SPEC, g))
    with pytest.raises(FencedError, match="run 1 stopped without writing .* run 2 now holds"):
        writer.flush()
    with pytest.raises(FencedError):
        old.attrs["stages"] = {}
    fresh = open_campaign(store, "r")
    assert int(fresh["map/replay/actor_000/committed"][0]) == 4  # the counter never moved
    assert fresh["map/replay/actor_000/reward"][4:8].tolist() == [0.0] * 4  # no row of the fenced chunk
    assert "stages" in fresh.attrs and fresh.attrs["stages"] == {}  # root attributes as created


def test_the_current_run_writes_and_an_unfenced_open_is_unchanged(store):
    group = open_campaign(store, "r+", token=begin_run(store))
    group.attrs["note"] = "mine"
    plain = open_campaign(store, "r+")
    assert run_token(plain) is None and not isinstance(plain.store, FencedStore)
    begin_run(store)
    plain.attrs["note"] = "library use is not fenced"
    assert open_campaign(store, "r").attrs["note"] == "library use is not fenced"


def test_note_parsl_records_processes_only_for_the_run_holding_the_store(store):
    group = open_campaign(store, "r+", token=begin_run(store))
    note_parsl(group, "/tmp/run-a", [(123, 4.5)])
    assert read_run(store)["parsl"] == [{"run_dir": "/tmp/run-a", "pids": [[123, 4.5]]}]
    begin_run(store)
    with pytest.raises(FencedError):
        note_parsl(group, "/tmp/run-b", [])
    assert read_run(store)["parsl"] == []


def test_claim_refuses_a_live_run_of_this_host(store, tmp_path):
    script = (f"import time; from mapcvd.store.fence import begin_run; begin_run({str(store)!r}); "
              "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(InputError, match=f"another mapcvd run \\(PID {proc.pid}, started .*\\) is writing"):
            claim_store(store)
        assert read_run(store)["pid"] == proc.pid  # the refusal took nothing
    finally:
        proc.kill()
        proc.wait(timeout=30)
    group = claim_store(store)  # its driver is gone: the store can be taken
    assert run_token(group) == 2 and read_run(store)["pid"] == os.getpid()


def test_claim_ends_the_recorded_processes_of_a_killed_run(store, tmp_path, caplog):
    """A dead driver's left-over processes (a stand-in interchange by PID, a stand-in pool by run dir) end."""
    run_dir = tmp_path / "runinfo" / "000"
    run_dir.mkdir(parents=True)
    sleeper = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    interchange = subprocess.Popen([sys.executable, "-c", sleeper])
    pool = subprocess.Popen([sys.executable, "-c", sleeper, "process_worker_pool", f"--logdir={run_dir}/x"])
    unrelated = subprocess.Popen([sys.executable, "-c", sleeper])
    driver = subprocess.Popen([sys.executable, "-c", (
        "from mapcvd.store import open_campaign; from mapcvd.store.fence import begin_run, note_parsl; "
        f"import psutil; p = {str(store)!r}; g = open_campaign(p, 'r+', token=begin_run(p)); "
        f"note_parsl(g, {str(run_dir)!r}, [({interchange.pid}, psutil.Process({interchange.pid}).create_time()), "
        f"({unrelated.pid}, 1.0)])")])
    try:
        assert driver.wait(timeout=60) == 0  # the driver is gone; what it started is not
        record = read_run(store)
        assert {p.pid for p in earlier_run_processes(record)} == {interchange.pid, pool.pid}
        start = time.monotonic()
        claim_store(store)
        assert time.monotonic() - start < 15
        for proc in (interchange, pool):
            proc.wait(timeout=5)  # gone (psutil reaped them, so the exit code reads 0)
            assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
        assert "with kill" in caplog.text  # they ignored SIGTERM: killed
        assert unrelated.poll() is None  # a PID whose start time differs from the record is left alone
    finally:
        for proc in (interchange, pool, unrelated):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def test_run_stage_records_the_run_that_started_each_stage(store):
    from mapcvd.store import run_stage, stage_runs, stage_statuses

    first = claim_store(store)
    run_stage(first, "map_train", lambda: None)
    second = claim_store(store)  # this process again: its earlier run is over, the claim takes the store
    assert run_token(second) == 2
    with pytest.raises(FencedError):  # the first run's handle can no longer mark a stage
        run_stage(first, "cvd_nade", lambda: None)
    run_stage(second, "cvd_nade", lambda: None)
    assert stage_runs(open_campaign(store, "r")) == {"map_train": 1, "cvd_nade": 2}
    assert stage_statuses(open_campaign(store, "r")) == {"map_train": "done", "cvd_nade": "done"}


def test_the_dashboard_warns_of_stages_left_running_by_a_dead_run(store):
    from mapcvd.dashboard import collect

    script = ("from mapcvd.store import open_campaign, set_stage_status; from mapcvd.store.fence import begin_run; "
              f"p = {str(store)!r}; set_stage_status(open_campaign(p, 'r+', token=begin_run(p)), 'map_train', 'running')")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)  # then the driver is gone
    warnings = collect(open_campaign(store, "r"), path=store)["warnings"]
    assert any(w["source"] == "run" and "map_train read running, but run 1" in w["message"]
               and "is gone" in w["message"] for w in warnings), warnings
    claim_store(store)  # a live run holds the store now: no such warning
    assert not any(w["source"] == "run" for w in collect(open_campaign(store, "r"), path=store)["warnings"])
