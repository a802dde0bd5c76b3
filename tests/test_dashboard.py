"""The live dashboard: snapshots of a store (MAP, NEB, CVD), rich panels rendered headless, plain lines,
``campaign status --json`` while another process writes the store, and ``--watch`` (finish, Ctrl-C)."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from rich.console import Console

from mapcvd.dashboard import (
    collect,
    finished,
    plain_lines,
    render,
    snapshot_json,
    watch,
)
from mapcvd.store import (
    create_campaign,
    open_campaign,
    set_stage_status,
    write_array_checkpoint,
)
from mapcvd.store.cvd_dataset import RunTable, check_result
from mapcvd.store.layout import DATASET_PATH
from mapcvd.store.episodes import EpisodeWriter
from mapcvd.store.learner_state import LearnerReplay
from mapcvd.store.replay import create_replay
from mapcvd.store.replay_spec import ReplaySpec

NOW = 1_800_000_000.0
SUMMARY = ("episode", "actions", "return", "progress_A", "epsilon", "crossed", "failed", "seconds", "start_time")
CONFIG = {"campaign": {"name": "dashtest"}, "map": {"minutes": 10.0, "actors": 2}}


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd="/tmp", **kwargs)


def headless(snapshot) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(render(snapshot))
    return console.export_text()


def episode(writer: EpisodeWriter, k: int, progress: float, ret: float, failed: int = 0) -> None:
    summary = {"episode": k, "actions": 3, "return": ret, "progress_A": progress, "epsilon": 0.4, "crossed": 0,
               "failed": failed, "seconds": 2.0, "start_time": NOW - 60 + k}
    writer.append(summary, {"energy": np.arange(3.0)})


def map_store(path):
    """A store with two actors' logs, learner metrics, a greedy evaluation and two NEB pathways (no LAMMPS)."""
    root = create_campaign(path, config=CONFIG)
    set_stage_status(root, "map_train", "running")
    create_replay(root, ReplaySpec(channels=1, points=2, n_actors=2, capacity=8, chunk=4))
    for actor, (aps, failures) in enumerate(((1.0, 0), (2.0, 2))):
        writer = EpisodeWriter(root, f"map/episodes/actor_{actor:03d}", n_atoms=2, summary_fields=SUMMARY,
                               step_fields={"energy": ()}, frames=False)
        for k in range(3 + actor):
            episode(writer, k, progress=1.5 * k + actor, ret=-2.0 + k, failed=int(actor == 1 and k == 0))
        writer.set_status({"episodes": writer.count, "actions": 100, "epsilon": 0.4 / (1 + actor),
                           "last_progress_A": 4.25, "last_return": 1.5, "actions_per_s": aps, "weights_version": 6,
                           "failures": failures, "time": NOW - 5})
    learner = LearnerReplay(root)
    for step in (2, 4, 6):
        learner.log_metrics(step, {"loss": 0.5 / step, "replay_size": 40 + step, "samples_per_s": 123.0,
                                   "weights_version": step, "lost": 3.0, "ingested": 50 + step, "beta": 0.4})
    greedy = EpisodeWriter(root, "map/evaluation/greedy", n_atoms=2, summary_fields=SUMMARY,
                           step_fields={"energy": ()}, frames=False)
    for k, p in enumerate((7.0, 9.0)):
        episode(greedy, k, progress=p, ret=3.0)
    return root


def add_pathways(root):
    from mapcvd.pathways.store import begin_pathway, write_ranking, write_segment

    set_stage_status(root, "map_paths", "running")
    seg = {"energies": np.zeros(3), "coordinate": np.arange(3.0), "positions": np.zeros((3, 2, 3)),
           "barrier_forward_eV": 0.7, "barrier_backward_eV": 0.5, "steps": 10, "fmax_eV_A": 0.05,
           "seconds": 1.0, "driver": "test", "ts_index": 1, "climbed": True}
    begin_pathway(root, "greedy_e0000", np.zeros(5), np.arange(5.0), [(0, 1, 2), (2, 3, 4), (4, 5, 6)])
    write_segment(root, "greedy_e0000", 0, {**seg, "converged": True})
    write_segment(root, "greedy_e0000", 1, {**seg, "converged": False})
    begin_pathway(root, "actor_000_e0002", np.zeros(3), np.arange(3.0), [(0, 1, 2)])
    write_ranking(root, [{"label": "actor_009_e0001", "n_segments": 2, "barriers_eV": [0.7, 0.91],
                          "time_scaled_days": 12.5, "converged": True}], {}, None)  # an earlier run's


