"""Pathway segmentation (mapcvd.pathways.segments) and ``mapcvd map paths`` on a stored episode.

The end-to-end test uses a cheap stand-in for ReaxFF: an interstitial (He) dragged
along +x through a Lennard-Jones fcc crystal, whose profile has one barrier per half
lattice constant; the episode is played by the real MAP environment and stored as an
evaluation log, then refined by piecewise NEB on the ``threads`` site.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mapcvd.config import defaults, validate
from mapcvd.errors import InputError
from mapcvd.map.episode import STEP_FIELDS, SUMMARY_FIELDS, log_rows, play_episode
from mapcvd.store.layout import evaluation_path
from mapcvd.map.system import build_system
from mapcvd.pathways.segments import Segment, profile_of, segment_profile, stitch
from mapcvd.pathways.store import begin_pathway, read_pathway, read_ranking, write_segment
from mapcvd.store import create_campaign, open_campaign, stage_statuses
from mapcvd.store.atoms import write_atoms
from mapcvd.store.episodes import EpisodeWriter

#: A refined (NEB) saddle may exceed the raw profile's highest frame of its segment by at most this (eV):
#: the raw frames are MD snapshots at 10 K under the tether, sampled every action, so the band can cross
#: a ridge between two of them a little higher than either; any more means the NEB left the pathway.
RAW_MAX_TOLERANCE_EV = 0.05

LJ = "pair_style lj/cut 5.0; pair_coeff 1 1 0.2 2.5; pair_coeff 1 2 0.1 1.6; pair_coeff 2 2 0.01 1.5"


# ------------------------------------------------------------------ segmentation
def test_profile_is_cut_minimum_maximum_minimum():
    e = np.array([0.0, 0.5, 1.6, 0.7, 0.2, 0.9, 2.1, 1.0, 0.4, 0.45, 0.6])
    segments = segment_profile(e, prominence=0.5)
    assert segments == [Segment(0, 2, 4), Segment(4, 6, 8)]  # contiguous: one segment ends where the next starts
    assert segments[1].raw_barriers(e) == pytest.approx((1.9, 1.7))
    noisy = e + 0.02 * np.sin(np.arange(len(e)) * 2.5)
    assert [(s.start, s.peak, s.end) for s in segment_profile(noisy, 0.5)] == [(0, 2, 4), (4, 6, 8)]
    assert segment_profile(e, prominence=5.0) == []  # nothing that high
    assert segment_profile(np.linspace(0, 3, 9), prominence=0.1) == []  # still climbing: no minimum after
    with pytest.raises(InputError):
        segment_profile(e, prominence=0.0)
    np.testing.assert_allclose(profile_of(-1.0, [0.5, 0.25]), [-1.0, 0.5, 0.25])


def test_stitched_profile_keeps_a_shared_minimum_once():
    first = {"energies": [0.0, 1.0, 0.2], "coordinate": [0.0, 1.0, 2.0]}
    second = {"energies": [0.2, 0.5, 1.5, -0.1], "coordinate": [2.0, 2.5, 3.0, 3.5]}
    out = stitch([first, second])
    np.testing.assert_allclose(out["energy"], [0.0, 1.0, 0.2, 0.5, 1.5, -0.1])
    np.testing.assert_allclose(out["coordinate"], [0.0, 1.0, 2.0, 2.5, 3.0, 3.5])
    np.testing.assert_array_equal(out["segment"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(out["ts"], [1, 4])
    assert stitch([])["energy"].size == 0


def test_ranking_puts_barrier_free_first_and_unconverged_apart():
    from mapcvd.pathways.store import pathway_status, rank_key

    conv, unconv = {"converged": True}, {"converged": False}
    rows = [
        {"label": "slow", "time_scaled_s": 10.0, "status": pathway_status([conv, conv])},
        {"label": "unconverged_fast", "time_scaled_s": 1e-6, "status": pathway_status([conv, unconv])},
        {"label": "flat", "time_scaled_s": None, "status": pathway_status([])},
        {"label": "fast", "time_scaled_s": 0.1, "status": pathway_status([conv])},
    ]
    assert [r["status"] for r in rows] == ["converged", "unconverged", "no barrier", "converged"]
    # no barrier above the prominence: the fastest; an unconverged band never ranks among converged ones
    assert [r["label"] for r in sorted(rows, key=rank_key)] == ["flat", "fast", "slow", "unconverged_fast"]


def test_candidates_without_a_barrier_are_refined_first():
    """``map paths --top K`` refines the K fastest candidates; one with no barrier is the fastest of all."""
    from mapcvd.pathways.store import candidate_key

    candidates = [("b_slow", 5.0, 2), ("a_fast", 0.5, 1), ("z_flat", 0.0, 0), ("c_flat", 0.0, 0)]
    order = sorted(candidates, key=lambda c: candidate_key(c[1], c[2], c[0]))
    assert [c[0] for c in order] == ["c_flat", "z_flat", "a_fast", "b_slow"]
    assert candidate_key(float("inf"), 0, "x") < candidate_key(1e-9, 1, "x")  # whatever time a flat one carries


# ------------------------------------------------------------------ end to end
def _lj_system():
    a = 2 ** (1 / 6) * 2.5 * np.sqrt(2)
    host = bulk("Ar", "fcc", a=a, cubic=True).repeat((3, 3, 3))
    atoms = host + Atoms("He", positions=[[0.25 * a, 0.25 * a, 0.25 * a]])
    table = dict(defaults()["map"], guided="108", elements="Ar He", lammps_commands=LJ, max_actions=16,
                 relax_steps=20, grid_points=8, neb_images=5, neb_fmax_eV_A=0.05, neb_max_steps=400)
    return atoms, table


def _make_lj_store(path, site: str, **keys):
    """A store with one evaluation episode (mostly +x, some sideways moves) of the LJ system; keys over [map]."""
    atoms, table = _lj_system()
    config = validate({"campaign": {"site": site, "seed": 5}, "map": {**table, **keys}})
    root = create_campaign(path, config=config)
    system = build_system(config["map"], atoms)
    write_atoms(root, "map/structure", atoms, attrs={"source": "test", "guided": system.guided.tolist()})
    env = system.environment(seed=3)
    moves = iter([0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 2, 0, 0, 4, 0])
    try:
        played = play_episode(env, lambda state: (next(moves), None))
        summary, steps, frames = log_rows(env, played, episode=0, epsilon=0.0, weights_version=-1)
    finally:
        env.close()
    writer = EpisodeWriter(root, evaluation_path("greedy"), n_atoms=len(atoms), summary_fields=SUMMARY_FIELDS,
                           step_fields=STEP_FIELDS, frames=True)
    writer.append(summary, steps, frames)


def _map_paths(path, out, *extra):
    result = subprocess.run(
        [sys.executable, "-m", "mapcvd.cli", "map", "paths", str(path), "--top", "1", "--temperature", "350C",
         "--distance", "3", "--out", str(out), "--json", *map(str, extra)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lj_store(tmp_path_factory):
    """The LJ store refined by ``map paths`` on the threads site."""
    path = tmp_path_factory.mktemp("paths") / "lj.zarr"
    _make_lj_store(path, "threads")
    out = path.parent / "report"
    return path, out, _map_paths(path, out, "--prominence", 0.3)


def _check_refined_below_raw(root, label, tolerance):
    """Every refined saddle of pathway ``label`` is at most ``tolerance`` above its segment's raw maximum."""
    data = read_pathway(root, label)
    for k, (start, peak, end) in enumerate(data["segments"]):
        raw_max = data["raw_energy"][start : end + 1].max()
        assert raw_max == pytest.approx(data["raw_energy"][peak])
        assert data["segments_data"][k]["energies"].max() <= raw_max + tolerance, (label, k)
    return data


