"""Benchmark: schedules optimised by gradient ascent on the CVD paper's trained NADE-CVD.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, search
for CVD schedules with a REINFORCE agent on their NADE-CVD; mapcvd ships that trained
surrogate. This script runs :func:`mapcvd.cvd.optimise.optimise_schedules` on it (Adam
on the schedule itself, 64 starts x 1,500 steps by default, one thread), with the first
stage optimised ("free") and drawn uniformly and held ("random", as the agent's
episodes start), and prints for each the best, median and mean undiscounted return (sum
over the 20 stages of the predicted mean 2H fraction) and the seconds taken. For
reference, on the same surrogate:

* the paper's strategy: after a uniform random first stage, 3500 K for stages 2-8 and
  2000 K from stage 9 on, with S2 40, H2 100, H2S 60 (mean over 1,000 first stages);
* the paper's random schedules (``PAPER_RANGES.random_schedules(1000, 20, seed)``).

Usage::

    python benchmarks/cvd_optimise.py
    python benchmarks/cvd_optimise.py --starts 64 --steps 1500 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from mapcvd.cvd.optimise import optimise_schedules
from mapcvd.cvd.paper_nade import load_paper_checkpoint
from mapcvd.cvd.ranges import PAPER_RANGES
from mapcvd.cvd.validation import free_run, paper_strategy, schedule_return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the function's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", type=int, default=1000, help="first stages / random schedules for reference")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{torch.get_num_threads()} thread(s), load average {load:.2f}")
    model, ranges, S = load_paper_checkpoint(), PAPER_RANGES, 20
    print(f"surrogate: the CVD paper's trained NADE-CVD (288-Mo slab, {S} stages); return = sum over the stages "
          "of the predicted mean 2H fraction (undiscounted, max about 20)")

    rng = np.random.default_rng(args.seed + 1)
    strategy = schedule_return(free_run(model, paper_strategy(ranges.uniform_start(args.reference, rng), S, ranges),
                                        ranges)[0])
    random = schedule_return(free_run(model, ranges.random_schedules(args.reference, S, args.seed + 2), ranges)[0])
    print(f"reference over {args.reference}: paper strategy after a random first stage: mean {strategy.mean():.4f} "
          f"(median {np.median(strategy):.4f}, best {strategy.max():.4f}); random schedules: mean "
          f"{random.mean():.4f} (best {random.max():.4f})")

    extra = {} if args.lr is None else {"lr": args.lr}
    for first_stage in ("free", "random"):
        cpu = time.process_time()
        r = optimise_schedules(model, ranges, S, starts=args.starts, steps=args.steps, first_stage=first_stage,
                               seed=args.seed, **extra)
        cpu = time.process_time() - cpu
        h = r["history_mean"]
        at = [int(f * (len(h) - 1)) for f in (0.25, 0.5, 1.0)]
        print(f"optimised, first stage {first_stage:6s}: {args.starts} starts x {args.steps} steps in "
              f"{r['seconds']:.1f} s wall ({cpu:.1f} s cpu, {r['seconds'] / args.steps * 1e3:.1f} ms/step); "
              f"return best {r['best_return']:.4f}, median {r['median_return']:.4f}, mean {r['mean_return']:.4f} "
              f"(starts: mean {np.mean(r['initial_returns']):.4f}); mean of the iterates at steps "
              + ", ".join(f"{i + 1}: {h[i]:.3f}" for i in at))
        best = r["schedules"][r["order"][0]]
        print("  best schedule T (K): " + " ".join(f"{v:.0f}" for v in best[:, 0]))
        print("  best schedule S2/H2/H2S: " + " ".join(f"{a:.0f}/{b:.0f}/{c:.0f}" for a, b, c in best[:, 1:]))
        print("  predicted 2H per stage: " + " ".join(f"{v:.2f}" for v in r["z"][r["order"][0], :, 0]))


if __name__ == "__main__":
    main()
