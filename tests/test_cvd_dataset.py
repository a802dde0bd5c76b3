"""The CVD dataset: store layout, Parsl driver, resume, failures and retries.

Dataset of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3. The wiring tests run on the ``threads`` site with a
cheap STAND-IN for the staged reactive MD (``standin_rmd``, no LAMMPS: 2H grows with a
made-up rate); one test runs the real ``run_schedule`` (a tiny 8-Mo slab, 2 stages of
0.02 ps, about 20 s) on the ``local`` HTEX site through the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from mapcvd.workflows.cvd_dataset import rmd_app, run_dataset
from mapcvd.workflows.sites import load_site

from mapcvd.config import validate
from mapcvd.cvd.ranges import PAPER_RANGES
from mapcvd.cvd.validation import SCHEDULE_BLOCK, dataset_schedules
from mapcvd.errors import ConfigError, StoreError
from mapcvd.store import open_campaign, open_or_create_campaign, run_stage, stage_statuses
from mapcvd.store.cvd_dataset import SPECIES, STATUS, RunTable, check_result
from mapcvd.store.layout import DATASET_PATH

S = 5  # stages per run in these tests
RMD = {"n_mo": 16, "n_stages": S, "stage_ps": 0.1}  # what the driver hands to every app


def dataset_stage(group, *args, **kw):
    """``run_dataset`` as the campaign stage ``cvd_dataset`` (the stage runner writes its status)."""
    return run_stage(group, "cvd_dataset", lambda: run_dataset(group, *args, **kw))


def standin_rmd(schedule, cvd_table, seed):
    """STAND-IN for mapcvd.cvd.rmd.run_schedule (no MD): defect Mo turn 2H at a rate that
    peaks near 3000 K and falls with S2; returns the fields of an RmdResult."""
    x = np.asarray(schedule, dtype=np.float64)
    u = PAPER_RANGES.scaled(cvd_table["n_mo"]).normalise(x)
    k = 0.3 * np.exp(-0.5 * ((u[:, 0] - 0.75) / 0.15) ** 2) * (1.0 - 0.7 * u[:, 1])
    defect = np.cumprod(1.0 - k)
    n = len(x)
    z = np.stack([1.0 - defect, np.zeros(n), defect], axis=1)
    return {
        "schedule": x, "fractions": z, "gas_counts": np.rint(x[:, 1:]), "temperature_K": x[:, 0],
        "energy_eV": -np.arange(n, dtype=float), "species": np.ones((n, len(SPECIES)), dtype=int),
        "n_atoms": np.full(n, 100), "md_seconds": 0.01, "wall_seconds": 0.02, "frames": [{"big": 1}],
    }


class Recorder:
    """Wraps a run function; records (row key, seed) of every call, thread-safely."""

    def __init__(self, fn=standin_rmd, fail=lambda x, n: None):
        self.fn, self.fail, self.calls, self.lock = fn, fail, [], threading.Lock()

    def __call__(self, schedule, cvd_table, seed):
        key = float(schedule[0, 0])
        with self.lock:
            self.calls.append((key, seed))
            n = sum(1 for k, _ in self.calls if k == key)
        error = self.fail(schedule, n)
        if error is not None:
            raise error
        return self.fn(schedule, cvd_table, seed)


@pytest.fixture
def campaign(tmp_path):
    config = validate({"campaign": {"seed": 11}, "cvd_learning": {"retries": 1}})
    group, _ = open_or_create_campaign(tmp_path / "c.zarr", config=config)
    return config, group, tmp_path


def threads(tmp_path):
    return load_site("threads", run_dir=str(tmp_path / "runinfo"), max_threads=2)


def planned(n, seed=11):
    return dataset_schedules(PAPER_RANGES.scaled(16), 0, n, S, seed)


# ------------------------------------------------------------------------- layout
def test_store_layout_round_trip(tmp_path):
    config = validate({})
    group, _ = open_or_create_campaign(tmp_path / "c.zarr", config=config)
    table = RunTable.create(group, DATASET_PATH, n_stages=S, attrs={"seed": 3})
    assert table.n_runs == 0 and table.counts() == {"pending": 0, "done": 0, "failed": 0}
    x = planned(3)
    assert list(table.extend(x)) == [0, 1, 2]
    result = check_result(standin_rmd(x[1], RMD, 0), S)
    table.record_result(1, result, seed=42, attempts=1)
    table.record_failure(2, "MDError: stage 3/5 (T 3000 K):\n lost atoms", seed=43, attempts=2)

    stored = open_campaign(tmp_path / "c.zarr", mode="r")
    t = RunTable.open(stored, DATASET_PATH)
    assert t.attrs["seed"] == 3 and t.attrs["species"] == list(SPECIES) and t.n_stages == S
    assert t.status().tolist() == [STATUS["pending"], STATUS["done"], STATUS["failed"]]
    np.testing.assert_array_equal(t.read("schedule"), x)
    np.testing.assert_allclose(t.read("Z", [1])[0], result["Z"])
    np.testing.assert_array_equal(t.read("X", [1])[0], x[1])
    assert t.read("message").tolist() == ["", "", "MDError: stage 3/5 (T 3000 K): lost atoms"]
    assert t.read("attempts").tolist() == [0, 1, 2] and t.read("seed").tolist() == [-1, 42, 43]
    assert np.isnan(t.read("Z", [0, 2])).all() and np.isnan(t.read("X", [2])).all()  # no data
    for name in ("X", "Z", "species", "status", "message"):  # one chunk per run
        arr = stored[f"{DATASET_PATH}/{name}"]
        assert arr.chunks[0] == 1 and arr.chunks[1:] == arr.shape[1:]
    done = t.done()
    assert done["rows"].tolist() == [1] and done["species"].shape == (1, S, len(SPECIES))
    with pytest.raises(StoreError, match="read-only"):
        t.record_failure(0, "x", seed=1, attempts=1)
    with pytest.raises(StoreError, match="already exists"):
        RunTable.create(group, DATASET_PATH, n_stages=S)


def test_rows_beyond_the_commit_count_are_invisible_and_reset(tmp_path):
    group, _ = open_or_create_campaign(tmp_path / "c.zarr", config=validate({}))
    table = RunTable.create(group, DATASET_PATH, n_stages=S)
    table.extend(planned(2))
    # a crash inside a later extension: arrays resized and a row written, n_runs not moved
    for arr in table.arrays.values():
        arr.resize((4, *arr.shape[1:]))
    table.arrays["status"][3] = STATUS["done"]
    assert table.n_runs == 2 and len(table.status()) == 2
    table.extend(planned(3)[2:])  # the next extension resets the leftover rows
    assert table.n_runs == 3 and table.status().tolist() == [0, 0, 0]
    assert table.arrays["status"].shape == (3,)


def test_check_result_refuses_what_is_not_data():
    x = planned(1)[0]
    good = standin_rmd(x, RMD, 0)
    assert set(check_result(good, S)) >= {"X", "Z", "md_seconds"}
    bad_sum = dict(good, fractions=good["fractions"] * 0.5)
    with pytest.raises(ValueError, match="summing to 1"):
        check_result(bad_sum, S)
    with pytest.raises(ValueError, match="non-finite"):
        check_result(dict(good, energy_eV=np.full(S, np.nan)), S)
    with pytest.raises(ValueError, match="shape"):
        check_result(dict(good, fractions=good["fractions"][:-1]), S)
    assert "frames" not in rmd_app(standin_rmd, x, RMD, 0)  # frames stay in the worker


def test_dataset_schedules_do_not_depend_on_the_count():
    ranges = PAPER_RANGES.scaled(16)
    big = dataset_schedules(ranges, 0, SCHEDULE_BLOCK + 20, S, 7)
    np.testing.assert_array_equal(dataset_schedules(ranges, 0, 10, S, 7), big[:10])
    np.testing.assert_array_equal(dataset_schedules(ranges, SCHEDULE_BLOCK - 5, SCHEDULE_BLOCK + 5, S, 7),
                                  big[SCHEDULE_BLOCK - 5:SCHEDULE_BLOCK + 5])
    assert ranges.contains(big) and not np.array_equal(big, dataset_schedules(ranges, 0, len(big), S, 8))
    assert len(np.unique(big[:, 0, 0])) == len(big)


# ------------------------------------------------------------------------- driver
class Interrupt(BaseException):
    """Stands for Ctrl-C in the driver (raised from the progress callback)."""


def test_resume_after_interrupt_and_crash_continues_without_duplicates(campaign):
    config, group, tmp_path = campaign
    first = Recorder()

    def stop_after_three(event):
        if event["done"] == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        dataset_stage(group, threads(tmp_path), config=config, runs=6, rmd=RMD, species=SPECIES,
                    run_fn=first, progress=stop_after_three, log=lambda s: None)
    assert stage_statuses(group)["cvd_dataset"] == "failed"
    table = RunTable.open(group, DATASET_PATH)
    done_before = set(table.rows_with("done").tolist())
    assert len(done_before) == 3 and table.n_runs == 6
    z_before = table.read("Z", sorted(done_before))
    # a crash between data and status: row data written, status still pending
    crashed = min(set(range(6)) - done_before)
    table.arrays["Z"][crashed] = np.full((S, 3), 0.25)

    second = Recorder()
    lines = []
    summary = dataset_stage(group, threads(tmp_path), config=config, runs=8, rmd=RMD, species=SPECIES,
                          run_fn=second, log=lines.append)
    table = RunTable.open(group, DATASET_PATH)
    x = planned(8)
    np.testing.assert_array_equal(table.read("schedule"), x)  # grown, first rows unchanged
    ran = sorted(k for k, _ in second.calls)
    want = sorted(float(x[r, 0, 0]) for r in range(8) if r not in done_before)
    assert ran == want  # every not-done row once, no done row again
    assert summary["counts"] == {"pending": 0, "done": 8, "failed": 0} and summary["complete"]
    assert stage_statuses(group)["cvd_dataset"] == "done"
    np.testing.assert_array_equal(table.read("Z", sorted(done_before)), z_before)
    np.testing.assert_allclose(table.read("Z", [crashed])[0], standin_rmd(x[crashed], RMD, 0)["fractions"])
    np.testing.assert_array_equal(table.read("X"), x)
    assert "3 of 8 runs done, 5 to run" in lines[0]
    third = Recorder()
    dataset_stage(group, threads(tmp_path), config=config, runs=8, rmd=RMD, species=SPECIES,
                run_fn=third, log=lambda s: None)
    assert third.calls == []  # nothing left to do


def test_failed_run_is_recorded_retried_once_and_never_stored(campaign):
    config, group, tmp_path = campaign
    x = planned(4)
    always, flaky, invalid = float(x[0, 0, 0]), float(x[1, 0, 0]), float(x[2, 0, 0])

    def fail(schedule, n):
        key = float(schedule[0, 0])
        if key == always:
            return RuntimeError(f"LAMMPS lost atoms (call {n})")
        if key == flaky and n == 1:
            return RuntimeError("transient failure")
        return None

    def fn(schedule, table, seed):
        out = standin_rmd(schedule, table, seed)
        if float(schedule[0, 0]) == invalid:
            out["fractions"] = out["fractions"] * 2.0  # not phase fractions
        return out

    rec = Recorder(fn, fail)
    events = []
    summary = dataset_stage(group, threads(tmp_path), config=config, runs=4, rmd=RMD, species=SPECIES,
                          run_fn=rec, progress=events.append, log=lambda s: None)
    table = RunTable.open(group, DATASET_PATH)
    status, attempts, message = table.status(), table.read("attempts"), table.read("message")
    assert status.tolist() == [STATUS["failed"], STATUS["done"], STATUS["failed"], STATUS["done"]]
    assert attempts.tolist() == [2, 2, 2, 1]  # one retry each, in this invocation
    assert message[0] == "RuntimeError: LAMMPS lost atoms (call 2)"
    assert "ValueError" in message[2] and "phase fractions" in message[2]
    assert "attempt 2" in message[1]
    assert np.isnan(table.read("Z", [0, 2])).all() and np.isnan(table.read("X", [0, 2])).all()
    assert table.read("n_atoms", [0, 2]).sum() == 0
    seeds = [s for k, s in rec.calls if k == always]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # the retry runs with a new MD seed
    assert sorted(summary["failed"]) == [0, 2] and summary["complete"] is False
    assert [e["event"] for e in events].count("retry") == 3
    assert stage_statuses(group)["cvd_dataset"] == "failed"
    # a re-run tries the failed rows again (and only those)
    again = Recorder(fn, fail)
    dataset_stage(group, threads(tmp_path), config=config, runs=4, rmd=RMD, species=SPECIES,
                run_fn=again, log=lambda s: None)
    assert sorted({k for k, _ in again.calls}) == sorted([always, invalid])
    assert RunTable.open(group, DATASET_PATH).read("attempts").tolist() == [4, 2, 4, 1]


def test_changed_md_settings_are_refused(campaign):
    config, group, tmp_path = campaign
    dataset_stage(group, threads(tmp_path), config=config, runs=1, rmd=RMD, species=SPECIES,
                run_fn=standin_rmd, log=lambda s: None)
    with pytest.raises(ConfigError, match="stage_ps"):
        dataset_stage(group, threads(tmp_path), config=config, runs=2, rmd=dict(RMD, stage_ps=0.2),
                    species=SPECIES, run_fn=standin_rmd, log=lambda s: None)
    assert RunTable.open(group, DATASET_PATH).n_runs == 1


# ------------------------------------------------------------ real MD on local HTEX
@pytest.mark.timeout(600)
def test_dataset_command_real_md_on_local_htex(tmp_path):
    """`mapcvd cvd dataset` with the real staged ReaxFF runs, one HTEX worker process each."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[campaign]\nseed = 5\n[cvd]\nn_mo = 8\nn_stages = 2\nstage_ps = 0.02\n")
    store = tmp_path / "c.zarr"
    cmd = [sys.executable, "-m", "mapcvd.cli", "cvd", "dataset", "--runs", "2", "--store", str(store),
           "--site", "local", "--config", str(cfg)]
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "dataset: 2 done, 0 failed, 0 pending" in result.stdout
    table = RunTable.open(open_campaign(store, "r"), DATASET_PATH)
    assert table.status().tolist() == [STATUS["done"]] * 2
    z = table.read("Z")
    assert z.shape == (2, 2, 3) and np.allclose(z.sum(-1), 1.0)
    assert np.all(table.read("md_seconds") > 0) and np.all(table.read("n_atoms") > 32)
    np.testing.assert_allclose(table.read("X")[:, :, 0], table.read("schedule")[:, :, 0])
    status = subprocess.run([sys.executable, "-m", "mapcvd.cli", "campaign", "status", str(store), "--json"],
                            check=False, capture_output=True, text=True, timeout=120)
    assert json.loads(status.stdout)["stages"]["cvd_dataset"] == "done"
    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and "2 of 2 runs done, 0 to run" in again.stdout
