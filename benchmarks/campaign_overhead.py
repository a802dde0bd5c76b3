"""How much of a campaign's machine time goes to orchestration, the store and the dashboard.

Runs ``mapcvd campaign run CONFIG`` (the demo by default) on a fresh store, as a user
would: in a pseudo-terminal so that the live dashboard draws (``--no-dashboard`` to
leave it out). While it runs, every process the campaign starts (the driver, Parsl's
interchange and worker pools, the workers, any LAMMPS child) is sampled with psutil for
its CPU seconds; each task records the CPU it spent inside LAMMPS and inside torch
(:mod:`mapcvd.timing`, switched on by ``MAPCVD_TIMING_DIR``). It then prints:

* wall time, and the CPU seconds of the whole tree (and how busy that kept the cores);
* the CPU inside LAMMPS and inside torch: the science;
* the rest, split by where it ran: the driver (Parsl's DataFlowKernel, stage
  bookkeeping, the dashboard's store reads and drawing), Parsl's own processes
  (interchange, worker pools), worker processes between tasks (imports, Parsl's
  worker loop), the other threads of a worker during its tasks (Zarr's I/O event loop,
  which does the store's reads and writes), and the task's own thread outside
  LAMMPS/torch (numpy state grids and rewards, phase and species analysis, replay
  sampling, Python glue);
* the share of orchestration, store and dashboard (all of the above but the last;
  goal <= 5%), and the share of everything but LAMMPS and torch (an upper bound that
  also counts the numpy science inside tasks);
* the wall seconds before the first task started and after the last one ended.

CPU, not wall time, is the fair measure on a machine whose cores the campaign
deliberately oversubscribes (the local site runs more workers than cores): a worker
waiting for a core costs nothing, a dashboard redraw costs what it takes.

Usage::

    python benchmarks/campaign_overhead.py [CONFIG] [--site NAME] [--no-dashboard] [--keep DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

from mapcvd.timing import TIMING_DIR_ENV

GOAL_OVERHEAD = 0.05
DRIVER = "driver (Parsl DFK, stage bookkeeping, dashboard)"
STORE_IO = "tasks: other threads (Zarr's store I/O loop)"
TASK_NUMPY = "tasks: main thread outside LAMMPS/torch (numpy, glue)"
ROOT = Path(__file__).resolve().parents[1]


class CampaignSampler(threading.Thread):
    """Samples the CPU seconds of every process of one campaign until stopped.

    A process belongs to the campaign when its environment holds ``marker`` (the
    campaign's ``MAPCVD_TIMING_DIR``, inherited by everything it starts): Parsl's local
    provider starts the worker pools detached, so they are not descendants of the
    command and a process-tree walk would miss them.
    """

    def __init__(self, root: int, marker: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.root, self.marker, self.interval = root, marker, interval
        self.cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> user + system s
        self.names: dict[tuple[int, float], str] = {}
        self._members: dict[tuple[int, float], bool] = {}
        self._stop_event = threading.Event()

    def _member(self, proc: psutil.Process, key: tuple[int, float]) -> bool:
        if key not in self._members:
            try:
                env = proc.environ()
            except psutil.Error:
                env = {}
            self._members[key] = proc.pid == self.root or env.get(TIMING_DIR_ENV) == self.marker
            if self._members[key]:
                self.names[key] = " ".join(proc.cmdline()[:4])
        return self._members[key]

    def _sample(self) -> None:
        for proc in psutil.process_iter():
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    if self._member(proc, key):
                        times = proc.cpu_times()
                        self.cpu[key] = times.user + times.system
            except psutil.Error:
                continue

    def run(self) -> None:
        while not self._stop_event.is_set():
            self._sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self._sample()  # the pools may outlive the command by a moment


def run_campaign(argv: list[str], env: dict, dashboard: bool, interval: float) -> tuple[int, float, CampaignSampler, float]:
    """Run the campaign command; returns exit code, wall seconds, the sampler and the start epoch."""
    start_epoch, start = time.time(), time.perf_counter()
    if dashboard:  # a pseudo-terminal of 160 x 50, read and discarded
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=ROOT)
        os.close(slave)

        def drain() -> None:
            while True:
                try:
                    if not os.read(master, 65536):
                        break
                except OSError:
                    break

        threading.Thread(target=drain, daemon=True).start()
    else:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
    sampler = CampaignSampler(proc.pid, env[TIMING_DIR_ENV], interval)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    sampler.stop()
    return code, wall, sampler, start_epoch


def read_records(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def summarise(records: list[dict], sampler: CampaignSampler, driver_pid: int, wall: float, start_epoch: float) -> dict:
    """The figures printed by :func:`main` (seconds, and shares of the total CPU)."""
    compute = {kind: sum(r[f"{kind}_cpu"] for r in records) for kind in ("lammps", "torch")}
    worker_pids = {r["pid"] for r in records if r["pid"] != driver_pid}
    by_role = {"driver": 0.0, "workers": 0.0, "parsl": 0.0, "lammps children": 0.0}
    for key, cpu in sampler.cpu.items():
        pid, name = key[0], sampler.names.get(key, "")
        if pid == driver_pid:
            by_role["driver"] += cpu
        elif pid in worker_pids:
            by_role["workers"] += cpu
        elif "lmp" in name or "mpiexec" in name:
            by_role["lammps children"] += cpu
        else:
            by_role["parsl"] += cpu
    total = sum(by_role.values())
    worker_records = [r for r in records if r["pid"] in worker_pids]
    driver_records = [r for r in records if r["pid"] == driver_pid]
    task_thread_cpu = sum(r["cpu"] for r in worker_records)
    task_process_cpu = sum(r["process_cpu"] for r in worker_records)
    task_compute = sum(r["lammps_cpu"] + r["torch_cpu"] for r in worker_records)
    driver_compute = sum(r["lammps_cpu"] + r["torch_cpu"] for r in driver_records)
    orchestration = {
        DRIVER: by_role["driver"] - driver_compute,
        "Parsl interchange and worker pools": by_role["parsl"],
        "workers between tasks (Parsl worker loop, imports)": by_role["workers"] - task_process_cpu,
        STORE_IO: task_process_cpu - task_thread_cpu,
    }
    rest = {**orchestration, TASK_NUMPY: task_thread_cpu - task_compute}
    science = compute["lammps"] + compute["torch"]
    app_starts = [r["start"] for r in records if r["pid"] in worker_pids]
    app_ends = [r["end"] for r in records if r["pid"] in worker_pids]
    return {
        "wall_s": wall, "total_cpu_s": total, "busy_cores": total / wall if wall else 0.0,
        "lammps_cpu_s": compute["lammps"], "torch_cpu_s": compute["torch"], "rest_cpu_s": rest,
        "lammps_children_cpu_s": by_role["lammps children"],
        "tasks": len(records), "failed_tasks": sum(not r["ok"] for r in records),
        "overhead_share": 1.0 - science / total if total else float("nan"),
        "orchestration_share": sum(orchestration.values()) / total if total else float("nan"),
        "first_task_after_s": (min(app_starts) - start_epoch) if app_starts else None,
        "after_last_task_s": (start_epoch + wall - max(app_ends)) if app_ends else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(ROOT / "configs" / "demo.toml"))
    parser.add_argument("--site", default=None, help="site for 'campaign run' (default: the config's)")
    parser.add_argument("--no-dashboard", action="store_true", help="run without the live dashboard")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between CPU samples")
    parser.add_argument("--keep", default=None, help="folder to keep the store and timing records in")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mapcvd-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    timing, store = work / "timing", work / "campaign.zarr"
    if store.exists() or timing.exists():
        print(f"error: {work} already holds a campaign; give an empty --keep folder", file=sys.stderr)
        return 2
    timing.mkdir()
    mapcvd = shutil.which("mapcvd") or str(Path(sys.executable).with_name("mapcvd"))
    argv = [mapcvd, "campaign", "run", args.config, "--store", str(store)]
    argv += ["--site", args.site] if args.site else []
    argv += ["--no-dashboard"] if args.no_dashboard else []
    env = {**os.environ, TIMING_DIR_ENV: str(timing)}
    print(f"running: {' '.join(argv)}  ({'with' if not args.no_dashboard else 'without'} the live dashboard)",
          flush=True)
    code, wall, sampler, start_epoch = run_campaign(argv, env, not args.no_dashboard, args.interval)
    if code != 0:
        print(f"error: the campaign exited with {code}; see {store.parent}", file=sys.stderr)
        return 1
    figures = summarise(read_records(timing), sampler, sampler.root, wall, start_epoch)
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    figures["config"], figures["dashboard"] = args.config, not args.no_dashboard
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        total = figures["total_cpu_s"]
        print(f"machine: {figures['machine']}")
        print(f"campaign wall time {wall:.0f} s; CPU of all its processes {total:.0f} s "
              f"({figures['busy_cores']:.2f} cores busy on average); {figures['tasks']} tasks "
              f"({figures['failed_tasks']} failed)")
        print(f"  inside LAMMPS  {figures['lammps_cpu_s']:8.1f} s  {figures['lammps_cpu_s'] / total:6.1%}")
        print(f"  inside torch   {figures['torch_cpu_s']:8.1f} s  {figures['torch_cpu_s'] / total:6.1%}")
        for name, seconds in figures["rest_cpu_s"].items():
            print(f"  {name:52s} {seconds:8.1f} s  {seconds / total:6.1%}")
        print(f"first task started {figures['first_task_after_s']:.1f} s after launch; "
              f"the command exited {figures['after_last_task_s']:.1f} s after the last task ended")
        verdict = "meets" if figures["orchestration_share"] <= GOAL_OVERHEAD else "misses"
        print(f"orchestration, store and dashboard: {figures['orchestration_share']:.1%} of the campaign's CPU "
              f"({verdict} the <= {GOAL_OVERHEAD:.0%} goal); everything but LAMMPS and torch, including the "
              f"numpy science inside tasks: {figures['overhead_share']:.1%}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