def test_refined_barriers_stay_below_the_raw_maxima(lj_store):
    path, _, printed = lj_store
    root = open_campaign(path, "r")
    stored = read_ranking(root)
    rows = stored["ranking"] + [stored["baseline"]]
    assert [r["label"] for r in rows] == ["greedy_e0000", "baseline"]
    for row in rows:
        data = _check_refined_below_raw(root, row["label"], RAW_MAX_TOLERANCE_EV)
        assert row["n_segments"] >= 2 and len(data["segments"]) == row["n_segments"]
        assert row["converged"], row
        assert row["status"] == "converged" and row["converged_segments"] == row["n_segments"]
        for k, (start, _, _) in enumerate(data["segments"]):
            refined = data["segments_data"][k]["energies"]
            assert refined[0] <= data["raw_energy"][start] + 1e-6  # the endpoint was minimised
            assert row["barriers_eV"][k] == pytest.approx(refined.max() - refined[0])
        # TST over the refined barriers, scaled from the pathway's length to 3 nm
        kT = 8.617333262e-5 * 623.15
        expected = 7.7016e-14 * np.exp(np.array(row["barriers_eV"]) / kT).sum() * 30.0 / row["length_A"]
        assert row["time_scaled_s"] == pytest.approx(expected, rel=1e-3)
        assert len(data["refined_energy"]) == 1 + 6 * row["n_segments"]  # 7 images, shared minima once
    assert printed["ranking"][0]["label"] == "greedy_e0000" and printed["baseline"]["label"] == "baseline"
    assert stage_statuses(root)["map_paths"] == "done"


