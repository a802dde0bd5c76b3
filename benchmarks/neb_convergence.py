"""Study of NEB convergence on the demo's ReaxFF segments: which settings make the bands converge.

The segments are those ``map paths`` refines on the demo system (``configs/demo.toml``:
192-atom amorphous silica + one H2O, ReaxFF ``ffield.SiOH`` with QEq): the episode is
played (the straight drag along +x, and ``--random`` episodes of uniform random actions
with fixed seeds, as ``map evaluate --policy random`` plays them), its energy profile is
cut into minimum -> maximum -> minimum segments at the demo's prominence
(:func:`mapcvd.pathways.segments.segment_profile`), and every segment is relaxed by the
climbing-image NEB of :func:`mapcvd.pathways.neb.run_neb` (Henkelman, Uberuaga and
Jonsson 2000, doi:10.1063/1.1329672), started along the episode's own frames, once per
variant of the settings. A variant changes one thing of the demo's settings at a time
(the number of steps, the length cap of a step, the optimiser, the spring, the images,
the climbing image, the QEq tolerance of the force field), so that each effect is seen
alone. The segments run on ``--workers`` processes (one LAMMPS each).

Printed per variant: the converged share (``fmax`` reached, as ``map paths`` counts it),
the median and largest final force, the steps and seconds per band, and the mean
refined barrier; with ``--per-segment`` every band, "(plain band)" marking one that
ended without a climbing image (no interior maximum, or its climb ran away). Nothing is
chosen here: the figures say which settings the demo should use (``configs/demo.toml``)
and the README quotes them.

Usage: ``python benchmarks/neb_convergence.py [--random 3] [--workers 2] [--variants demo,steps300,...]
[--per-segment] [--first-seed 1]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: Variant name -> (NebSettings fields over the demo's, QEq tolerance of the force field or None).
VARIANTS: dict[str, tuple[dict, float | None]] = {
    "demo": ({}, None),
    "steps300": ({"max_steps": 300}, None),
    "steps600": ({"max_steps": 600}, None),
    "steps1000": ({"max_steps": 1000}, None),
    "bfgs300": ({"optimizer": "bfgs", "max_steps": 300}, None),
    "ode100": ({"optimizer": "ode"}, None),
    "ode300": ({"optimizer": "ode", "max_steps": 300}, None),
    "spring1_300": ({"spring": 1.0, "max_steps": 300}, None),
    "images6_300": ({"images": 6, "max_steps": 300}, None),
    "qeq1e-8_300": ({"max_steps": 300}, 1e-8),
    "noclimb300": ({"climb": False, "max_steps": 300}, None),
    "move0.2": ({"max_move": 0.2}, None),
    "move0.2_300": ({"max_move": 0.2, "max_steps": 300}, None),
}


def demo_table() -> dict:
    from mapcvd.config import validate  # noqa: PLC0415

    raw = tomllib.loads((REPO / "configs" / "demo.toml").read_text())
    return validate(raw)["map"]


def _system(table: dict, qeq_tolerance: float | None):
    from mapcvd.map.system import build_system  # noqa: PLC0415
    from mapcvd.md.potentials import reaxff  # noqa: PLC0415
    from mapcvd.md.structures import read_structure  # noqa: PLC0415
    from mapcvd.data import data_path  # noqa: PLC0415

    system = build_system(table, read_structure(table["structure"]))
    if qeq_tolerance is not None:
        potential = reaxff(data_path("forcefields", table["forcefield"]), system.potential.elements,
                           qeq_tolerance=qeq_tolerance)
        system = dataclasses.replace(system, potential=potential)
    return system


def play(table: dict, policy: str, seed: int) -> dict:
    """One episode of the demo system: frames, the energy profile and its segments."""
    from mapcvd.map.episode import log_rows, play_episode, straight_drag  # noqa: PLC0415
    from mapcvd.md.engine import Engine  # noqa: PLC0415
    from mapcvd.pathways.segments import profile_of, segment_profile  # noqa: PLC0415

    system = _system(table, None)
    env = system.environment(seed=seed)
    rng = np.random.default_rng(seed)
    chooser = straight_drag if policy == "straight" else (lambda state: (int(rng.integers(5)), None))
    try:
        result = play_episode(env, chooser)
        _, steps, frames = log_rows(env, result, episode=0, epsilon=1.0, weights_version=-1)
    finally:
        env.close()
    with Engine(system.atoms, system.potential) as engine:
        engine.set_positions(frames[0])
        e0 = engine.potential_energy()
    energy = profile_of(e0, steps["energy"])
    segments = segment_profile(energy, table["segment_prominence_eV"])
    return {"label": f"{policy}{seed}", "frames": frames, "energy": energy,
            "segments": [(s.start, s.peak, s.end) for s in segments]}


def relax(table: dict, variant: str, frames: np.ndarray, start: int, end: int) -> dict:
    """One segment's band under one variant (run in a worker process)."""
    from mapcvd.pathways.neb import neb_from_map, run_neb  # noqa: PLC0415

    fields, qeq = VARIANTS[variant]
    system = _system(table, qeq)
    settings = dataclasses.replace(neb_from_map(table), **fields)
    initial, final = system.atoms.copy(), system.atoms.copy()
    initial.positions, final.positions = frames[start], frames[end]
    t0 = time.perf_counter()
    result = run_neb(initial, final, potential=system.potential, settings=settings, guide=frames[start + 1:end])
    return {"converged": bool(result.converged), "fmax": float(result.fmax), "steps": int(result.steps),
            "seconds": time.perf_counter() - t0, "barrier": float(result.barrier_forward),
            "climbed": bool(result.climbed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=3, help="random-action episodes besides the straight drag")
    parser.add_argument("--first-seed", type=int, default=1,
                        help="MD seed of the straight drag and of the first random episode (then +1 each)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--per-segment", action="store_true", help="also print every band of every variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    table = demo_table()
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores; "
          f"{args.workers} worker processes")
    print(f"demo NEB settings: images {table['neb_images']}, max_steps {table['neb_max_steps']}, fmax "
          f"{table['neb_fmax_eV_A']} eV/A, spring {table['neb_spring_eV_A2']} eV/A^2, optimizer "
          f"{table['neb_optimizer']}, climb {table['neb_climb']}, driver {table['neb_driver']}; "
          f"prominence {table['segment_prominence_eV']} eV")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        episodes = list(pool.map(play, [table] * (1 + args.random), ["straight"] + ["random"] * args.random,
                                 [args.first_seed] + list(range(args.first_seed, args.first_seed + args.random))))
        jobs = [(e, s) for e in episodes for s in e["segments"]]
        print(f"{len(episodes)} episodes, {len(jobs)} segments in {time.perf_counter() - t0:.0f} s: "
              + ", ".join(f"{e['label']} {len(e['segments'])}" for e in episodes))
        if not jobs:
            sys.exit("no segment above the prominence: nothing to relax")
        print(f"{'variant':14s} {'converged':>10s} {'fmax med':>9s} {'fmax max':>9s} {'steps':>7s} "
              f"{'s/band':>7s} {'barrier eV':>10s}")
        for variant in variants:
            futures = [pool.submit(relax, table, variant, e["frames"], s[0], s[2]) for e, s in jobs]
            rows = [f.result() for f in futures]
            share = sum(r["converged"] for r in rows) / len(rows)
            fmaxes = [r["fmax"] for r in rows]
            print(f"{variant:14s} {sum(r['converged'] for r in rows):>4d}/{len(rows):<3d}{share:4.0%} "
                  f"{statistics.median(fmaxes):9.3f} {max(fmaxes):9.3f} "
                  f"{statistics.mean(r['steps'] for r in rows):7.0f} "
                  f"{statistics.mean(r['seconds'] for r in rows):7.1f} "
                  f"{statistics.mean(r['barrier'] for r in rows):10.3f}", flush=True)
            if args.per_segment:
                for (episode, segment), r in zip(jobs, rows):
                    print(f"    {episode['label']:>10s} frames {segment[0]:>2d}-{segment[2]:<2d} "
                          f"{'converged' if r['converged'] else 'NOT converged':>13s} fmax {r['fmax']:.3f} "
                          f"steps {r['steps']:>4d} barrier {r['barrier']:.3f} eV {r['seconds']:.0f} s"
                          f"{'' if r['climbed'] else ' (plain band)'}", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