def cvd_store(path):
    root = create_campaign(path, config=CONFIG)
    set_stage_status(root, "cvd_dataset", "failed")
    table = RunTable.create(root, DATASET_PATH, n_stages=2, attrs={"seed": 1})
    table.extend(np.full((3, 2, 4), 1.0))
    result = {"schedule": np.ones((2, 4)), "fractions": np.tile([0.5, 0.25, 0.25], (2, 1)),
              "gas_counts": np.ones((2, 3)), "temperature_K": np.full(2, 1000.0), "energy_eV": np.zeros(2),
              "species": np.zeros((2, 6)), "n_atoms": np.full(2, 30), "md_seconds": 4.0, "wall_seconds": 90.0}
    table.record_result(0, check_result(result, 2), seed=1, attempts=1)
    table.record_failure(1, "LostAtomsError: lost atoms at step 120", seed=2, attempts=2)
    write_array_checkpoint(root, "cvd/nade/results", {"train_nll": np.array([0.3, -0.4, -1.0]),
                                                      "val_nll": np.array([0.1, -0.9, -1.25])},
                           version=1, meta={"nade_version": 1, "epochs_run": 3, "best_epoch": 2,
                                            "best_val_nll": -1.25})
    write_array_checkpoint(root, "cvd/agent/results", {"mean_return": np.array([0.1, 0.2, 0.35])}, version=1,
                           meta={"policy_version": 1, "updates": 3,
                                 "expected_return": {"agent": 0.3, "random": 0.2, "ratio": 1.5}})
    return root


# ------------------------------------------------------------------- snapshots
def test_map_snapshot_figures_eta_and_warnings(tmp_path):
    root = map_store(tmp_path / "m.zarr")
    add_pathways(root)
    snap = collect(open_campaign(tmp_path / "m.zarr", "r"), path="m.zarr", now=NOW)
    json.loads(snapshot_json(snap))  # strict JSON, no NaN
    actors = snap["map"]["actors"]
    assert [a["episodes"] for a in actors] == [3, 4]
    assert actors[1]["failures"] == 2 and actors[1]["best_progress_A"] == 5.5
    assert snap["map"]["learner"]["updates"] == 6 and snap["map"]["learner"]["loss"] == pytest.approx(0.5 / 6)
    assert snap["map"]["evaluation"]["greedy"]["best_progress_A"] == 9.0
    # both actors started 100 actions / (1 or 2 actions/s) before their status at NOW - 5: the earlier one counts
    assert snap["map"]["training"]["started"] == pytest.approx(NOW - 105)
    p = snap["progress"]["map_train"]
    assert p["total"] == 600 and p["done"] == pytest.approx(105) and p["eta_s"] == pytest.approx(495)
    neb = snap["neb"]
    assert (neb["segments_total"], neb["segments_done"], neb["segments_running"], neb["pathways"]) == (4, 2, 2, 2)
    messages = " | ".join(f"{w['source']}: {w['message']}" for w in snap["warnings"])
    assert "actor 1: 2 LAMMPS failure(s)" in messages and "3 transition(s) lost" in messages
    assert "segment_001 did not converge" in messages
    assert "could not read" not in messages
    assert not finished(snap)


def test_map_dashboard_renders_every_panel(tmp_path):
    root = map_store(tmp_path / "m.zarr")
    add_pathways(root)
    text = headless(collect(root, path="m.zarr", now=NOW))
    for title in ("Stages", "MAP pathfinder", "MAP actors", "MAP learner", "MAP evaluation", "NEB pathways",
                  "Warnings and errors"):
        assert title in text, title
    assert "campaign dashtest" in text
    assert "map_train" in text and "1:45 of 10:00" in text and "ETA 8:15" in text
    assert "2/4 segments" in text and "2 running" in text
    assert "actor_009_e0001" in text and "0.91" in text and "12.5" in text  # the ranking of pathways
    assert "+4.25" in text and "v6" in text  # an actor row: last progress, weights version
    assert "0.08333" in text and "123" in text  # learner loss and samples/s
    assert "+9" in text  # best greedy progress
    assert "2 LAMMPS failure(s)" in text


def test_a_group_that_cannot_be_read_is_a_warning_not_a_crash(tmp_path):
    map_store(tmp_path / "m.zarr")
    (tmp_path / "m.zarr/map/learner/metrics/step/zarr.json").write_text("{not json")
    snap = collect(open_campaign(tmp_path / "m.zarr", "r"), now=NOW)
    assert "learner" not in snap["map"] and len(snap["map"]["actors"]) == 2  # the other readers go on
    assert any(w["source"] == "map" and "could not read map_learner" in w["message"] for w in snap["warnings"])
    assert "could not read map_learner" in headless(snap)


