"""The ``slurm`` site against a real, throwaway Slurm cluster on this machine (marker ``slurm``).

``make test-slurm`` runs these tests; ``make test`` leaves them out. A session fixture
starts two Slurm nodes (``start-local-slurm.sh`` from ``../shared/tools/local-slurm``,
or the copy vendored in ``.ci/local-slurm``) in a world-executable temporary folder and
stops them at the end, whatever the tests did. Without root, or when Slurm cannot be
installed or started, the tests are skipped with the reason; with
``MAPCVD_REQUIRE_SLURM=1`` (CI) they fail instead.

Through ``configs/sites/local_slurm.py`` (SlurmProvider + SrunLauncher, the CPU block on
one node, the learner's GPU block on the other): ``mapcvd info --site`` runs its check
on both blocks; a tiny campaign completes with the learner on ``"gpu"``; the same
campaign survives ``scancel`` of its CPU block in the middle of MAP training (the lost
tasks run again on a new block), and running it again finds every stage done, with
nothing lost or repeated; a partition that does not exist is refused in one line
before any work. Every test checks that no process it started (Parsl interchanges,
worker pools, ``srun``, batch scripts) and no batch job is left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from mapcvd.errors import InputError
from mapcvd.store import open_campaign, stage_info, stage_statuses
from mapcvd.store.cvd_dataset import RunTable
from mapcvd.store.episodes import EpisodeLog
from mapcvd.store.layout import DATASET_PATH, STAGES, actor_episodes_path
from mapcvd.store.learner_state import LearnerReplay
from test_campaign_graph import TINY, _toml

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "configs" / "sites" / "local_slurm.py"
#: CI sets it: a cluster that cannot start fails the tests instead of skipping them.
REQUIRED = os.environ.get("MAPCVD_REQUIRE_SLURM") == "1"
#: Seconds for the cluster to start (the first start also apt-installs slurm-wlm and munge).
START_TIMEOUT_S = 900
#: Seconds for any one Slurm client command (sinfo, squeue, scancel).
SLURM_CMD_TIMEOUT_S = 20
#: Seconds that the processes and jobs of a finished command get to go away.
LEFTOVER_GRACE_S = 60


def local_slurm_tools() -> Path:
    """The folder of the local-slurm scripts: the shared one next to the repository, else the vendored copy."""
    shared = REPO.parent / "shared" / "tools" / "local-slurm"
    return shared if (shared / "start-local-slurm.sh").is_file() else REPO / ".ci" / "local-slurm"


def unavailable(reason: str):
    """Skip (or, with MAPCVD_REQUIRE_SLURM=1, fail) because the local cluster cannot run."""
    if REQUIRED:
        pytest.fail(f"MAPCVD_REQUIRE_SLURM=1, but {reason}", pytrace=False)
    pytest.skip(f"no local Slurm cluster: {reason} (set MAPCVD_REQUIRE_SLURM=1 to make this a failure)")


def world_executable(path: Path) -> bool:
    """``path`` and every folder above it can be entered by anyone (munged insists)."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *path.parents))


def slurm(*args: str, timeout: float = SLURM_CMD_TIMEOUT_S) -> str:
    """Run a Slurm client command (with a timeout); return its stdout."""
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}"
    return done.stdout


def jobs() -> list[tuple[str, str]]:
    """(job id, job name) of every job in the cluster's queue."""
    return [tuple(line.split(maxsplit=1)) for line in slurm("squeue", "-h", "-o", "%i %j").splitlines() if line]


