"""Benchmark of MAP's learning over several seeds: greedy policy against the straight drag and random actions.

Runs the real user path on the shipped small system (``configs/demo.toml``: 192-atom
amorphous silica + one H2O, ReaxFF ``ffield.SiOH``, NVT 10 K, 0.5 fs), once per seed
(``--seeds``, fixed before any run; none is chosen for its outcome):

1. ``mapcvd map train --actors 2 --minutes M`` on the local site into a fresh store;
2. ``mapcvd map evaluate --policy greedy``, ``--policy straight`` (+x at every
   action) and ``--policy random``, ``--episodes`` each, from the same start and MD seeds;
3. the greedy policy of the untrained network (the initial weights every actor and the
   learner start from), so that what training changed is visible.

MAP's claim (Chen et al., seed 000) is energy-efficient pathways: the acceptance is a
greedy policy that crosses the box in at least 80 % of its episodes with a lower
``mean_raw_barrier_eV`` (highest ReaxFF energy along the episode above its start) than
the straight drag. Prints each seed's figures and their mean +- std over seeds.

Usage: ``python benchmarks/map_learning.py [--minutes 20] [--seeds 1,2,3] [--episodes 5] [--keep DIR]``
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


def mapcvd(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "mapcvd.cli", *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"mapcvd {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def untrained_greedy(store: Path, episodes: int) -> dict:
    """The figures of ``map evaluate --json`` for the greedy policy of the initial (untrained) network."""
    from mapcvd.config import config_from_stored  # noqa: PLC0415
    from mapcvd.map.evaluate import evaluate_episode, summarise  # noqa: PLC0415
    from mapcvd.map.learner import state_dict_arrays  # noqa: PLC0415
    from mapcvd.map.system import build_network  # noqa: PLC0415
    from mapcvd.map.training_settings import TrainingSettings  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415
    from mapcvd.workflows.map_training import stored_system  # noqa: PLC0415

    root = open_campaign(store, "r")
    config = config_from_stored(root.attrs["config"], sections=("campaign", "map"), where=str(store))
    table, seed = config["map"], config["campaign"]["seed"]
    system = stored_system(root, table)
    training = TrainingSettings.from_table(table)
    weights = state_dict_arrays(build_network(training, system.channels, seed))
    played = [evaluate_episode(system, training, policy="greedy", weights=weights, seed=seed, episode=k)
              for k in range(episodes)]
    return summarise("greedy", [p[0] for p in played], [p[3] for p in played])


def one_seed(seed: int, args, work: Path) -> dict:
    """Train one store with ``seed`` and evaluate its policies; the figures of each."""
    store = work / f"seed{seed}.zarr"
    start = time.perf_counter()
    mapcvd("map", "train", "--store", str(store), "--site", "local", "--actors", str(args.actors),
           "--minutes", str(args.minutes), "--seed", str(seed))
    figures = {"train_seconds": time.perf_counter() - start}
    for policy in ("greedy", "straight", "random"):
        figures[policy] = json.loads(mapcvd("map", "evaluate", str(store), "--episodes", str(args.episodes),
                                            "--policy", policy, "--json").strip().splitlines()[-1])
    figures["untrained"] = untrained_greedy(store, args.episodes)

    from mapcvd.map.progress import training_snapshot  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    snapshot = training_snapshot(open_campaign(store, "r"))
    figures["actions"] = sum(a.get("actions", 0) for a in snapshot["actors"].values())
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        shutil.move(str(store), args.keep / store.name)
    return figures


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seeds", default="1,2,3", help="Campaign seeds (network initialisation, MD), fixed in advance.")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the stores in this folder.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="map-learning-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.actors} actors, "
          f"{args.minutes:g} min of training per seed, {args.episodes} evaluation episodes per policy")
    rows = {}
    try:
        for seed in seeds:
            f = rows[seed] = one_seed(seed, args, work)
            g, st, r, u = f["greedy"], f["straight"], f["random"], f["untrained"]
            met = g["crossed_fraction"] >= 0.8 and g["mean_raw_barrier_eV"] < st["mean_raw_barrier_eV"]
            print(f"seed {seed}: {f['actions']} actions in {f['train_seconds']:.0f} s; "
                  f"greedy crossed {g['crossed_fraction']:.0%}, raw barrier {g['mean_raw_barrier_eV']:.3f} eV, "
                  f"{g['mean_actions']:.1f} actions, progress {g['mean_progress_A']:+.2f} A | straight crossed "
                  f"{st['crossed_fraction']:.0%}, raw barrier {st['mean_raw_barrier_eV']:.3f} eV | random progress "
                  f"{r['mean_progress_A']:+.2f} A (greedy/random {ratio(g['mean_progress_A'], r['mean_progress_A']):.2f}) "
                  f"| untrained greedy crossed {u['crossed_fraction']:.0%}, raw barrier "
                  f"{u['mean_raw_barrier_eV']:.3f} eV, progress {u['mean_progress_A']:+.2f} A | "
                  f"goal {'met' if met else 'NOT met'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def spread(policy: str, key: str) -> str:
        values = np.array([rows[s][policy][key] for s in seeds], dtype=float)
        return f"{np.nanmean(values):.3f} +- {np.nanstd(values):.3f}"

    print(f"over {len(seeds)} seeds (mean +- std): greedy crossed {spread('greedy', 'crossed_fraction')}, "
          f"raw barrier {spread('greedy', 'mean_raw_barrier_eV')} eV; straight raw barrier "
          f"{spread('straight', 'mean_raw_barrier_eV')} eV; untrained crossed {spread('untrained', 'crossed_fraction')}, "
          f"raw barrier {spread('untrained', 'mean_raw_barrier_eV')} eV")
    ratios = [ratio(rows[s]["greedy"]["mean_progress_A"], rows[s]["random"]["mean_progress_A"]) for s in seeds]
    print(f"greedy/random progress: {np.mean(ratios):.2f} +- {np.std(ratios):.2f}; seeds meeting the goal "
          f"(crossed >= 80 % and raw barrier below the straight drag's): "
          f"{sum(rows[s]['greedy']['crossed_fraction'] >= 0.8 and rows[s]['greedy']['mean_raw_barrier_eV'] < rows[s]['straight']['mean_raw_barrier_eV'] for s in seeds)} of {len(seeds)}")


if __name__ == "__main__":
    main()
