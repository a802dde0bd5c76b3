"""A staged reactive-MD run on two MPI ranks (``[cvd] ranks_per_run``, issue 14).

Real LAMMPS ReaxFF under the environment's ``mpiexec``: the 2-rank run must give the
serial run's records (the same gas choices and phases; energies to round-off) and
write its stage checkpoint from rank 0 only; a failure on the ranks comes back as one
``MDError``; more ranks than a node's cores are refused before any work.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mapcvd.config import load_config
from mapcvd.cvd.rmd import RmdSettings, run_key
from mapcvd.errors import InputError, MDError
from mapcvd.store import create_campaign
from mapcvd.store.stage_checkpoints import StageCheckpoints
from mapcvd.workflows.cvd_dataset import run_rmd
from mapcvd.workflows.site_common import cores
from mapcvd.workflows.sites import check_ranks, load_site

CVD = {**load_config(None)["cvd"], "n_mo": 8, "n_stages": 2, "stage_ps": 0.01, "relax_iterations": 0}
SCHEDULE = np.array([[1500.0, 4, 2, 2], [1800.0, 3, 3, 2]])
SEED = 3


@pytest.fixture(scope="module")
def serial():
    return run_rmd(SCHEDULE, CVD, SEED)


def test_two_ranks_give_the_serial_run_and_rank_0_writes_the_checkpoint(serial, tmp_path):
    store = tmp_path / "c.zarr"
    create_campaign(store, config={})
    handle = StageCheckpoints(store, "cvd/dataset/checkpoints/row_000000")
    ranks = run_rmd(SCHEDULE, {**CVD, "ranks_per_run": 2}, SEED, stages=handle)
    np.testing.assert_array_equal(ranks.n_atoms, serial.n_atoms)
    np.testing.assert_array_equal(ranks.gas_counts, serial.gas_counts)
    np.testing.assert_array_equal(ranks.inserted, serial.inserted)
    np.testing.assert_array_equal(ranks.fractions, serial.fractions)
    np.testing.assert_allclose(ranks.energy_eV, serial.energy_eV, rtol=0, atol=1e-3)  # round-off of 2 domains
    assert ranks.steps_per_stage == serial.steps_per_stage and ranks.frames == []
    stored = handle.load(run_key(SCHEDULE, RmdSettings.from_config(CVD), SEED))
    assert stored is not None and stored.stage == 2  # written by rank 0, read back whole
    np.testing.assert_array_equal(stored.arrays["out_n_atoms"], serial.n_atoms)


def test_a_failure_on_the_ranks_comes_back_as_one_md_error():
    crowded = np.array([[1500.0, 400, 0, 0]])  # far more S2 than the 8-Mo box holds
    with pytest.raises(MDError, match="on 2 ranks: stage 1/1"):
        run_rmd(crowded, {**CVD, "n_stages": 1, "ranks_per_run": 2}, SEED)


def test_more_ranks_than_a_node_has_cores_are_refused(tmp_path):
    local = load_site("local", run_dir=str(tmp_path / "runinfo"))
    check_ranks(local, cores())  # as many as the machine has: fine
    with pytest.raises(InputError, match=f"cvd.ranks_per_run = {cores() + 1} is more than the {cores()} cores"):
        check_ranks(local, cores() + 1)
    cluster = load_site("slurm", run_dir=str(tmp_path / "runinfo"), check=False, cores_per_node=4)
    with pytest.raises(InputError, match="ranks_per_run = 8 is more than the 4 cores"):
        check_ranks(cluster, 8)
    check_ranks(load_site("slurm", run_dir=str(tmp_path / "runinfo"), check=False), 64)  # cores unknown: passes


def test_cvd_dataset_refuses_too_many_ranks_before_any_work(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[campaign]\nsite = 'local'\n[cvd]\nranks_per_run = {cores() + 1}\n")
    store = tmp_path / "c.zarr"
    done = subprocess.run([sys.executable, "-m", "mapcvd.cli", "cvd", "dataset", "--runs", "1", "--store", str(store),
                           "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cvd.ranks_per_run" in lines[0] and "cores" in lines[0], done.stderr
    assert not store.exists()


def _rank_processes(launchers: bool = False) -> list:
    """The live rank processes of any multi-rank run on this host (with ``launchers``: their mpiexec too)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "name"]):
        cmdline = proc.info.get("cmdline") or []
        if "mapcvd.workflows.rmd_ranks" not in cmdline or proc.status() == psutil.STATUS_ZOMBIE:
            continue
        if launchers or proc.info["name"].startswith("python"):
            found.append(proc)
    return found


