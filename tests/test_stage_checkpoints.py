"""Stage checkpoints of staged reactive-MD runs (issue 14): store layer, resume, driver.

Staged reactive MD of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3. The store tests use plain arrays; the resume tests run
the real ReaxFF stages on a tiny 8-Mo slab (40 steps a stage, a few seconds); the
driver tests run on the ``threads`` site with stand-ins. The command-level kill test
(SIGKILL of ``mapcvd cvd dataset`` in a stage, then the same command again) is
:func:`test_dataset_command_killed_in_stage_3_resumes_at_stage_3`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from mapcvd.workflows.cvd_dataset import rmd_app, run_rmd, run_rows, takes_stages
from mapcvd.workflows.sites import load_site
from parsl.executors.high_throughput.errors import WorkerLost

from mapcvd.config import validate
from mapcvd.cvd.rmd import RmdSettings, StageState, run_key, run_schedule
from mapcvd.cvd.validation import md_seed
from mapcvd.errors import InputError
from mapcvd.store import create_campaign, open_campaign
from mapcvd.store.cvd_dataset import STATUS, RunTable
from mapcvd.store.fence import FencedError, begin_run, run_token
from mapcvd.store.layout import DATASET_PATH, STAGE_CHECKPOINT_KIND, stage_checkpoint_path
from mapcvd.store.stage_checkpoints import (
    StageCheckpoints,
    read_stage_checkpoint,
    write_stage_checkpoint,
)

PATH = stage_checkpoint_path(DATASET_PATH, 12)
KEY = {"format": 1, "seed": 7, "settings": {"n_mo": 8, "stage_ps": 0.01}, "schedule": [[1500.0, 2.0, 2.0, 1.0]]}
RNG = np.random.default_rng(3).bit_generator.state  # 128-bit integers inside


@pytest.fixture
def root(tmp_path):
    return create_campaign(tmp_path / "c.zarr", config={"campaign": {"seed": 1}})


def _arrays(stage: int) -> dict:
    return {"positions": np.arange(12, dtype=np.float64).reshape(4, 3) + 0.1 * stage,
            "numbers": np.array([42, 8, 16, 1], dtype=np.int64), "pbc": np.array([True, True, False]),
            "out_energy": -np.arange(stage, dtype=np.float64) - 0.123456789}


# --------------------------------------------------------------------- store layer
def test_layout_path_of_a_row():
    assert PATH == "cvd/dataset/checkpoints/row_000012"
    assert stage_checkpoint_path("cvd/validation_paper", 3) == "cvd/validation_paper/checkpoints/row_000003"


def test_write_read_round_trip_keeps_arrays_meta_and_the_last_two_stages(root, tmp_path):
    for stage in (1, 2, 3):
        write_stage_checkpoint(root, PATH, stage=stage, arrays=_arrays(stage), meta={"rng_state": RNG, "n": stage},
                               key=KEY)
    got = read_stage_checkpoint(open_campaign(tmp_path / "c.zarr", "r"), PATH, KEY)
    assert got.stage == 3 and got.meta == {"rng_state": RNG, "n": 3}
    for name, value in _arrays(3).items():
        assert got.arrays[name].dtype == value.dtype and got.arrays[name].tobytes() == value.tobytes()
    rng = np.random.default_rng()
    rng.bit_generator.state = got.meta["rng_state"]  # the generator's state comes back whole
    assert rng.random() == np.random.default_rng(3).random()
    group = root[PATH]
    assert group.attrs["kind"] == STAGE_CHECKPOINT_KIND and group.attrs["latest"] == 3
    assert sorted(group.group_keys()) == ["v2", "v3"]  # the committed stage and the one before it
    assert list(group["v3"].array_keys()) == ["state"]  # one packed array a stage


def test_a_checkpoint_of_another_attempt_is_ignored_and_replaced(root):
    write_stage_checkpoint(root, PATH, stage=2, arrays=_arrays(2), meta={}, key=KEY)
    other = dict(KEY, seed=8)
    assert read_stage_checkpoint(root, PATH, other) is None  # another seed
    assert read_stage_checkpoint(root, PATH, dict(KEY, schedule=[[1600.0, 2.0, 2.0, 1.0]])) is None
    assert read_stage_checkpoint(root, PATH, dict(KEY, settings={"n_mo": 8, "stage_ps": 0.02})) is None
    write_stage_checkpoint(root, PATH, stage=1, arrays=_arrays(1), meta={}, key=other)
    assert read_stage_checkpoint(root, PATH, KEY) is None  # the old attempt's stages are gone
    assert read_stage_checkpoint(root, PATH, other).stage == 1
    assert sorted(root[PATH].group_keys()) == ["v1"]


def test_a_half_written_stage_reads_as_the_previous_one(root, monkeypatch):
    from mapcvd.store import campaign

    write_stage_checkpoint(root, PATH, stage=1, arrays=_arrays(1), meta={"n": 1}, key=KEY)

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(campaign, "_commit_latest", killed)  # the data of stage 2 written, the marker not moved
        with pytest.raises(Killed):
            write_stage_checkpoint(root, PATH, stage=2, arrays=_arrays(2), meta={"n": 2}, key=KEY)
    assert "v2" in root[PATH]  # stage 2's data are there ...
    got = read_stage_checkpoint(root, PATH, KEY)
    assert got.stage == 1 and got.meta == {"n": 1}  # ... but stage 1 is what reads
    assert got.arrays["positions"].tobytes() == _arrays(1)["positions"].tobytes()
    write_stage_checkpoint(root, PATH, stage=2, arrays=_arrays(2), meta={"n": 2}, key=KEY)  # the leftover is replaced
    assert read_stage_checkpoint(root, PATH, KEY).stage == 2


def test_the_handle_pickles_and_a_stale_run_stops_at_its_next_write(tmp_path):
    store = tmp_path / "c.zarr"
    create_campaign(store, config={})
    token = begin_run(store)
    handle = StageCheckpoints(store, PATH, token)
    handle.save(1, _arrays(1), {}, key=KEY)
    copy = pickle.loads(pickle.dumps(handle))  # what a worker gets: path and token, no open store
    assert (copy.store_path, copy.path, copy.token, copy._root) == (str(store), PATH, token, None)
    copy.save(2, _arrays(2), {}, key=KEY)
    begin_run(store)  # a newer run takes the store
    with pytest.raises(FencedError):
        copy.save(3, _arrays(3), {}, key=KEY)
    assert copy.load(KEY).stage == 2  # the stale write left the stored stage as it was
    with pytest.raises(FencedError):
        copy.delete()


# ------------------------------------------------------------ resume of real MD
# Every stage of SCHEDULE changes the gas, so every stage builds a new engine.
SCHEDULE = np.array([[1500.0, 2, 2, 1], [1800.0, 3, 1, 2], [2000.0, 1, 3, 1], [1600.0, 2, 2, 2]])
CVD = {"n_mo": 8, "stage_ps": 0.01, "relax_iterations": 0, "n_stages": 4}
SEED = 4


class Killed(BaseException):
    """Stands for a SIGKILL right after a checkpoint was committed."""


def _fields(result) -> dict:
    timing = {"md_seconds", "wall_seconds", "build_seconds", "resumed_stages"}
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name not in timing}


def _assert_bitwise(a, b) -> None:
    fa, fb = _fields(a), _fields(b)
    for name, value in fa.items():
        if name == "frames":
            assert len(value) == len(fb[name])
            for x, y in zip(value, fb[name]):
                assert all(x[k].dtype == y[k].dtype and x[k].tobytes() == y[k].tobytes() for k in x), name
        elif isinstance(value, np.ndarray):
            assert value.dtype == fb[name].dtype and value.tobytes() == fb[name].tobytes(), name
        else:
            assert value == fb[name], name


@pytest.fixture(scope="module")
def uninterrupted():
    states = []
    result = run_schedule(SCHEDULE, RmdSettings.from_config(CVD), seed=SEED, on_stage=states.append)
    return result, states


def test_killed_after_stage_2_resumes_bitwise_as_the_uninterrupted_run(uninterrupted, tmp_path, monkeypatch):
    full, states = uninterrupted
    assert full.n_builds == 4 and (full.inserted[2].any() or full.removed[2].any())  # stage 3 builds an engine
    store = tmp_path / "c.zarr"
    create_campaign(store, config={})
    handle = StageCheckpoints(store, PATH)
    save = StageCheckpoints.save

    def save_then_die(self, stage, *args, **kwargs):
        save(self, stage, *args, **kwargs)
        if stage == 2:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(StageCheckpoints, "save", save_then_die)
        with pytest.raises(Killed):
            run_rmd(SCHEDULE, CVD, SEED, stages=handle)
    key = run_key(SCHEDULE, RmdSettings.from_config(CVD), SEED)
    stored = handle.load(key)
    assert stored.stage == 2
    assert stored.arrays["out_energy"].tobytes() == full.energy_eV[:2].tobytes()
    assert stored.meta["rng_state"] == states[1].rng_state

    resumed = run_rmd(SCHEDULE, CVD, SEED, stages=handle)
    assert resumed.resumed_stages == 2 and full.resumed_stages == 0
    _assert_bitwise(resumed, full)  # records, frames and n_builds, stage 1 to 4
    assert handle.load(key).stage == 4
    assert resumed.md_seconds > stored.meta["md_seconds"]  # the timings add both processes'


def test_a_checkpoint_of_another_seed_is_run_again_from_stage_1(uninterrupted, tmp_path):
    full, states = uninterrupted
    store = tmp_path / "c.zarr"
    create_campaign(store, config={})
    handle = StageCheckpoints(store, PATH)
    arrays, meta = states[1].to_arrays()
    handle.save(2, arrays, meta, key=states[1].key)  # stage 2 of seed 4
    two = {**CVD, "n_stages": 2}
    other = run_rmd(SCHEDULE[:2], two, SEED + 1, stages=handle)
    assert other.resumed_stages == 0
    assert handle.load(states[1].key) is None  # replaced by the new attempt's stages
    assert handle.load(run_key(SCHEDULE[:2], RmdSettings.from_config(two), SEED + 1)).stage == 2


def test_run_schedule_refuses_the_state_of_another_run(uninterrupted):
    _, states = uninterrupted
    settings = RmdSettings.from_config(CVD)
    with pytest.raises(InputError, match="not one of this run"):
        run_schedule(SCHEDULE, settings, seed=SEED + 1, resume=states[1])
    with pytest.raises(InputError, match="not one of this run"):
        run_schedule(SCHEDULE + [[1.0, 0, 0, 0]], settings, seed=SEED, resume=states[1])
    arrays, meta = states[1].to_arrays()
    with pytest.raises(InputError, match="not a state of 3 finished stages: it holds records and frames of 2 stage"):
        StageState.from_arrays(arrays, meta, stage=3, key=states[1].key)
    done = run_schedule(SCHEDULE, settings, seed=SEED, resume=states[-1])  # every stage stored: no MD
    assert done.resumed_stages == 4 and done.n_builds == states[-1].n_builds


def test_a_resume_where_the_engine_would_have_been_kept_builds_one_more(tmp_path):
    """Stage 2 changes no atom (low T, same gas): the uninterrupted run keeps its engine, a resumed one cannot."""
    schedule = np.array([[900.0, 1, 1, 1], [950.0, 1, 1, 1]])
    settings = RmdSettings(n_mo=8, stage_ps=0.01, relax_iterations=0)
    states = []
    full = run_schedule(schedule, settings, seed=5, on_stage=states.append)
    assert full.n_builds == 1 and not full.inserted[1].any() and not full.exhausted[1].any()
    arrays, meta = states[0].to_arrays()
    resumed = run_schedule(schedule, settings, seed=5, resume=StageState.from_arrays(arrays, meta, stage=1,
                                                                                      key=states[0].key))
    assert resumed.n_builds == 2
    assert resumed.energy_eV[0] == full.energy_eV[0] and resumed.fractions.tobytes() == full.fractions.tobytes()
    # a new QEq start and atom order: the same stage, to about the QEq tolerance
    assert resumed.energy_eV[1] == pytest.approx(full.energy_eV[1], abs=1e-3)


# ------------------------------------------------------------------- the driver
def _threads(tmp_path):
    return load_site("threads", run_dir=str(tmp_path / "runinfo"), max_threads=2)


def _table(tmp_path, n=2, token=True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = tmp_path / "c.zarr"
    create_campaign(store, config=validate({}))
    root = open_campaign(store, "r+", token=begin_run(store) if token else None)
    table = RunTable.create(root, DATASET_PATH, n_stages=1)
    table.extend(np.array([[[1000.0 + r, 1, 1, 1]] for r in range(n)]))
    return store, table


def _result(schedule, seed, resumed=0):
    x = np.asarray(schedule, dtype=float)
    return {"schedule": x, "fractions": np.array([[0.0, 0.0, 1.0]]), "gas_counts": x[:, 1:],
            "temperature_K": x[:, 0], "energy_eV": np.array([-float(seed)]), "species": np.zeros((1, 6)),
            "n_atoms": np.array([40]), "md_seconds": 0.1, "wall_seconds": 0.2, "resumed_stages": resumed}


def test_the_driver_hands_each_app_its_rows_checkpoint_and_deletes_it_when_done(tmp_path):
    store, table = _table(tmp_path)
    seen = {}

    def standin(schedule, cvd_table, seed, *, stages):
        seen[float(schedule[0, 0])] = (stages.path, stages.token)
        stages.save(1, {"a": np.zeros(2)}, {}, key={"seed": seed})
        return _result(schedule, seed, resumed=1 if schedule[0, 0] == 1001.0 else 0)

    assert takes_stages(standin) and takes_stages(run_rmd) and not takes_stages(lambda s, c, seed: None)
    summary = run_rows(table, [0, 1], _threads(tmp_path), cvd_table={}, seed=3, salt=0, run_fn=standin)
    token = run_token(table.group)
    assert token is not None
    assert seen == {1000.0: (stage_checkpoint_path(DATASET_PATH, 0), token),
                    1001.0: (stage_checkpoint_path(DATASET_PATH, 1), token)}
    assert summary["resumed"] == {1: 1}
    group = open_campaign(store, "r")
    assert stage_checkpoint_path(DATASET_PATH, 0) not in group and stage_checkpoint_path(DATASET_PATH, 1) not in group
    table = RunTable.open(group, DATASET_PATH)
    assert table.read("message").tolist() == ["", "continued after stage 1 of 1 from its stage checkpoint"]
    seen.clear()
    x = np.array([[1000.0, 1, 1, 1]])
    rmd_app(standin, x, {}, 3, StageCheckpoints(store, stage_checkpoint_path(DATASET_PATH, 0), token))
    assert seen == {1000.0: (stage_checkpoint_path(DATASET_PATH, 0), token)}  # the app passes its handle on
    assert rmd_app(lambda s, c, seed: _result(s, seed), x, {}, 3)["energy_eV"].tolist() == [-3.0]  # or none


def test_validation_runs_get_checkpoints_of_their_own_table(tmp_path):
    from mapcvd.workflows.cvd_validate import run_validation

    from mapcvd.store.layout import validation_path

    store = tmp_path / "c.zarr"
    group = create_campaign(store, config=validate({}))
    schedules = np.array([[[1000.0 + r, 1, 1, 1]] for r in range(2)])
    paths = []

    def standin(schedule, cvd_table, seed, *, stages):
        paths.append(stages.path)
        stages.save(1, {"a": np.zeros(1)}, {}, key={"seed": seed})
        return _result(schedule, seed)

    table, summary = run_validation(
        group, _threads(tmp_path), schedules=schedules, top=2, nade_mean=np.zeros((2, 1, 3)),
        nade_std=np.zeros((2, 1, 3)), agent_version=1, species=("S2", "H2S", "H2", "H2O", "SO", "SO2"),
        dataset_attrs={"cvd": {"n_mo": 8}, "seed": 3, "n_mo": 8, "ranges": {}}, path=validation_path("paper"),
        run_fn=standin, log=lambda line: None)
    assert summary["complete"]
    assert sorted(paths) == [stage_checkpoint_path("cvd/validation_paper", r) for r in (0, 1)]
    assert list(group["cvd/validation_paper/checkpoints"].group_keys()) == []  # each deleted once its row was done


def test_a_lost_worker_keeps_the_attempt_and_its_seed(tmp_path):
    store, table = _table(tmp_path, n=1, token=False)
    calls = []

    def lost_once(schedule, cvd_table, seed):
        calls.append(seed)
        if len(calls) in (1, 2):
            raise WorkerLost(7, "node-1")
        return _result(schedule, seed)

    run_rows(table, [0], _threads(tmp_path), cvd_table={}, seed=3, salt=0, retries=0, run_fn=lost_once)
    assert table.status().tolist() == [STATUS["failed"]] and table.read("attempts").tolist() == [0]
    assert "loss of worker 7" in table.read("message")[0]
    run_rows(table, [0], _threads(tmp_path), cvd_table={}, seed=3, salt=0, retries=1, run_fn=lost_once)
    assert calls == [md_seed(3, 0, 0, 0)] * 3  # both lost attempts, and the retry, with attempt 0's seed
    assert table.status().tolist() == [STATUS["done"]] and table.read("attempts").tolist() == [1]
    assert table.read("seed").tolist() == [md_seed(3, 0, 0, 0)]

    def md_error(schedule, cvd_table, seed):
        calls.append(seed)
        raise RuntimeError("lost atoms")

    _, table2 = _table(tmp_path / "b", n=1, token=False)
    run_rows(table2, [0], _threads(tmp_path / "b"), cvd_table={}, seed=3, salt=0, retries=1, run_fn=md_error)
    assert calls[-2:] == [md_seed(3, 0, 0, 0), md_seed(3, 0, 0, 1)]  # a failed run retries with a new seed
    assert table2.read("attempts").tolist() == [2]


# ----------------------------------------------------- the command, killed in a stage
def _cli_dataset(store, cfg):
    return [sys.executable, "-m", "mapcvd.cli", "cvd", "dataset", "--runs", "1", "--store", str(store),
            "--site", "threads", "--config", str(cfg)]


def _committed_stages(store) -> int:
    import json

    try:
        text = (store / stage_checkpoint_path(DATASET_PATH, 0) / "zarr.json").read_text()
    except FileNotFoundError:
        return 0
    return int(json.loads(text).get("attributes", {}).get("latest") or 0)


@pytest.mark.heavy  # two command runs of real MD: 23 s alone, 40-45 s beside other jobs on the 2-core machine
@pytest.mark.timeout(300)
def test_dataset_command_killed_in_stage_3_resumes_at_stage_3(tmp_path):
    """SIGKILL of ``mapcvd cvd dataset`` (threads site: the app dies with the driver) once 2 stages are stored."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[campaign]\nseed = 5\n[cvd]\nn_mo = 8\nn_stages = 4\nstage_ps = 0.1\nrelax_iterations = 0\n")
    store = tmp_path / "c.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(_cli_dataset(store, cfg), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.time() + 180
        while _committed_stages(store) < 2 and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        first.kill()  # SIGKILL: the driver and, on the threads site, the app in it
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, first.stderr.read()[-2000:]
    k = _committed_stages(store)
    assert k == 2, f"the first run had stored {k} stages when it was killed"
    root = open_campaign(store, "r")
    table = RunTable.open(root, DATASET_PATH)
    assert table.status().tolist() == [STATUS["pending"]] and table.read("attempts").tolist() == [0]
    seed = md_seed(5, 0, 0, 0)
    key = run_key(table.read("schedule")[0], RmdSettings.from_config({**CVD, "stage_ps": 0.1}), seed)
    stored = read_stage_checkpoint(root, stage_checkpoint_path(DATASET_PATH, 0), key)
    assert stored is not None and stored.stage == 2  # the checkpoint is the attempt's: same seed, same schedule

    again = subprocess.run(_cli_dataset(store, cfg), capture_output=True, text=True, timeout=240, env=env,
                           cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 of 1 runs done, 1 to run" in again.stdout and "dataset: 1 done, 0 failed, 0 pending" in again.stdout
    root = open_campaign(store, "r")
    table = RunTable.open(root, DATASET_PATH)
    assert table.status().tolist() == [STATUS["done"]]
    assert table.read("attempts").tolist() == [1] and table.read("seed").tolist() == [seed]  # done once, same seed
    assert table.read("message").tolist() == ["continued after stage 2 of 4 from its stage checkpoint"]
    a = stored.arrays
    for column, name in (("Z", "fractions"), ("temperature_K", "temp"), ("energy_eV", "energy")):
        assert table.read(column)[0, :2].tobytes() == a[f"out_{name}"].tobytes(), column  # stages 1-2 as stored
    np.testing.assert_array_equal(table.read("gas_counts")[0, :2], a["out_gas"])
    np.testing.assert_array_equal(table.read("n_atoms")[0, :2], a["out_n_atoms"])
    np.testing.assert_array_equal(table.read("species")[0, :2], a["out_species"])
    assert np.all(np.isfinite(table.read("Z")[0, 2:])) and np.allclose(table.read("Z")[0].sum(-1), 1.0)
    assert table.read("wall_seconds")[0] > stored.meta["wall_seconds"]  # both processes' time
    assert stage_checkpoint_path(DATASET_PATH, 0) not in root  # deleted once the row was recorded