def test_report_files_for_ovito(lj_store):
    path, out, printed = lj_store
    assert (out / "paths.csv").read_text().splitlines()[0].startswith("rank,label,source")
    assert len((out / "paths.csv").read_text().splitlines()) == 3  # header, greedy, baseline
    summary = json.loads((out / "paths.json").read_text())
    n = printed["ranking"][0]["n_segments"] + printed["baseline"]["n_segments"]
    assert summary["segments"] == summary["converged_segments"] == n  # the converged share, over both
    for name in ("profile_greedy_e0000.png", "profile_baseline.png", "comparison.png"):
        assert (out / name).stat().st_size > 10_000
    ts_files = sorted(out.glob("ts_greedy_e0000_seg*.extxyz"))
    assert len(ts_files) == printed["ranking"][0]["n_segments"]
    ts = ase.io.read(ts_files[0])
    assert ts.info["nearest_si_index"] == -1  # no Si in this stand-in system
    assert ts.arrays["guided"].sum() == 1 and ts.arrays["guided"][108]
    assert ts.arrays["displacement"].shape == (109, 3)
    assert ts.arrays["displacement_A"].argmax() == 108  # the dragged atom moved most
    assert ts.info["barrier_forward_eV"] == pytest.approx(printed["ranking"][0]["barriers_eV"][0])


def test_rerun_keeps_refined_segments_and_redoes_a_missing_one(lj_store, tmp_path):
    """A ``map paths`` stopped midway (here: one segment's group gone) redoes only what is missing."""
    path, _, printed = lj_store
    copy = tmp_path / "copy.zarr"
    shutil.copytree(path, copy)
    root = open_campaign(copy, "r+")
    group = root["map/pathways/greedy_e0000"]
    kept_before = dict(group["segment_000"].attrs)
    del group["segment_001"]
    again = _map_paths(copy, tmp_path / "report", "--prominence", 0.3)
    root = open_campaign(copy, "r")
    group = root["map/pathways/greedy_e0000"]
    assert dict(group["segment_000"].attrs) == kept_before  # not refined again (same seconds)
    assert "barrier_forward_eV" in group["segment_001"].attrs  # refined again
    assert again["ranking"][0]["barriers_eV"] == pytest.approx(printed["ranking"][0]["barriers_eV"], abs=1e-6)


def test_begin_pathway_keeps_segments_only_for_the_same_source(tmp_path):
    root = create_campaign(tmp_path / "p.zarr", config=validate({}))
    source = {"log": "map/evaluation/greedy", "episode": 0, "segments": [(0, 1, 2)], "neb": {"images": 5}}
    assert begin_pathway(root, "greedy_e0000", np.zeros(3), np.arange(3.0), [(0, 1, 2)], source=source) == {}
    result = {"energies": np.array([0.0, 0.4, 0.1]), "coordinate": np.arange(3.0), "positions": np.zeros((3, 2, 3)),
              "barrier_forward_eV": 0.4, "barrier_backward_eV": 0.3, "converged": True, "steps": 7,
              "fmax_eV_A": 0.01, "seconds": 1.5, "driver": "ase", "ts_index": 1, "climbed": True}
    write_segment(root, "greedy_e0000", 0, result)
    kept = begin_pathway(root, "greedy_e0000", np.zeros(3), np.arange(3.0), [(0, 1, 2)], source=source)
    assert list(kept) == [0] and kept[0]["seconds"] == 1.5
    np.testing.assert_array_equal(kept[0]["energies"], result["energies"])
    assert kept[0]["positions"].shape == (3, 2, 3)
    other = {**source, "neb": {"images": 7}}  # other NEB settings: start afresh
    assert begin_pathway(root, "greedy_e0000", np.zeros(3), np.arange(3.0), [(0, 1, 2)], source=other) == {}
    assert "segment_000" not in root["map/pathways/greedy_e0000"]