def test_empty_campaign_renders_and_prints(tmp_path):
    root = create_campaign(tmp_path / "e.zarr", config={"test": True})
    snap = collect(root)
    assert snap["stages"] == {} and snap["warnings"] == [] and "map" not in snap and "cvd" not in snap
    assert not finished(snap)  # nothing recorded yet: a watcher waits for the driver
    text = headless(snap)
    assert "Stages" in text and "no stages recorded yet" in text and "Warnings and errors" in text
    assert "MAP actors" not in text and "CVD synthesis" not in text
    assert plain_lines(snap)[1] == "stages: none recorded yet"


def test_cvd_failed_run_message_in_warnings_panel(tmp_path):
    cvd_store(tmp_path / "c.zarr")
    snap = collect(open_campaign(tmp_path / "c.zarr", "r"), now=NOW)
    d = snap["cvd"]["dataset"]
    assert (d["done"], d["failed"], d["pending"], d["total"], d["mean_run_s"]) == (1, 1, 1, 3, 90.0)
    assert snap["progress"]["cvd_dataset"]["done"] == 1 and snap["progress"]["cvd_dataset"]["total"] == 3
    assert snap["warnings"][0]["level"] == "error"
    text = headless(snap)
    assert "CVD synthesis" in text and "1 done, 1 failed, 1 pending of 3 runs" in text
    assert "Warnings and errors" in text
    warnings = text[text.index("Warnings and errors"):]
    assert "cvd/dataset run 1" in warnings and "lost atoms at step 120" in warnings and "2 attempt(s)" in warnings
    assert "stage cvd_dataset" in warnings
    assert "NADE-CVD" in text and "-1.25" in text  # NADE validation NLL
    assert "0.35" in text and "x1.5" in text  # agent's last mean return, agent / random
    assert finished(snap)


def test_plain_lines(tmp_path):
    root = map_store(tmp_path / "m.zarr")
    cvd_store(tmp_path / "c.zarr")
    lines = plain_lines(collect(root, path="m.zarr", now=NOW))
    assert lines[0].startswith("campaign dashtest (m.zarr) at ")
    assert "stage map_train: running, 1:45 of 10:00 (18%), ETA 8:15" in lines
    assert any(line.startswith("MAP actor 1: 4 episodes, 100 actions") for line in lines)
    assert any(line.startswith("MAP learner: 6 updates, loss 0.08333") for line in lines)
    assert any(line.startswith("WARNING: learner: 3 transition(s) lost") for line in lines)
    cvd = plain_lines(collect(open_campaign(tmp_path / "c.zarr", "r"), now=NOW))
    assert "CVD dataset: 1 done, 1 failed, 1 pending of 3 runs (mean run 1:30)" in cvd
    assert any(line.startswith("ERROR: cvd/dataset run 1: failed after 2 attempt(s): LostAtomsError") for line in cvd)
    assert all("\x1b" not in line for line in lines + cvd)


# ------------------------------------------------------------------- the CLI
WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from mapcvd.store import open_campaign, set_stage_status
    from mapcvd.store.episodes import EpisodeWriter
    from mapcvd.store.learner_state import LearnerReplay
    path, ready, stop = sys.argv[1:]
    root = open_campaign(path, "r+")
    set_stage_status(root, "map_train", "running")
    writer = EpisodeWriter(root, "map/episodes/actor_000", n_atoms=2, summary_fields=("return", "progress_A"),
                           step_fields={"energy": ()}, frames=False)
    learner = LearnerReplay(root)
    k, deadline = 0, time.time() + 30
    while not os.path.exists(stop) and time.time() < deadline:
        writer.append({"return": k, "progress_A": 0.1 * k}, {"energy": np.arange(k % 300, dtype=float)})
        writer.set_status({"episodes": writer.count, "actions": k, "actions_per_s": 1.0, "time": time.time()})
        learner.log_metrics(k + 1, {"loss": 1.0 / (k + 1), "lost": 0.0})
        k += 1
        if k == 3:
            open(ready, "w").close()
    set_stage_status(root, "map_train", "done")
