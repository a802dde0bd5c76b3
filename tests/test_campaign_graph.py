"""The whole campaign graph (``mapcvd campaign run``): MAP and CVD branches in one Parsl run.

A tiny ReaxFF MAP system (one actor, a few seconds of training, short NEB) and tiny
staged reactive-MD runs (8-Mo slab, 2 stages of 5 fs) on the ``threads`` site: one
app at a time on ``"cpu"`` (two LAMMPS instances must not run in two threads at
once), the learner on ``"gpu"``. Resume is checked by failing the CVD branch on the
first run, then continuing. The local HighThroughputExecutor site runs the same
through the command line in a test marked heavy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mapcvd.workflows.campaign import STAGES, CampaignError, campaign_site, run_campaign

from mapcvd.config import validate
from mapcvd.store import (
    open_campaign,
    open_or_create_campaign,
    read_array_checkpoint,
    stage_statuses,
)
from mapcvd.store.cvd_dataset import RunTable
from mapcvd.store.layout import DATASET_PATH, VALIDATION_PATH
from mapcvd.store.episodes import EpisodeLog
from mapcvd.store.weights import read_weights

torch.set_num_threads(1)

TINY = {
    "campaign": {"seed": 5, "site": "threads", "name": "tiny"},
    "map": {"relax_steps": 5, "max_actions": 6, "grid_points": 8, "minutes": 0.15, "actors": 1,
            "replay_capacity": 64, "replay_chunk": 4, "learning_starts": 4, "publish_every": 2,
            "publish_seconds": 0.0, "batch": 8, "conv_channels": "4 8", "hidden": 16, "eval_episodes": 1,
            "paths_top": 1, "neb_images": 2, "neb_max_steps": 5, "neb_climb": False},
    "cvd": {"n_mo": 8, "n_stages": 2, "stage_ps": 0.005, "relax_iterations": 0},
    "cvd_learning": {"runs": 3, "retries": 0, "nade_encoder": "8", "nade_lstm": 8, "nade_decoder": "8",
                     "nade_epochs": 5, "agent_updates": 3, "agent_batch": 4, "agent_eval_episodes": 8,
                     "agent_best": 2, "validate_top": 1, "reference_updates": 3,
                     "optimise_starts": 2, "optimise_steps": 3},
}


def broken_rmd(schedule, cvd_table, seed):
    """A reactive-MD run that always fails (the CVD branch stops at its first stage)."""
    raise RuntimeError("no MD today")


def counts(group) -> dict:
    """What each stage has stored so far (to see that a resumed campaign redoes nothing)."""
    out = {"actor_episodes": len(EpisodeLog(group, "map/episodes/actor_000")), "weights": read_weights(group)[1]}
    for policy in ("greedy", "random"):
        out[policy] = len(EpisodeLog(group, f"map/evaluation/{policy}"))
    if DATASET_PATH in group:
        out["dataset_done"] = RunTable.open(group, DATASET_PATH).counts()["done"]
    for name in ("cvd/nade/weights", "cvd/agent/policy", "cvd/agent_paper/policy"):
        if name in group:
            out[name] = read_array_checkpoint(group, name)[1]
    if VALIDATION_PATH in group:
        out["validation_done"] = RunTable.open(group, VALIDATION_PATH).counts()["done"]
    if "map/pathways" in group:
        out["pathways"] = sorted(group["map/pathways"].group_keys())
    return out


def test_whole_graph_on_threads_then_resume_skips_done_stages(tmp_path):
    config = validate(TINY)
    path = tmp_path / "c.zarr"
    group, _ = open_or_create_campaign(path, config=config, seeds={"campaign": 5})
    lines: list[str] = []
    # first run: the CVD branch fails at its first stage, MAP goes on to the end
    with pytest.raises(CampaignError, match="cvd_dataset"):
        run_campaign(config, group, str(path), campaign_site("threads", str(tmp_path / "ri1"), config),
                     log=lines.append, run_fn=broken_rmd)
    stages = stage_statuses(group)
    assert all(stages[s] == "done" for s in ("map_train", "map_evaluate_greedy", "map_evaluate_random",
                                             "map_paths")), stages
    assert stages["cvd_dataset"] == "failed"
    assert all(stages[s] == "pending" for s in ("cvd_nade", "cvd_agent", "cvd_validate"))
    after_map = counts(group)
    assert after_map["greedy"] == after_map["random"] == 1 and after_map["weights"] > 0
    assert "baseline" in after_map["pathways"]

    # second run: MAP stages are skipped (nothing appended), the CVD branch runs to the end
    lines.clear()
    summary = run_campaign(config, group, str(path), campaign_site("threads", str(tmp_path / "ri2"), config),
                           log=lines.append)
    assert summary["stages"] == {s: "done" for s in STAGES}
    assert stage_statuses(group) == {s: "done" for s in STAGES}
    for stage in ("map_train", "map_evaluate_greedy", "map_evaluate_random", "map_paths"):
        assert f"{stage}: done before, skipped" in lines
    done = counts(group)
    map_keys = ("actor_episodes", "weights", "greedy", "random", "pathways")
    assert {k: done[k] for k in map_keys} == {k: after_map[k] for k in map_keys}
    assert after_map["dataset_done"] == 0
    assert done["dataset_done"] == 3 and done["validation_done"] == 1
    assert done["cvd/nade/weights"] == 1 and done["cvd/agent/policy"] == 1
    report = RunTable.open(group, VALIDATION_PATH).attrs["report"]
    assert report["rows_done"] == [0] and set(report["mae"]) == {"2H", "1T", "defect"}
    assert set(summary["results"]) == {"cvd_dataset", "cvd_nade", "cvd_agent", "cvd_validate"}
    assert np.isfinite(summary["results"]["cvd_agent"]["comparison"]["random"])

    # third run: everything done, nothing run again
    lines.clear()
    run_campaign(config, group, str(path), campaign_site("threads", str(tmp_path / "ri3"), config),
                 log=lines.append)
    assert counts(group) == done
    assert sum("done before, skipped" in line for line in lines) == len(STAGES)

    # training resumed after its budget (map.minutes, counted by the learner) was spent: nothing more trains
    from mapcvd.store.metrics import trained_seconds
    from mapcvd.store import set_stage_status
    from mapcvd.store.learner_state import LearnerReplay

    replay = LearnerReplay(group)
    replay.checkpoint(replay.step, meta={**replay.meta, "trained_seconds": 60.0 * config["map"]["minutes"] + 5})
    assert trained_seconds(group) > 60.0 * config["map"]["minutes"]
    set_stage_status(group, "map_train", "pending")
    lines.clear()
    run_campaign(config, group, str(path), campaign_site("threads", str(tmp_path / "ri4"), config),
                 log=lines.append)
    assert any("min left" in line and line.startswith("map_train:") for line in lines), lines
    assert counts(group) == done and stage_statuses(group)["map_train"] == "done"

    # the report: one HTML page with the figures the store supports and the summary table
    from mapcvd.report import write_campaign_report

    report = write_campaign_report(open_campaign(path, "r"), tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert report["notes"] == [], report["notes"]
    names = {os.path.basename(f) for f in report["figures"]}
    assert {"map_training.png", "comparison.png", "nade_loss.png", "agent_learning_curve.png",
            "validation_trajectories.png"} <= names
    for figure in report["figures"]:
        assert open(figure, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.relpath(figure, tmp_path / "report") in page
    assert "Best pathways" in page and "agent vs random" in page and "NADE-CVD held-out error" in page
    assert "NEB bands converged:" in page and " segments" in page
    assert report["summary"]["stages"] == {s: "done" for s in STAGES}


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("toml, words", [
    ("[map]\nactorz = 2\n", ["map.actorz", "allowed"]),
    ("[cvd_learning]\nruns = 'many'\n", ["cvd_learning.runs", "int"]),
    ("[map]\nminutes = -1\n", ["map.minutes", ">= 0.05"]),
    ("[cvd_learning]\nnade_encoder = 'wide'\n", ["cvd_learning.nade_encoder", "widths"]),
    ("[campaign]\nsite = 'threads'\n", ["threads site", "map.actors = 1"]),
    ("[cvd_learning]\nsurrogate = 'papr'\n", ["cvd_learning.surrogate", "unknown surrogate"]),
    ("[cvd_learning]\nreference_surrogate = 'store'\n", ["cvd_learning.reference_surrogate", "'none'"]),
    ("[cvd_learning]\nreference_surrogate = 'mine.pt'\n", ["cvd_learning.reference_surrogate", "mine.pt"]),
])
def test_bad_config_fails_before_any_work_naming_the_key(tmp_path, toml, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    result = cli("campaign", "run", cfg, "--store", tmp_path / "c.zarr", "--no-dashboard")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mapcvd: error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "c.zarr").exists()


def test_resume_without_a_store_is_refused(tmp_path):
    result = cli("campaign", "run", "--store", tmp_path / "none.zarr", "--resume", "--no-dashboard")
    assert result.returncode != 0 and "no store exists" in result.stderr
    result = cli("campaign", "report", tmp_path / "none.zarr")
    assert result.returncode != 0 and result.stderr.startswith("mapcvd: error: ") and "none.zarr" in result.stderr


def test_ctrl_c_leaves_unfinished_stages_pending_then_resumes(tmp_path):
    table = {**TINY, "map": {**TINY["map"], "minutes": 0.2}}
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(_toml(table))
    store = tmp_path / "c.zarr"
    args = [sys.executable, "-m", "mapcvd.cli", "campaign", "run", str(cfg), "--store", str(store), "--no-dashboard"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            time.sleep(0.5)
            if (store / "zarr.json").is_file() and stage_statuses(open_campaign(store, "r")).get("map_train") == "running":
                break
        else:
            raise AssertionError("map_train never started")
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and stderr.strip().startswith("mapcvd: error: "), stderr[-2000:]
    assert "unfinished stages left pending" in stdout
    stages = stage_statuses(open_campaign(store, "r"))
    assert set(stages) == set(STAGES)
    assert set(stages.values()) <= {"pending", "done"}, stages  # never left running or failed
    assert stages["cvd_validate"] == "pending"
    again = cli("campaign", "run", "--store", store, "--resume", "--no-dashboard")
    assert again.returncode == 0, again.stderr[-2000:]
    assert stage_statuses(open_campaign(store, "r")) == {s: "done" for s in STAGES}


def _toml(table: dict) -> str:
    out = []
    for section, keys in table.items():
        out.append(f"[{section}]")
        for k, v in keys.items():
            out.append(f"{k} = {v!r}".replace("True", "true").replace("False", "false").replace("'", '"'))
    return "\n".join(out) + "\n"


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_campaign_run_command_on_local_htex(tmp_path):
    """The command on the local HighThroughputExecutor site: apps in worker processes (pickled)."""
    table = {**TINY, "campaign": {**TINY["campaign"], "site": "local"}, "map": {**TINY["map"], "actors": 2}}
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(_toml(table))
    store = tmp_path / "c.zarr"
    result = cli("campaign", "run", cfg, "--store", store, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done: campaign 'tiny' on site 'local'" in result.stdout
    assert stage_statuses(open_campaign(store, "r")) == {s: "done" for s in STAGES}
    again = cli("campaign", "run", "--store", store, "--resume", timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("done before, skipped") == len(STAGES)
    report = cli("campaign", "report", store, "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "index.html").is_file()


@pytest.mark.heavy
@pytest.mark.timeout(1200)
def test_readme_demo_finishes_every_stage_within_15_minutes(tmp_path):
    """Issue 6's acceptance: `mapcvd campaign run` (the packaged demo, local site) in <= 15 min, then a report."""
    store = tmp_path / "demo.zarr"
    start = time.perf_counter()
    result = cli("campaign", "run", "--store", store, "--no-dashboard", timeout=1200)
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    assert stage_statuses(open_campaign(store, "r")) == {s: "done" for s in STAGES}
    assert wall <= 15 * 60, f"the demo took {wall:.0f} s"
    report = cli("campaign", "report", store, "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert len(list((tmp_path / "report").glob("*.png"))) >= 5


def _wait_for(predicate, store, timeout=120.0, what=""):
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.1)
        try:
            if (store / "zarr.json").is_file() and predicate(open_campaign(store, "r")):
                return
        except Exception:  # noqa: BLE001 - the store may be caught mid-write: look again
            continue
    raise AssertionError(f"timed out waiting for {what}")


def test_campaign_on_local_gets_the_mpi_executor_for_multi_rank_apps(tmp_path):
    """``neb_driver = "lammps"`` (a band of one rank per image) or ranks above 1 add ``local``'s ``mpi`` executor."""
    def executors(**map_keys):
        config = validate({"map": {"actors": 1, **map_keys}})
        return [ex.label for ex in campaign_site("local", str(tmp_path / "ri"), config).executors]

    assert "mpi" not in executors()
    assert "mpi" not in executors(neb_driver="ase", neb_images=6)
    assert "mpi" in executors(neb_driver="lammps", neb_images=2)
    assert "mpi" in executors(ranks_per_actor=2)