@pytest.fixture(scope="session")
def slurm_cluster():
    """A two-node Slurm cluster (``n1``, ``n2``, partition ``debug``, one fake GPU each) for the session.

    Started in ``$MAPCVD_SLURM_DIR`` (CI can then stop it from a shell trap too) or a
    fresh temporary folder, with ``SLURM_CONF`` exported to the tests and the commands
    they run; always stopped at the end.
    """
    if os.geteuid() != 0:
        unavailable("the local cluster runs its daemons as root, and these tests do not run as root")
    tools = local_slurm_tools()
    given = os.environ.get("MAPCVD_SLURM_DIR")
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="mapcvd-slurm-"))
    env = {**os.environ, "SLURM_LOCAL_NODES": "2", "SLURM_FAKE_GPUS": "1"}
    patch = pytest.MonkeyPatch()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        if not world_executable(folder):
            unavailable(f"{folder} or a folder above it is not world-executable (munged refuses its socket there)")
        try:
            started = subprocess.run(["bash", str(tools / "start-local-slurm.sh"), str(folder)], env=env,
                                     capture_output=True, text=True, timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            unavailable(f"start-local-slurm.sh did not finish within {START_TIMEOUT_S} s")
        if started.returncode != 0 or "slurm ready" not in started.stdout:
            tail = " | ".join(started.stderr.strip().splitlines()[-3:])
            unavailable(f"start-local-slurm.sh {folder} failed (exit {started.returncode}): {tail}")
        patch.setenv("SLURM_CONF", str(folder / "etc" / "slurm.conf"))
        yield folder
    finally:
        patch.undo()
        # stops whatever the start script got to start (it goes by the PID files in the folder)
        subprocess.run(["bash", str(tools / "stop-local-slurm.sh"), str(folder)], capture_output=True, timeout=180)
        if not given:
            shutil.rmtree(folder, ignore_errors=True)


def processes_of(root: Path) -> list[psutil.Process]:
    """Live processes that belong to a test's folder: named on their command line, or working in it."""
    root_s = str(root)
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        cwd = proc.info["cwd"] or ""
        if root_s in cmdline or cwd == root_s or cwd.startswith(root_s + os.sep):
            found.append(proc)
    return found


def wait_until_gone(root: Path, timeout: float = LEFTOVER_GRACE_S) -> tuple[list[psutil.Process], list]:
    """Wait for the processes of ``root`` and the cluster's jobs to end; return those still there."""
    deadline = time.monotonic() + timeout
    while True:
        left, queued = processes_of(root), jobs()
        if (not left and not queued) or time.monotonic() > deadline:
            return left, queued
        time.sleep(1.0)


def assert_nothing_left(root: Path) -> None:
    """No process started from ``root`` (interchange, worker pool, srun, batch script) and no job is left."""
    left, queued = wait_until_gone(root)
    described = [f"{p.pid} {' '.join(p.cmdline())[:150]}" for p in left if p.is_running()]
    assert not described, f"processes left behind: {described}"
    assert not queued, f"batch jobs left behind: {queued}"


@pytest.fixture
def workdir(slurm_cluster, tmp_path):
    """The test's working folder; whatever a failed test left there (processes, jobs) is ended after it."""
    yield tmp_path
    for job_id, _ in jobs():
        subprocess.run(["scancel", job_id], capture_output=True, timeout=SLURM_CMD_TIMEOUT_S)
    procs = processes_of(tmp_path)
    for proc in procs:
        proc.kill()
    psutil.wait_procs(procs, timeout=30)
    wait_until_gone(tmp_path, timeout=30)


def mapcvd(*args, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run ``mapcvd ARGS`` in ``cwd`` (with a timeout)."""
    return subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def site_with(path: Path, **defaults) -> Path:
    """A site file at ``path``: the local cluster's, with ``defaults`` (JSON values) in front of its own."""
    path.write_text("import runpy\n"
                    f"_base = runpy.run_path({str(SITE)!r})\n"
                    "def fresh_config(**options):\n"
                    f"    return _base['fresh_config'](**{{**{defaults!r}, **options}})\n")
    return path


def campaign_toml(folder: Path, **map_keys) -> Path:
    """The tiny campaign of tests/test_campaign_graph.py, its MAP table updated with ``map_keys``."""
    table = {**TINY, "campaign": {k: v for k, v in TINY["campaign"].items() if k != "site"},
             "map": {**TINY["map"], **map_keys}}
    path = folder / "tiny.toml"
    path.write_text(_toml(table))
    return path


def launches(run_dir: Path) -> dict[str, list[tuple[int, str]]]:
    """App name -> [(try, executor)] of every launch that Parsl logged in ``run_dir``."""
    apps, out = {}, {}
    for log in sorted(run_dir.glob("*/parsl.log")):
        for line in log.read_text().splitlines():
            if m := re.search(r"Task (\d+) submitted for App (\w+)", line):
                apps[(log, m[1])] = m[2]
            elif m := re.search(r"Parsl task (\d+) try (\d+) launched on executor (\w+)", line):
                out.setdefault(apps.get((log, m[1]), "?"), []).append((int(m[2]), m[3]))
    return out


def all_done(store: Path, cwd: Path) -> dict:
    """``mapcvd campaign status --json`` of ``store``, checked to have every stage done."""
    status = mapcvd("campaign", "status", store, "--json", cwd=cwd, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    snapshot = json.loads(status.stdout)
    assert snapshot["stages"] == {s: "done" for s in STAGES}, snapshot["stages"]
    return snapshot


# --------------------------------------------------------------------------- the check


def test_partition_check_against_the_cluster(slurm_cluster):
    from mapcvd.workflows.cluster_sites import check_slurm_partitions, slurm_partitions
    from mapcvd.workflows.sites import load_site

    assert slurm_partitions() == ["debug"]
    check_slurm_partitions(["debug", None, "debug"])
    with pytest.raises(InputError) as excinfo:
        check_slurm_partitions(["debug", "nope"])
    message = str(excinfo.value)
    assert "'nope'" in message and "sinfo lists: debug" in message and "\n" not in message
    with pytest.raises(InputError, match="'gpus'"):
        load_site(str(SITE), gpu_partition="gpus")
    assert [ex.label for ex in load_site(str(SITE)).executors] == ["cpu", "gpu"]


@pytest.mark.timeout(300)
def test_bad_partition_is_one_line_before_any_work(workdir):
    site = site_with(workdir / "bad_site.py", partition="nope")
    config = campaign_toml(workdir)
    for args in (("campaign", "run", config, "--site", site, "--store", workdir / "c.zarr", "--no-dashboard"),
                 ("info", "--site", site)):
        result = mapcvd(*args, cwd=workdir, timeout=120)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mapcvd: error: "), result.stderr
        assert "partition 'nope' does not exist" in lines[0] and "debug" in lines[0]
    assert not (workdir / "c.zarr").exists()  # refused before the store was made
    assert not list(workdir.rglob("submit_scripts"))  # and before Parsl submitted anything
    assert_nothing_left(workdir)


# ------------------------------------------------------------------------ the site


@pytest.mark.timeout(400)
def test_info_runs_the_check_on_both_blocks(workdir):
    result = mapcvd("info", "--site", SITE, "--timeout", "180", cwd=workdir, timeout=360)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "every executor ran its check" in result.stdout
    blocks = {}
    for label in ("cpu", "gpu"):
        (line,) = [ln for ln in result.stdout.splitlines() if ln.strip().startswith(f"{label} ")]
        assert "with REAXFF" in line, line
        job = re.search(r"Slurm job (\d+) on node (n\d)", line)
        assert job, f"the {label} worker did not run in a Slurm job: {line}"
        blocks[label] = job.groups()
    assert blocks["cpu"][0] != blocks["gpu"][0] and {blocks["cpu"][1], blocks["gpu"][1]} == {"n1", "n2"}
    assert_nothing_left(workdir)


@pytest.mark.timeout(600)
def test_tiny_campaign_with_the_learner_on_the_gpu_block(workdir):
    store = workdir / "c.zarr"
    result = mapcvd("campaign", "run", campaign_toml(workdir, minutes=0.5), "--site", SITE, "--store", store,
                    "--no-dashboard", cwd=workdir, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "learner on 'gpu'" in result.stdout
    ran = launches(workdir / "c.zarr.runinfo")
    assert ran["learner_task"] == [(0, "gpu")]
    assert ran["actor_task"] == [(0, "cpu")]
    assert {executor for _, executor in ran["rmd_app"]} == {"cpu"}
    blocks = sorted(".".join(p.name.split(".")[1:3])
                    for p in (workdir / "c.zarr.runinfo").glob("*/submit_scripts/parsl.*.stdout"))
    assert blocks == ["cpu.block-0", "gpu.block-0"]  # one batch job each
    snapshot = all_done(store, workdir)
    assert snapshot["map"]["learner"]["updates"] > 0 and snapshot["map"]["training"]["episodes"] > 0
    assert_nothing_left(workdir)


# ------------------------------------------------------------------ walltime, resume


def _training_state(store: Path) -> tuple[str | None, int, dict]:
    """map_train's status, actor 0's commit counter and the stage's recorded info, as on disk now."""
    group = open_campaign(store, "r")
    return stage_statuses(group).get("map_train"), LearnerReplay(group).committed(0), stage_info(group)


def _dataset_counts(store: Path) -> dict:
    group = open_campaign(store, "r")
    return RunTable.open(group, DATASET_PATH).counts() if DATASET_PATH in group else {"done": 0}


@pytest.mark.timeout(900)
def test_scancel_of_the_cpu_block_mid_training_then_resume_loses_and_repeats_nothing(workdir):
    """The walltime case: the CPU block is cancelled while the actor trains and CVD runs run.

    Observed: the interchange declares the block's manager lost (``ManagerLost``) once its
    heartbeats stop, the site's retry handler sends its tasks (the actor, a reactive-MD run)
    again, Parsl starts a new CPU block, and they continue there: the campaign completes
    in the same invocation. Running it again finds every stage done and changes nothing.
    """
    store = workdir / "c.zarr"
    runs = 6  # about a third of them done when the actor first commits
    table = {**TINY, "campaign": {k: v for k, v in TINY["campaign"].items() if k != "site"},
             "map": {**TINY["map"], "minutes": 2.5},
             "cvd": {**TINY["cvd"], "stage_ps": 0.05}, "cvd_learning": {**TINY["cvd_learning"], "runs": runs}}
    config = workdir / "tiny.toml"
    config.write_text(_toml(table))
    args = [sys.executable, "-m", "mapcvd.cli", "campaign", "run", str(config), "--site", str(SITE),
            "--store", str(store), "--no-dashboard"]
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    committed, cancelled, out, err = [], None, "", ""
    try:
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                status, count, info = _training_state(store)
            except Exception:  # noqa: BLE001 - not created yet, or caught mid-write: look again
                continue
            committed.append(count)
            if cancelled is None and status == "running" and count > 0:  # training has begun
                cpu_jobs = [job for job, name in jobs() if name.startswith("parsl.cpu.")]
                assert len(cpu_jobs) == 1, jobs()
                cancelled = {"job": cpu_jobs[0], "time": time.time(), "committed": count,
                             "deadline": info["map_train"]["deadline"],
                             "dataset": _dataset_counts(store)}
                slurm("scancel", cpu_jobs[0])
                gone = time.monotonic() + SLURM_CMD_TIMEOUT_S
                while cpu_jobs[0] in dict(jobs()) and time.monotonic() < gone:
                    time.sleep(0.5)
                assert cpu_jobs[0] not in dict(jobs()), "scancel did not end the CPU block"
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert cancelled is not None, "MAP training never began"
    assert cancelled["time"] < cancelled["deadline"]  # in the middle of training, not after it
    assert cancelled["dataset"]["done"] < runs  # and with reactive-MD runs still to come
    # What the driver does: the lost tasks run again on a new block, and the campaign completes.
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "was lost with its worker pool" in err and "actor_task" in err
    ran = launches(workdir / "c.zarr.runinfo")
    assert ran["actor_task"] == [(0, "cpu"), (1, "cpu")]  # launched again after the block was cancelled
    assert ran["learner_task"] == [(0, "gpu")]  # its block was not touched
    cpu_blocks = list((workdir / "c.zarr.runinfo").glob("*/submit_scripts/parsl.cpu.block-1.*.stdout"))
    assert cpu_blocks, "no second CPU block was submitted"
    assert committed == sorted(committed)  # commit counters only grew

    def state() -> dict:
        group = open_campaign(store, "r")
        episodes = EpisodeLog(group, actor_episodes_path(0)).summary()["episode"]
        dataset = RunTable.open(group, DATASET_PATH)
        learner = LearnerReplay(group)
        return {"episodes": episodes.tolist(), "committed": learner.committed(0), "cursor": int(learner.cursors[0]),
                "lost": int(learner.lost.sum()), "dataset_rows": dataset.n_runs, "dataset": dataset.counts(),
                "seeds": dataset.read("seed").tolist(), "attempts": dataset.read("attempts").tolist()}

    first = state()
    np.testing.assert_array_equal(first["episodes"], np.arange(len(first["episodes"])))  # unique, consecutive
    assert first["committed"] >= cancelled["committed"] and first["lost"] == 0
    assert first["cursor"] <= first["committed"]  # the learner read no transition twice
    assert first["dataset_rows"] == runs and first["dataset"]["done"] == runs  # every run stored exactly once
    assert first["attempts"] == [1] * runs  # Parsl re-ran the lost one; the dataset counted no failure
    all_done(store, workdir)
    assert_nothing_left(workdir)

    again = mapcvd("campaign", "run", "--store", store, "--site", SITE, "--resume", "--no-dashboard",
                   cwd=workdir, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert again.stdout.count("done before, skipped") == len(STAGES)
    assert state() == first  # nothing run or written again
    all_done(store, workdir)
    assert_nothing_left(workdir)


# ------------------------------------------------------------- MPI apps through Parsl


@pytest.mark.timeout(600)
def test_multi_rank_runs_go_to_parsls_mpi_executor(workdir):
    """``mpi_nodes=1``: reactive-MD runs and a MAP actor of 2 ranks go to the ``mpi`` block (MPIExecutor)."""
    from mapcvd.workflows.sites import load_site, rank_placement

    site = site_with(workdir / "mpi_site.py", mpi_nodes=1, gpu=False)
    config = load_site(str(site))
    assert [ex.label for ex in config.executors] == ["cpu", "mpi"]
    assert rank_placement(config, 1) == (["cpu"], {})
    assert rank_placement(config, 2)[0] == ["mpi"]
    toml = workdir / "cvd.toml"
    toml.write_text(_toml({"campaign": {"seed": 5},
                           "cvd": {**TINY["cvd"], "ranks_per_run": 2},
                           "cvd_learning": {**TINY["cvd_learning"], "runs": 2}}))
    store = workdir / "c.zarr"
    result = mapcvd("cvd", "dataset", "--store", store, "--site", site, "--config", toml, cwd=workdir, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert RunTable.open(open_campaign(store, "r"), DATASET_PATH).counts()["done"] == 2
    ran = launches(workdir / "c.zarr.runinfo")
    assert {executor for _, executor in ran["rmd_app"]} == {"mpi"} and len(ran["rmd_app"]) == 2
    # the MPIExecutor's own batch job (MPI mode sets $PARSL_MPI_PREFIX for each task, which the
    # runs' launcher takes: tests/test_rmd_ranks.py)
    assert list((workdir / "c.zarr.runinfo").glob("*/submit_scripts/parsl.mpi.block-0.*.stdout"))
    # a MAP actor of 2 ranks goes there too; the learner stays on "cpu" (this site has no "gpu")
    train = workdir / "map.toml"
    train.write_text(_toml({"campaign": {"seed": 5}, "map": {**TINY["map"], "minutes": 1.0, "ranks_per_actor": 2}}))
    maps = workdir / "m.zarr"
    result = mapcvd("map", "train", train, "--store", maps, "--site", site, cwd=workdir, timeout=540)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    ran = launches(workdir / "m.zarr.runinfo")
    assert ran["actor_task"] == [(0, "mpi")] and ran["learner_task"] == [(0, "cpu")]
    assert len(EpisodeLog(open_campaign(maps, "r"), actor_episodes_path(0))) >= 1, result.stdout[-2000:]
    assert_nothing_left(workdir)