def test_a_killed_app_takes_its_ranks_with_it(tmp_path):
    """SIGKILL of the process that runs the app (a lost worker): mpiexec and the ranks end too."""
    import signal
    import time

    assert _rank_processes() == []
    script = ("import numpy as np; from mapcvd.config import load_config; "
              "from mapcvd.workflows.cvd_dataset import run_rmd; "
              "t = {**load_config(None)['cvd'], 'n_mo': 8, 'n_stages': 1, 'stage_ps': 20.0, "
              "'relax_iterations': 0, 'ranks_per_run': 2}; run_rmd(np.array([[1500.0, 4, 2, 2]]), t, 1)")
    app = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while len(_rank_processes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_rank_processes()) == 2, "the two ranks never started"
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _rank_processes(launchers=True) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _rank_processes(launchers=True) == []
    finally:
        for proc in _rank_processes(launchers=True):
            proc.kill()
        if app.poll() is None:
            app.kill()


def test_the_launcher_is_parsls_prefix_when_it_gives_one(monkeypatch):
    from mapcvd.md.mpi_launch import launcher

    monkeypatch.delenv("PARSL_MPI_PREFIX", raising=False)
    own = launcher(3)
    assert own[-4:] == ["-launcher", "fork", "-n", "3"] and own[0].endswith("mpiexec")
    monkeypatch.setenv("PARSL_MPI_PREFIX", "mpiexec -n 4 -ppn 4 -hosts n1")
    assert launcher(3) == ["mpiexec", "-n", "4", "-ppn", "4", "-hosts", "n1"]  # Parsl's resource spec decides


def test_the_dataset_hands_its_runs_the_configured_ranks(tmp_path, monkeypatch):
    """``cvd.ranks_per_run`` reaches each run of ``run_dataset`` (not kept in the table's stored settings)."""
    import mapcvd.workflows.rmd_ranks as rmd_ranks
    from mapcvd.config import validate
    from mapcvd.cvd.learning import rmd_settings
    from mapcvd.store import open_campaign
    from mapcvd.store.cvd_dataset import RunTable
    from mapcvd.store.layout import DATASET_PATH
    from mapcvd.workflows.cvd_dataset import run_dataset

    calls = []
    real = rmd_ranks.run_on_ranks

    def spy(schedule, cvd_table, seed, ranks, **kwargs):
        calls.append(ranks)
        return real(schedule, cvd_table, seed, ranks, **kwargs)

    monkeypatch.setattr(rmd_ranks, "run_on_ranks", spy)
    config = validate({"campaign": {"seed": 2}, "cvd": {**{k: CVD[k] for k in ("n_mo", "n_stages", "stage_ps",
                                                                              "relax_iterations")},
                                                        "ranks_per_run": 2},
                       "cvd_learning": {"runs": 1, "retries": 0}})
    store = tmp_path / "c.zarr"
    group = create_campaign(store, config=config)
    rmd, species = rmd_settings(config)
    summary = run_dataset(group, load_site("threads", run_dir=str(tmp_path / "runinfo")), config=config, runs=1,
                          rmd=rmd, species=species, log=lambda line: None)
    assert summary["complete"] and calls == [2]  # the one run went to 2 ranks
    assert RunTable.open(open_campaign(store, "r"), DATASET_PATH).counts()["done"] == 1


@pytest.mark.timeout(600)
def test_on_the_local_site_multi_rank_runs_go_to_parsls_mpi_executor(tmp_path):
    """``cvd dataset`` with 2 ranks per run on ``local``: the run goes to the ``mpi`` executor (MPIExecutor)."""
    from test_slurm_cluster import launches

    from mapcvd.store import open_campaign
    from mapcvd.store.cvd_dataset import RunTable
    from mapcvd.store.layout import DATASET_PATH
    from mapcvd.workflows.sites import rank_placement

    config = load_site("local", run_dir=str(tmp_path / "probe"), mpi=True)
    executors, kwargs = rank_placement(config, 2)
    assert executors == ["mpi"] and kwargs["parsl_resource_specification"]["launcher_options"] == "-launcher fork"
    cfg = tmp_path / "c.toml"
    keys = "\n".join(f"{k} = {CVD[k]!r}" for k in ("n_mo", "n_stages", "stage_ps", "relax_iterations"))
    cfg.write_text(f"[campaign]\nsite = 'local'\n[cvd]\n{keys}\nranks_per_run = 2\n[cvd_learning]\nretries = 0\n")
    store = tmp_path / "c.zarr"
    done = subprocess.run([sys.executable, "-m", "mapcvd.cli", "cvd", "dataset", "--runs", "1", "--store", str(store),
                           "--config", str(cfg)], capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert RunTable.open(open_campaign(store, "r"), DATASET_PATH).counts()["done"] == 1
    assert launches(tmp_path / "c.zarr.runinfo")["rmd_app"] == [(0, "mpi")]
