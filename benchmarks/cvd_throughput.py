"""Benchmark of the CVD agent and surrogate on CPU.

Prints, for the CVD paper's own trained NADE-CVD (shipped, ``--surrogate paper``) and
for mapcvd's NADE-CVD of the same sizes (encoder 24/48/72, LSTM 128, decoder 72/24;
Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3):

* REINFORCE updates per second on one thread (one update = a batch of 32 episodes of
  20 stages: rollout through the frozen surrogate plus one Adam step), and the
  projected time of 15,000 updates against the 60 s goal (the paper's public code,
  measured on this project's machine: 0.275 s per update, 69 minutes for 15,000);
* NADE training throughput: sequences (runs of 20 stages) per second, batch 32;
* staged reactive MD (ReaxFF, :func:`mapcvd.cvd.rmd.run_schedule`) of the laptop slab
  of ``configs/demo.toml`` ``[cvd]`` along one random schedule of the paper's recipe:
  simulated ps per hour on one core, and the share of wall time spent outside LAMMPS
  (goal <= 5%; ``1 - md_seconds / wall_seconds``), with the part of the LAMMPS time
  spent building engines when gas atoms are added or removed.

Usage: ``python benchmarks/cvd_throughput.py [--updates 300] [--threads 1] [--skip-rmd | --rmd-only]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from mapcvd.cvd.agent import PolicyValue, reinforce_update, rollout
from mapcvd.cvd.nade import NadeCVD, train_nade
from mapcvd.cvd.paper_nade import load_paper_checkpoint
from mapcvd.cvd.ranges import PAPER_RANGES

GOAL_UPDATES = 15_000
GOAL_SECONDS = 60.0
#: The paper's public code on this project's machine, seconds per update (issue 12).
PAPER_CODE_S = 0.275
GOAL_OUTSIDE_LAMMPS = 0.05


def bench_agent(n_updates: int, batch: int = 32, n_stages: int = 20, surrogate: str = "paper") -> float:
    """Seconds per REINFORCE update (median of 3 blocks of ``n_updates``).

    ``surrogate``: ``paper`` (the shipped trained NADE-CVD) or ``nade`` (mapcvd's
    NadeCVD of the same sizes, random weights). The policy is the one ``cvd agent``
    trains (72/24 trunk, means of the next conditions anywhere in the range).
    """
    torch.manual_seed(0)
    nade = load_paper_checkpoint() if surrogate == "paper" else NadeCVD().eval().requires_grad_(False)
    policy = PolicyValue(input_size=nade.hidden_size, target_box=(PAPER_RANGES.low, PAPER_RANGES.high))
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3, foreach=True)
    gen = torch.Generator().manual_seed(0)
    lo = torch.tensor(PAPER_RANGES.low)
    span = torch.tensor(PAPER_RANGES.span)

    def one() -> None:
        x0 = lo + torch.rand(batch, 4, generator=gen) * span
        reinforce_update(policy, opt, rollout(nade, policy, x0, n_stages, None, PAPER_RANGES, gen))

    for _ in range(20):  # warm-up
        one()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n_updates):
            one()
        times.append((time.perf_counter() - t0) / n_updates)
    return float(np.median(times))


def bench_nade(n_runs: int = 512, n_stages: int = 20, epochs: int = 3) -> float:
    """NADE training sequences per second (batch 32, no validation cost counted)."""
    rng = np.random.default_rng(0)
    X = PAPER_RANGES.random_schedules(n_runs, n_stages, rng)
    Z = rng.dirichlet(np.ones(3), size=(n_runs, n_stages))
    train_nade(X, Z, epochs=1, validation_fraction=0.0, patience=None)  # warm-up
    t0 = time.perf_counter()
    train_nade(X, Z, epochs=epochs, validation_fraction=0.0, patience=None)
    return epochs * n_runs / (time.perf_counter() - t0)


def bench_rmd(seed: int = 0) -> dict:
    """One staged reactive-MD run of the demo ``[cvd]`` settings along a random schedule.

    Returns the run's figures: ``ps_per_hour`` (simulated ps per wall hour, one core),
    ``ps_per_cpu_hour`` (per hour of this process's CPU time: the one-core figure when
    other work shares the cores), ``cpu_seconds``,
    ``outside`` (share of wall time outside LAMMPS), ``build`` (share spent building
    LAMMPS engines), ``ms_per_step``, ``atoms`` (mean), ``wall_seconds``, ``n_builds``.
    """
    from mapcvd.config import load_config
    from mapcvd.cvd.rmd import RmdSettings, run_schedule

    settings = RmdSettings.from_config(load_config()["cvd"])
    schedule = settings.ranges.random_schedules(1, settings.n_stages, seed)[0]
    cpu0 = time.process_time()
    result = run_schedule(schedule, settings, seed=seed)
    cpu = time.process_time() - cpu0
    steps = len(schedule) * result.steps_per_stage
    return {
        "settings": settings,
        "ps_per_hour": result.simulated_ps / (result.wall_seconds / 3600.0),
        "ps_per_cpu_hour": result.simulated_ps / (cpu / 3600.0),
        "cpu_seconds": cpu,
        "outside": 1.0 - result.md_seconds / result.wall_seconds,
        "build": result.build_seconds / result.wall_seconds,
        "ms_per_step": 1e3 * (result.md_seconds - result.build_seconds) / steps,
        "atoms": float(result.n_atoms.mean()),
        "wall_seconds": result.wall_seconds,
        "simulated_ps": result.simulated_ps,
        "n_builds": result.n_builds,
    }


def report_rmd(seed: int = 0) -> None:
    """Print the reactive-MD figures of :func:`bench_rmd`."""
    r = bench_rmd(seed)
    s = r["settings"]
    verdict = "meets" if r["outside"] <= GOAL_OUTSIDE_LAMMPS else "misses"
    print(f"reactive MD ({s.n_mo}-Mo slab, {s.n_stages} stages x {s.stage_ps:g} ps, {s.timestep_fs:g} fs steps, "
          f"mean {r['atoms']:.0f} atoms): {r['simulated_ps']:.2f} ps in {r['wall_seconds']:.1f} s = "
          f"{r['ps_per_hour']:.0f} ps/hour per core ({r['ms_per_step']:.2f} ms/step)")
    print(f"reactive MD CPU time {r['cpu_seconds']:.1f} s = {r['ps_per_cpu_hour']:.0f} ps per CPU-hour "
          f"(the one-core figure if other work shared the cores)")
    print(f"reactive MD wall time outside LAMMPS: {r['outside']:.2%} ({verdict} the "
          f"{GOAL_OUTSIDE_LAMMPS:.0%} goal); engine rebuilds ({r['n_builds']}): {r['build']:.2%} of wall time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=300, help="updates per timing block")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--skip-rmd", action="store_true", help="leave out the reactive-MD figure")
    which.add_argument("--rmd-only", action="store_true", help="only the reactive-MD figure")
    ap.add_argument("--seed", type=int, default=0, help="seed of the reactive-MD schedule and run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.rmd_only:
        report_rmd(args.seed)
        return
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, {torch.get_num_threads()} thread(s)")
    for surrogate, name in (("paper", "the paper's trained NADE-CVD"), ("nade", "mapcvd's NadeCVD, same sizes")):
        per_update = bench_agent(args.updates, surrogate=surrogate)
        projected = per_update * GOAL_UPDATES
        verdict = "meets" if projected <= GOAL_SECONDS else f"misses by {projected / GOAL_SECONDS:.2f}x"
        print(f"REINFORCE on {name} (batch 32 x 20 stages): "
              f"{per_update * 1e3:.2f} ms/update = {1.0 / per_update:.0f} updates/s")
        print(f"  projected {GOAL_UPDATES:,} updates: {projected:.0f} s ({verdict} the {GOAL_SECONDS:.0f} s goal); "
              f"the paper's code {PAPER_CODE_S} s/update = {PAPER_CODE_S * GOAL_UPDATES / 60:.0f} min, "
              f"{PAPER_CODE_S / per_update:.0f}x slower")
    print(f"NADE training: {bench_nade():.0f} sequences/s (20 stages, batch 32)")
    if not args.skip_rmd:
        report_rmd(args.seed)


if __name__ == "__main__":
    main()
