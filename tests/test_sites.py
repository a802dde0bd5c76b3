"""Parsl site configurations: build, load, run a trivial app, shut down cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

parsl = pytest.importorskip("parsl")

from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor  # noqa: E402
from parsl.launchers import MpiExecLauncher, SrunLauncher  # noqa: E402
from parsl.providers import LocalProvider, PBSProProvider, SlurmProvider  # noqa: E402

from mapcvd.errors import InputError  # noqa: E402
from mapcvd.workflows import parsl_runtime, selftest  # noqa: E402
from mapcvd.workflows.sites import (  # noqa: E402
    EXECUTOR_LABELS,
    SITES,
    has_gpu_executor,
    load_site,
    run_parsl,
    site_names,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "configs" / "sites"


def labels(config) -> list[str]:
    return [ex.label for ex in config.executors]


def executor(config, label):
    return next(ex for ex in config.executors if ex.label == label)


def worker_pools(run_dir: str) -> list[psutil.Process]:
    """Worker pool processes of one Parsl run (its run_dir is on their command line)."""
    procs = parsl_runtime.pool_processes(run_dir)
    return [p for p in procs if "process_worker_pool" in " ".join(p.cmdline())]


def assert_gone(procs: list[psutil.Process], run_dir: str) -> None:
    _, alive = psutil.wait_procs(procs, timeout=15)
    assert not alive, f"stray Parsl processes: {alive}"
    assert parsl_runtime.pool_processes(run_dir) == []


def assert_no_dfk() -> None:
    with pytest.raises(parsl.errors.NoDataFlowKernelError):
        parsl.dfk()


# --- names and factories -------------------------------------------------------------


def test_site_names_and_labels():
    assert EXECUTOR_LABELS == ("cpu", "gpu")
    assert set(site_names()) == set(SITES) == {"threads", "local", "slurm", "pbs"}
    assert site_names()[0] == "local"


def test_every_call_builds_a_new_config(tmp_path):
    for name in ("threads", "local"):
        a = load_site(name, run_dir=tmp_path)
        b = load_site(name, run_dir=tmp_path)
        assert a is not b and a.executors[0] is not b.executors[0]


def test_threads_site(tmp_path):
    config = load_site("threads", run_dir=tmp_path)
    assert labels(config) == ["cpu"]
    (ex,) = config.executors
    assert isinstance(ex, ThreadPoolExecutor)
    assert ex.max_threads == os.cpu_count()
    assert not has_gpu_executor(config)
    assert has_gpu_executor(load_site("threads", gpu=True))


def test_local_site_defaults(tmp_path):
    config = load_site("local", run_dir=tmp_path / "runinfo")
    assert labels(config) == ["cpu"]
    assert not has_gpu_executor(config)
    assert config.run_dir == str(tmp_path / "runinfo")
    cpu = executor(config, "cpu")
    assert isinstance(cpu, HighThroughputExecutor)
    assert isinstance(cpu.provider, LocalProvider)
    assert cpu.address == "127.0.0.1"
    assert cpu.max_workers_per_node == os.cpu_count()
    assert cpu.cores_per_worker == 1
    assert (cpu.provider.init_blocks, cpu.provider.max_blocks) == (1, 1)
    assert "OMP_NUM_THREADS=1" in cpu.provider.worker_init


def test_default_run_dir_is_runinfo():
    assert Path(load_site("local").run_dir) == Path.cwd() / "runinfo"


def test_local_site_with_gpu(tmp_path):
    config = load_site("local", gpu=True, run_dir=tmp_path)
    assert labels(config) == ["cpu", "gpu"]
    assert has_gpu_executor(config)
    gpu = executor(config, "gpu")
    assert isinstance(gpu, HighThroughputExecutor)
    assert gpu.max_workers_per_node == 1
    assert gpu.address == "127.0.0.1"


def test_slurm_site_builds(tmp_path):
    config = load_site(
        "slurm",
        check=False,  # no Slurm here: build only
        partition="compute",
        account="acct",
        walltime="02:00:00",
        nodes_per_block=2,
        max_blocks=3,
        cores_per_node=32,
        worker_init="module load x; source /venv/bin/activate",
        gpu_partition="gpu",
        gpus_per_node=4,
        run_dir=tmp_path,
    )
    assert labels(config) == ["cpu", "gpu"]
    assert has_gpu_executor(config)
    cpu, gpu = executor(config, "cpu"), executor(config, "gpu")
    for ex in (cpu, gpu):
        assert isinstance(ex, HighThroughputExecutor)
        assert isinstance(ex.provider, SlurmProvider)
        assert isinstance(ex.provider.launcher, SrunLauncher)
        assert "source /venv/bin/activate" in ex.provider.worker_init
    assert "--partition=compute" in cpu.provider.scheduler_options
    assert "--account=acct" in cpu.provider.scheduler_options
    assert (cpu.provider.nodes_per_block, cpu.provider.max_blocks) == (2, 3)
    assert cpu.provider.walltime == "02:00:00"
    assert cpu.max_workers_per_node == 32 and cpu.cores_per_worker == 1
    assert "--partition=gpu" in gpu.provider.scheduler_options
    assert gpu.available_accelerators == ["0", "1", "2", "3"]
    assert gpu.workers_per_node == 4
    assert "OMP_NUM_THREADS" not in gpu.provider.worker_init


def test_pbs_site_builds(tmp_path):
    config = load_site(
        "pbs",
        partition="workq",
        account="PRJ",
        cores_per_node=16,
        gpus_per_node=2,
        run_dir=tmp_path,
    )
    assert labels(config) == ["cpu", "gpu"]
    cpu, gpu = executor(config, "cpu"), executor(config, "gpu")
    for ex in (cpu, gpu):
        assert isinstance(ex, HighThroughputExecutor)
        assert isinstance(ex.provider, PBSProProvider)
        assert isinstance(ex.provider.launcher, MpiExecLauncher)
    assert cpu.provider.queue == "workq" and cpu.provider.cpus_per_node == 16
    assert gpu.provider.select_options.endswith("ngpus=2")
    assert gpu.available_accelerators == ["0", "1"]


def test_cluster_site_without_gpu(tmp_path):
    for name in ("slurm", "pbs"):
        config = load_site(name, gpu=False, cores_per_node=8, run_dir=tmp_path, check=False)
        assert labels(config) == ["cpu"] and not has_gpu_executor(config)


@pytest.mark.parametrize("example", ["slurm_example.py", "pbs_example.py"])
def test_example_site_files_build(tmp_path, example):
    config = load_site(str(EXAMPLES / example), run_dir=tmp_path, max_blocks=2, check=False)
    assert labels(config) == ["cpu", "gpu"]
    assert executor(config, "cpu").provider.max_blocks == 2
    assert "activate" in executor(config, "cpu").provider.worker_init


def test_local_slurm_site_file_builds(tmp_path):
    """The site of the throwaway test cluster (tests/test_slurm_cluster.py runs it for real)."""
    config = load_site(str(EXAMPLES / "local_slurm.py"), run_dir=tmp_path, check=False)
    assert labels(config) == ["cpu", "gpu"]
    cpu, gpu = executor(config, "cpu"), executor(config, "gpu")
    for ex in (cpu, gpu):
        assert isinstance(ex.provider, SlurmProvider) and isinstance(ex.provider.launcher, SrunLauncher)
        assert ex.provider.partition == "debug" and ex.address == "127.0.0.1"
        assert f'export PATH="{os.path.dirname(sys.executable)}:$PATH"' in ex.provider.worker_init
    assert cpu.provider.exclusive and not gpu.provider.exclusive  # so the GPU block takes the other node
    assert gpu.provider.gpus_per_node == 1 and "--gpus-per-node=1" in gpu.provider.scheduler_options


def fake_sinfo(tmp_path, script: str) -> None:
    """Put a fake ``sinfo`` (a shell script) first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\n" + script + "\n")
    (bin_dir / "sinfo").chmod(0o755)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("script, options, words", [
    ("echo debug; echo gpu", dict(partition="nope"), ["partition 'nope' does not exist", "sinfo lists: debug, gpu"]),
    ("echo debug; echo gpu", dict(partition="debug,nope2", gpu_partition="gpu"), ["'nope2'"]),
    ("echo debug", dict(partition="debug", gpu_partition="nogpu"), ["'nogpu'"]),
    ("echo 'sinfo: error: Unable to contact slurm controller' >&2; exit 1", dict(), ["'sinfo' failed (exit 1)",
                                                                                      "Unable to contact"]),
    ("exec sleep 30", dict(partition="debug"), ["did not answer within"]),
])
def test_slurm_site_checks_its_partitions(tmp_path, monkeypatch, script, options, words):
    monkeypatch.setattr("mapcvd.workflows.cluster_sites.SINFO_TIMEOUT_S", 1.0)
    monkeypatch.setenv("PATH", os.environ["PATH"])
    fake_sinfo(tmp_path, script)
    start = time.monotonic()
    with pytest.raises(InputError) as excinfo:
        load_site("slurm", run_dir=tmp_path, **options)
    assert time.monotonic() - start < 15
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith("slurm site: ")
    for word in words:
        assert word in message


