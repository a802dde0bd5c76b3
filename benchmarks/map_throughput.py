"""Benchmark of MAP's throughput: actor actions/s and overhead, actor scaling, sum tree, learner, store.

On the shipped demo system (``configs/demo.toml``: 192-atom amorphous silica + one H2O,
ReaxFF ``ffield.SiOH``, 20 MD steps of 0.5 fs per action), prints:

1. **One actor, in this process** (:func:`mapcvd.map.actor.run_actor` on a fresh
   store, no learner: the untrained network's weights): actions/s, and the share of
   an action's wall time spent outside the LAMMPS MD of the action (``run_nvt``):
   episode start-up (a new LAMMPS and its first relaxation), density grid, Q-network
   inference, n-step bookkeeping, replay and episode-log writes, weight polling
   (goal <= 5 %). The MD time is measured by timing ``Engine.run_nvt`` itself.
2. **Two actors over one** on this machine: ``mapcvd map train --actors 1`` and
   ``--actors 2`` (local site, the learner alongside), each for ``--minutes``; the
   ratio of all actors' actions per second (goal >= 1.8 on 2 cores), with the
   learner's CPU share of the run (from the apps' timing records).
3. **Sum tree**: sample + update operations per second at batch 64 over a
   2 x 2048-slot tree (goal >= 200k/s), counting each sampled and each updated slot.
4. **Learner and store**: ``benchmarks/map_learner.py --batch 64`` (learner
   updates/s on CPU, or CUDA where torch sees it; the actors' write rate and the
   learner's ingest rate, transitions/s).

Usage: ``python benchmarks/map_throughput.py [--actor-seconds 60] [--minutes 1.5] [--skip-scaling]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def one_actor(work: Path, seconds: float) -> dict:
    """Actions/s and the share outside MD of one actor run in this process."""
    from mapcvd.config import load_config
    from mapcvd.map.actor import run_actor
    from mapcvd.map.training_settings import TrainingSettings
    from mapcvd.md.engine import Engine
    from mapcvd.store import create_campaign
    from mapcvd.timing import clock
    from mapcvd.workflows.map_training import prepare_map

    config = load_config(None)
    training = TrainingSettings.from_table(config["map"])
    root = create_campaign(work / "actor.zarr", config=config)
    system = prepare_map(root, config["map"])
    md = {"seconds": 0.0, "calls": 0}
    original = Engine.run_nvt

    def timed_run_nvt(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            md["seconds"] += time.perf_counter() - t0
            md["calls"] += 1

    Engine.run_nvt = timed_run_nvt
    before = clock.snapshot()
    start = time.perf_counter()
    try:
        out = run_actor(root, system, training, actor=0, deadline=time.time() + seconds, seed=1)
    finally:
        Engine.run_nvt = original
    wall = time.perf_counter() - start
    after = clock.snapshot()
    actions = out["actions"]
    return {"actions": actions, "episodes": out["episodes"], "wall": wall, "md": md["seconds"],
            "md_calls": md["calls"], "lammps": after["lammps_wall"] - before["lammps_wall"],
            "torch": after["torch_wall"] - before["torch_wall"], "atoms": len(system.atoms)}


def train(work: Path, actors: int, minutes: float) -> dict:
    """Actions per second over all actors of ``map train --actors N``, and the learner's CPU share."""
    store = work / f"scale{actors}.zarr"
    timing = work / f"timing{actors}"
    timing.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MAPCVD_TIMING_DIR": str(timing)}
    cmd = [sys.executable, "-m", "mapcvd.cli", "map", "train", "--store", str(store), "--site", "local",
           "--actors", str(actors), "--minutes", str(minutes), "--seed", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"map train --actors {actors} failed: {done.stderr.strip()}")
    from mapcvd.store import open_campaign
    from mapcvd.store.episodes import EpisodeLog

    root = open_campaign(store, "r")
    actions = sum(int(EpisodeLog(root, f"map/episodes/actor_{i:03d}").summary()["actions"].sum())
                  for i in range(actors))
    tasks = [json.loads(line) for path in timing.glob("*.jsonl") for line in path.read_text().splitlines()]
    learner = [t for t in tasks if t["name"] == "learner_task"]
    actor_tasks = [t for t in tasks if t["name"] == "actor_task"]
    span = max(t["wall"] for t in actor_tasks)
    learner_cpu = sum(t["process_cpu"] for t in learner)
    return {"actions": actions, "seconds": span, "rate": actions / span,
            "learner_cpu_share": learner_cpu / (span * (os.cpu_count() or 1))}


def sum_tree_ops(seconds: float = 3.0, batch: int = 64, size: int = 4096) -> float:
    """Sampled plus updated slots per second of the learner's sum tree."""
    from mapcvd.map.sumtree import SumTree

    rng = np.random.default_rng(0)
    tree = SumTree(size)
    tree.update(np.arange(size), rng.random(size) + 0.01)
    ops, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        slots, _ = tree.sample(batch, rng)
        tree.update(slots, rng.random(batch) + 0.01)
        ops += 2 * batch
    return ops / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actor-seconds", type=float, default=60.0)
    parser.add_argument("--minutes", type=float, default=1.5, help="Training time of each scaling run.")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(tempfile.mkdtemp(prefix="map-throughput-"))
    try:
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}")
        a = one_actor(work, args.actor_seconds)
        outside = 1.0 - a["md"] / a["wall"]
        print(f"1. one actor, {a['atoms']} atoms: {a['actions']} actions in {a['episodes']} episodes, "
              f"{a['wall']:.1f} s: {a['actions'] / a['wall']:.2f} actions/s, "
              f"{1000 * a['wall'] / max(a['actions'], 1):.0f} ms per action")
        print(f"   MD (run_nvt, {a['md_calls']} calls) {a['md']:.1f} s; all LAMMPS calls {a['lammps']:.1f} s; "
              f"torch {a['torch']:.2f} s")
        print(f"   share of the actor's time outside the actions' MD: {100 * outside:.1f} % (goal <= 5 %); "
              f"outside any LAMMPS call: {100 * (1 - a['lammps'] / a['wall']):.1f} %")
        if not args.skip_scaling:
            one, two = train(work, 1, args.minutes), train(work, 2, args.minutes)
            print(f"2. map train, {args.minutes:g} min each: 1 actor {one['rate']:.2f} actions/s, "
                  f"2 actors {two['rate']:.2f} actions/s: ratio {two['rate'] / one['rate']:.2f} (goal >= 1.8); "
                  f"learner CPU share of the machine {100 * one['learner_cpu_share']:.0f} % (1 actor), "
                  f"{100 * two['learner_cpu_share']:.0f} % (2 actors)")
        print(f"3. sum tree (batch 64, 4096 slots): {sum_tree_ops():,.0f} sample+update operations/s "
              "(goal >= 200,000/s)")
        print("4. learner and store (benchmarks/map_learner.py --batch 64):")
        learner = subprocess.run([sys.executable, str(HERE / "map_learner.py"), "--batch", "64"],
                                 capture_output=True, text=True)
        if learner.returncode != 0:
            sys.exit(f"map_learner.py failed: {learner.stderr.strip()}")
        for line in learner.stdout.strip().splitlines():
            print("   " + line)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