def test_evaluate_straight_drag_scores_crossing_actions_and_raw_barrier(tmp_path):
    """``map evaluate --policy straight``: +goal at every action; its figures are those of the stored episodes."""
    from mapcvd.md.engine import Engine
    from mapcvd.store.episodes import EpisodeLog

    path = tmp_path / "lj.zarr"
    _make_lj_store(path, "threads")
    done = subprocess.run([sys.executable, "-m", "mapcvd.cli", "map", "evaluate", str(path), "--policy", "straight",
                           "--episodes", "2", "--json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(printed) == {"policy", "episodes", "mean_progress_A", "mean_return", "crossed_fraction",
                            "mean_raw_barrier_eV", "mean_actions"}
    root = open_campaign(path, "r")
    log = EpisodeLog(root, evaluation_path("straight"))
    summary = log.summary()
    assert printed["policy"] == "straight" and printed["episodes"] == len(log) == 2
    atoms, table = _lj_system()
    system = build_system(validate({"map": table})["map"], atoms)
    barriers = []
    with Engine(system.atoms, system.potential) as engine:
        for k in range(2):
            steps = log.steps(k)
            assert np.all(steps["action"] == 0)  # +x every time
            assert np.all(np.diff(steps["agent"][:, 0]) == pytest.approx(table["delta_A"]))
            engine.set_positions(log.frames(k)[0])
            barriers.append(max(0.0, steps["energy"].max() - engine.potential_energy()))
    # 16 actions of 0.5 A do not cross the 3-cell (12.6 A) box: every episode is cut at the action limit
    assert printed["crossed_fraction"] == summary["crossed"].mean() == 0.0
    assert printed["mean_actions"] == summary["actions"].mean() == 16
    assert printed["mean_progress_A"] == pytest.approx(summary["progress_A"].mean())
    assert printed["mean_raw_barrier_eV"] == pytest.approx(np.mean(barriers), abs=1e-6)
    assert printed["mean_raw_barrier_eV"] > 0.05  # the He squeezes between Ar neighbours


# ------------------------------------------------------------------ heavier
@pytest.mark.heavy
def test_map_paths_with_worker_processes(tmp_path):
    """The same on the local site: arguments and results of the apps cross process boundaries (pickled)."""
    path = tmp_path / "lj.zarr"
    _make_lj_store(path, "local")
    printed = _map_paths(path, tmp_path / "report", "--prominence", 0.3, "--workers", 2, "--no-baseline")
    assert printed["baseline"] is None and len(printed["ranking"]) == 1
    assert printed["ranking"][0]["status"] in ("converged", "unconverged", "no barrier")
    root = open_campaign(path, "r")
    _check_refined_below_raw(root, "greedy_e0000", RAW_MAX_TOLERANCE_EV)
    assert printed["ranking"][0]["n_segments"] >= 2 and printed["ranking"][0]["converged"]


@pytest.mark.heavy
def test_lammps_neb_bands_run_on_parsls_mpi_executor_of_the_local_site(tmp_path):
    """``neb_driver = "lammps"``: each segment's band (one rank per image) is an app of the ``mpi`` executor
    (Parsl's MPIExecutor), its ranks started by ``$PARSL_MPI_PREFIX``; the band still relaxes below the raw maxima."""
    from test_slurm_cluster import launches

    path = tmp_path / "lj.zarr"
    _make_lj_store(path, "local", neb_driver="lammps", neb_images=3)
    printed = _map_paths(path, tmp_path / "report", "--prominence", 0.3, "--no-baseline")
    [row] = printed["ranking"]
    assert row["n_segments"] >= 2
    assert launches(Path(f"{path}.runinfo"))["segment_task"] == [(0, "mpi")] * row["n_segments"]
    data = _check_refined_below_raw(open_campaign(path, "r"), "greedy_e0000", RAW_MAX_TOLERANCE_EV)
    assert all(seg["attrs"]["driver"] == "lammps" for seg in data["segments_data"])


TINY_REAXFF = """
[campaign]
seed = 3
site = "threads"
[map]
relax_steps = 20
max_actions = 16
grid_points = 8
minutes = 0.3
actors = 1
replay_capacity = 64
replay_chunk = 4
learning_starts = 4
publish_every = 2
batch = 8
conv_channels = "4 8"
hidden = 16
neb_images = 3
neb_max_steps = 60
neb_fmax_eV_A = 0.2
"""

#: ReaxFF (QEq) bands may stop unconverged at 60 steps: a looser bound than for LJ.
REAXFF_TOLERANCE_EV = 0.25


@pytest.mark.heavy
def test_map_paths_on_a_reaxff_episode(tmp_path):
    """A real MAP episode (silica + water, ReaxFF): train briefly, evaluate, refine, rank."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_REAXFF)
    store = tmp_path / "s.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the brief training's greedy and training episodes may all go backwards (the learner's progress in
    # 18 s depends on the machine's speed); the straight-drag evaluation always gives a forward candidate
    for args in (["map", "train", cfg, "--store", store], ["map", "evaluate", store, "--episodes", 1],
                 ["map", "evaluate", store, "--episodes", 1, "--policy", "straight"]):
        done = subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=900, env=env)
        assert done.returncode == 0, done.stderr
    printed = _map_paths(store, tmp_path / "report", "--prominence", 0.05, "--min-length", 0.5)
    root = open_campaign(store, "r")
    labels = [r["label"] for r in printed["ranking"]] + ["baseline"]
    assert labels[0].startswith(("greedy_e", "actor_000_e", "straight_e"))
    for label in labels:
        data = _check_refined_below_raw(root, label, REAXFF_TOLERANCE_EV)
        assert len(data["raw_energy"]) >= 2
    assert stage_statuses(root)["map_paths"] == "done"