def test_slurm_site_with_existing_partitions_passes_and_local_asks_no_scheduler(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.environ["PATH"])
    fake_sinfo(tmp_path, "echo debug; echo gpu")
    config = load_site("slurm", run_dir=tmp_path, partition="debug", gpu_partition="gpu")
    assert labels(config) == ["cpu", "gpu"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sinfo at all
    with pytest.raises(InputError, match="'sinfo' is not on PATH"):
        load_site("slurm", run_dir=tmp_path)
    assert labels(load_site("local", run_dir=tmp_path)) == ["cpu"]


def test_tasks_lost_with_their_pool_run_again_and_nothing_else(tmp_path):
    """A walltime or a cancelled block (ManagerLost) costs a task one of LOST_POOL_RETRIES; its own errors end it."""
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    from mapcvd.workflows.site_common import LOST_POOL_RETRIES, retry_lost_pool

    for name in ("threads", "local"):
        config = load_site(name, run_dir=tmp_path)
        assert config.retries == LOST_POOL_RETRIES >= 1 and config.retry_handler is retry_lost_pool
    record = {"id": 3, "func_name": "actor_task", "fail_count": 1}
    assert retry_lost_pool(ManagerLost(b"abc", "node-1"), record) == 1
    for exc in (RuntimeError("LAMMPS failed"), WorkerLost(1, "node-1")):
        assert retry_lost_pool(exc, record) > LOST_POOL_RETRIES  # never retried by Parsl


# --- load_site errors ----------------------------------------------------------------


def assert_one_line_with_names(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    for name in site_names():
        assert name in message
    for word in words:
        assert word in message


def test_unknown_site_name():
    with pytest.raises(InputError) as excinfo:
        load_site("nowhere")
    assert_one_line_with_names(excinfo, "nowhere")


def test_missing_site_file(tmp_path):
    missing = tmp_path / "mysite.py"
    with pytest.raises(InputError) as excinfo:
        load_site(str(missing))
    assert_one_line_with_names(excinfo, str(missing), "not found")


def test_site_file_without_fresh_config(tmp_path):
    path = tmp_path / "site.py"
    path.write_text("x = 1\n")
    with pytest.raises(InputError) as excinfo:
        load_site(str(path))
    assert_one_line_with_names(excinfo, "fresh_config")


def test_site_file_returning_no_config(tmp_path):
    path = tmp_path / "site.py"
    path.write_text("def fresh_config(**options):\n    return {'executors': []}\n")
    with pytest.raises(InputError) as excinfo:
        load_site(str(path))
    assert_one_line_with_names(excinfo, "dict", "Config")


def test_site_file_that_fails(tmp_path):
    path = tmp_path / "site.py"
    path.write_text("import no_such_module_here\n")
    with pytest.raises(InputError, match="no_such_module_here"):
        load_site(str(path))


def test_unknown_option():
    with pytest.raises(InputError, match="nonsense"):
        load_site("local", nonsense=1)
    with pytest.raises(InputError, match="nonsense"):
        load_site(str(EXAMPLES / "slurm_example.py"), nonsense=1)


def test_user_site_file(tmp_path):
    path = tmp_path / "mysite.py"
    path.write_text(
        "from mapcvd.workflows.sites import threads_config\n"
        "def fresh_config(**options):\n"
        "    return threads_config(max_threads=3, **options)\n"
    )
    config = load_site(str(path), run_dir=tmp_path / "r")
    assert labels(config) == ["cpu"] and config.executors[0].max_threads == 3
    with run_parsl(config):
        assert selftest.square_app("cpu")(5).result(timeout=60) == 25
    assert_no_dfk()


# --- running apps --------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_threads_run(tmp_path):
    with run_parsl(load_site("threads", run_dir=tmp_path)) as dfk:
        futures = [selftest.square_app("cpu")(i) for i in range(10)]
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(10)]
        assert selftest.check_site(dfk) == {"cpu": (49, os.getpid())}
    assert_no_dfk()


@pytest.mark.timeout(120)
def test_run_parsl_cleans_up_after_exception(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with run_parsl(load_site("threads", run_dir=tmp_path)) as dfk:
            assert selftest.square_app()(3).result(timeout=60) == 9
            raise KeyboardInterrupt
    assert dfk.cleanup_called
    assert_no_dfk()
    with run_parsl(load_site("threads", run_dir=tmp_path)):  # loadable again
        pass


@pytest.mark.timeout(120)
def test_local_htex_run(tmp_path):
    run_dir = tmp_path / "runinfo"
    with run_parsl(load_site("local", run_dir=run_dir)) as dfk:
        assert list(dfk.executors)[:1] == ["cpu"] and "gpu" not in dfk.executors
        app = selftest.square_app("cpu", with_pid=True)
        results = [f.result(timeout=90) for f in [app(i) for i in range(8)]]
        assert [value for value, _ in results] == [i * i for i in range(8)]
        pids = {pid for _, pid in results}
        assert os.getpid() not in pids  # computed in worker processes
        pools = worker_pools(dfk.run_dir)
        assert pools, "no worker pool found for this run"
        workers = {c.pid for p in pools for c in p.children(recursive=True)}
        assert pids <= workers
        procs = pools + [psutil.Process(pid) for pid in workers if psutil.pid_exists(pid)]
    assert_no_dfk()
    assert_gone(procs, dfk.run_dir)
    assert Path(dfk.run_dir).parent == run_dir


@pytest.mark.timeout(120)
def test_local_htex_gpu_executor_and_interrupt(tmp_path):
    """With gpu=True a second pool runs tasks; Ctrl-C in the block still shuts all down."""
    with pytest.raises(KeyboardInterrupt):
        with run_parsl(load_site("local", gpu=True, run_dir=tmp_path)) as dfk:
            results = selftest.check_site(dfk)
            assert set(results) == {"cpu", "gpu"}
            assert results["cpu"][0] == results["gpu"][0] == 49
            assert os.getpid() not in {pid for _, pid in results.values()}
            assert results["cpu"][1] != results["gpu"][1]
            procs = [q for p in worker_pools(dfk.run_dir) for q in [p, *p.children(recursive=True)]]
            assert len([p for p in procs if "process_worker_pool" in " ".join(p.cmdline())]) == 2
            raise KeyboardInterrupt
    assert dfk.cleanup_called
    assert_no_dfk()
    assert_gone(procs, dfk.run_dir)


@pytest.mark.timeout(60)
def test_stray_worker_pools_are_ended(tmp_path):
    """The safety net of run_parsl: pools of this run that outlive cleanup are ended."""
    run_dir = str(tmp_path / "000")
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    argv = [sys.executable, "-c", code, "process_worker_pool"]
    other = subprocess.Popen([*argv, f"--logdir={tmp_path}/0001/cpu"])  # another run
    stray = subprocess.Popen([*argv, f"--logdir={run_dir}/cpu"])
    try:
        found = []
        for _ in range(50):  # until the child has exec'd python
            found = parsl_runtime.pool_processes(run_dir)
            if found:
                break
            time.sleep(0.1)
        assert [p.pid for p in found] == [stray.pid]  # another run's pool is not matched
        parsl_runtime.reap(found, grace=0.5)  # ignores SIGTERM: needs the kill
        assert not found[0].is_running()
        assert found[0].returncode == -9  # psutil reaped it: SIGKILL after SIGTERM
        assert other.poll() is None
    finally:
        for proc in (stray, other):
            proc.kill()
            proc.wait()


# --- the "mpi" executor (Parsl's MPIExecutor) ----------------------------------------


def test_pbs_site_with_mpi_nodes_submits_one_job_of_those_nodes(tmp_path, monkeypatch):
    """``pbs`` with ``mpi_nodes=2``: an MPIExecutor whose block is one PBS job of 2 whole nodes, its pool
    started once (SimpleLauncher), on demand; multi-rank apps go there. No PBS here: the ``qsub`` call is caught."""
    from parsl.executors import MPIExecutor
    from parsl.launchers import SimpleLauncher

    from mapcvd.workflows.sites import rank_placement

    config = load_site("pbs", partition="workq", account="PRJ", cores_per_node=16, gpu=False, mpi_nodes=2,
                       select_options="mem=200gb", worker_init="source /venv/bin/activate", run_dir=tmp_path)
    assert labels(config) == ["cpu", "mpi"]
    mpi = executor(config, "mpi")
    assert isinstance(mpi, MPIExecutor) and isinstance(mpi.provider, PBSProProvider)
    assert isinstance(mpi.provider.launcher, SimpleLauncher)
    assert (mpi.provider.nodes_per_block, mpi.provider.init_blocks, mpi.provider.max_blocks) == (2, 0, 1)
    assert mpi.max_workers_per_block == 2  # one multi-rank app per node at a time
    assert rank_placement(config, 1) == (["cpu"], {})
    executors, kwargs = rank_placement(config, 6)
    assert executors == ["mpi"]
    assert kwargs["parsl_resource_specification"] == {"num_nodes": 1, "ranks_per_node": 6, "num_ranks": 6}
    calls = []
    monkeypatch.setattr(mpi.provider, "execute_wait", lambda cmd, *a, **k: calls.append(cmd) or (0, "7.pbs", ""))
    mpi.provider.script_dir = str(tmp_path)
    assert mpi.provider.submit("process_worker_pool.py --x", 1, "mpi-block") == "7.pbs"
    [script] = [p.read_text() for p in tmp_path.iterdir() if p.name.startswith("mpi-block.")
                and not p.name.endswith((".stdout", ".stderr"))]
    assert "#PBS -l select=2:ncpus=16:mem=200gb" in script
    assert "source /venv/bin/activate" in script and "OMP_NUM_THREADS=1" in script
    assert "mpiexec" not in script  # SimpleLauncher: one pool on the first node, which reads $PBS_NODEFILE
    assert len(calls) == 1 and calls[0].startswith("qsub") and "-q workq" in calls[0] and "-A PRJ" in calls[0]
    assert "mpi" not in labels(load_site("pbs", cores_per_node=16, gpu=False, run_dir=tmp_path))


def test_local_mpi_executor_runs_as_many_apps_as_fit_the_cores(tmp_path, monkeypatch):
    """``local_config(mpi=N)`` lists this host N times in the pool's node file; ``local_mpi_slots`` sizes N."""
    import socket

    from mapcvd.workflows import sites

    monkeypatch.setattr(sites, "cores", lambda: 8)
    assert [sites.local_mpi_slots(r) for r in (1, 2, 3, 8, 10)] == [0, 4, 2, 1, 1]
    config = load_site("local", run_dir=str(tmp_path / "run"), mpi=3)
    mpi = executor(config, "mpi")
    assert mpi.max_workers_per_block == 3
    nodefile = tmp_path / "run" / "mpi_nodefile"
    assert nodefile.read_text().split() == [socket.gethostname()] * 3
    assert f'PBS_NODEFILE="{nodefile}"' in mpi.provider.worker_init
    assert labels(load_site("local", run_dir=str(tmp_path / "run2"))) == ["cpu"]


def test_lammps_neb_bands_ask_for_one_rank_per_image():
    from mapcvd.pathways.neb import NebSettings

    assert NebSettings(images=4, driver="lammps").ranks == 6
    assert NebSettings(images=4, driver="ase").ranks == 1


@pytest.mark.timeout(180)
def test_site_check_runs_on_the_mpi_executor_and_local_runs_its_slots_side_by_side(tmp_path):
    """``mapcvd info --site``'s check reaches the ``mpi`` executor (with the resource specification Parsl's MPI
    mode requires) and sees the prefix Parsl composed; ``local``'s 2 slots are 2 workers."""
    with run_parsl(load_site("local", run_dir=tmp_path / "runinfo", mpi=2)) as dfk:
        reports = selftest.site_report(dfk, timeout=120)
        assert set(reports) == {"cpu", "mpi"} and not any("error" in r for r in reports.values()), reports
        assert reports["cpu"]["mpi_prefix"] is None
        assert "-n 1" in reports["mpi"]["mpi_prefix"] and "-launcher" not in reports["mpi"]["mpi_prefix"]
        # two apps of 2 ranks (each takes seconds: it imports torch and starts LAMMPS) at once, one per
        # line of the node file, on two workers
        app = parsl.python_app(selftest.worker_report, executors=["mpi"])
        spec = {"num_nodes": 1, "ranks_per_node": 2, "num_ranks": 2}
        both = [f.result(timeout=120) for f in [app(parsl_resource_specification=spec) for _ in range(2)]]
        assert all("-n 2" in r["mpi_prefix"] for r in both)
        assert both[0]["pid"] != both[1]["pid"]