""")


def test_status_json_while_another_process_writes(tmp_path):
    path = tmp_path / "live.zarr"
    root = create_campaign(path, config=CONFIG)
    create_replay(root, ReplaySpec(channels=1, points=2, n_actors=1, capacity=8, chunk=4))
    (tmp_path / "writer.py").write_text(WRITER)
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, str(tmp_path / "writer.py"), str(path), str(ready), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while not ready.exists():
            assert writer.poll() is None, writer.communicate()
            assert time.time() < deadline, "the writer did not start"
            time.sleep(0.05)
        seen = []
        for _ in range(4):
            result = cli("campaign", "status", path, "--json")
            assert result.returncode == 0, result.stderr
            snap = json.loads(result.stdout)
            assert snap["name"] == "dashtest" and snap["stages"] == {"map_train": "running"}
            assert not [w for w in snap["warnings"] if "could not read" in w["message"]], snap["warnings"]
            seen.append((snap["map"]["actors"][0]["episodes"], snap["map"]["learner"]["updates"]))
        assert writer.poll() is None  # every call overlapped with the writes
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err
    assert seen == sorted(seen) and seen[-1][0] > seen[0][0] and seen[-1][1] > seen[0][1]
    plain = cli("campaign", "status", path)  # stdout is a pipe: plain lines
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("campaign dashtest (") and "stage map_train: done" in plain.stdout
    assert "\x1b" not in plain.stdout and "╭" not in plain.stdout


def test_status_missing_store_is_one_line_error(tmp_path):
    result = cli("campaign", "status", tmp_path / "none.zarr", "--watch")
    assert result.returncode == 1 and result.stderr.startswith("mapcvd: error: no campaign store")
    assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------- watch
def test_watch_plain_refreshes_until_every_stage_finishes(tmp_path):
    root = map_store(tmp_path / "m.zarr")
    out = io.StringIO()
    waits = []

    def driver_finishes(seconds):  # the campaign driver moves on while the dashboard sleeps
        waits.append(seconds)
        set_stage_status(root, "map_train", "done" if len(waits) == 2 else "running")

    code = watch(tmp_path / "m.zarr", 0.5, Console(file=out, width=120), sleep=driver_finishes)
    assert code == 0 and waits == [0.5, 0.5]
    text = out.getvalue()
    assert text.count("campaign dashtest") == 3
    assert text.count("stage map_train: running") == 2 and text.rstrip().count("stage map_train: done") == 1


def test_watch_ctrl_c_and_live_display(tmp_path):
    map_store(tmp_path / "m.zarr")
    out = io.StringIO()

    def interrupt(seconds):
        raise KeyboardInterrupt

    assert watch(tmp_path / "m.zarr", 1.0, Console(file=out, width=120), sleep=interrupt) == 0
    assert out.getvalue().count("campaign dashtest") == 1
    tty = io.StringIO()  # a terminal: the rich Live display, interrupted the same way
    assert watch(tmp_path / "m.zarr", 1.0, Console(file=tty, width=120, force_terminal=True), sleep=interrupt) == 0
    assert "MAP actors" in tty.getvalue() and "\x1b[" in tty.getvalue()
    # JSON lines, stopped after two refreshes
    lines = io.StringIO()
    assert watch(tmp_path / "m.zarr", 0.0, Console(file=lines), as_json=True, max_updates=2, sleep=lambda s: None) == 0
    snaps = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert len(snaps) == 2 and snaps[0]["map"]["learner"]["updates"] == 6


@pytest.mark.skipif(os.name != "posix", reason="SIGINT")
def test_cli_watch_exits_zero_on_sigint(tmp_path):
    map_store(tmp_path / "m.zarr")
    proc = subprocess.Popen([sys.executable, "-m", "mapcvd.cli", "campaign", "status", str(tmp_path / "m.zarr"),
                             "--watch", "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/tmp")
    try:
        first = proc.stdout.readline()  # the first refresh is out: the watcher is in its loop
        assert first.startswith("campaign dashtest"), first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "error" not in err


def test_a_finished_stage_is_read_once_then_replayed(tmp_path, monkeypatch):
    """A live dashboard redraws every few seconds: what a done stage holds is read once."""
    from mapcvd import dashboard

    group = create_campaign(tmp_path / "c.zarr", config=CONFIG)
    calls = []

    def reader(root, snap, now, history):
        calls.append(now)
        snap["progress"]["cvd_nade"] = {"done": len(calls), "total": 9}
        snap["warnings"].append({"level": "warning", "source": "nade", "message": f"read {len(calls)}"})
        return {"reads": len(calls)}

    monkeypatch.setattr(dashboard, "_READERS", (("cvd", reader, ("cvd_nade",)),))
    history: dict = {}
    set_stage_status(group, "cvd_nade", "running")
    assert [collect(group, history=history)["cvd"]["reads"] for _ in range(2)] == [1, 2]  # running: each time
    set_stage_status(group, "cvd_nade", "done")
    snaps = [collect(group, history=history) for _ in range(3)]
    assert len(calls) == 3  # read once when done, then replayed
    for snap in snaps:
        assert snap["cvd"] == {"reads": 3} and snap["progress"]["cvd_nade"] == {"done": 3, "total": 9}
        assert [w["message"] for w in snap["warnings"]] == ["read 3"]
    assert collect(group)["cvd"]["reads"] == 4  # without a history: always read
    set_stage_status(group, "cvd_nade", "running")  # run again: read afresh
    assert collect(group, history=history)["cvd"]["reads"] == 5
