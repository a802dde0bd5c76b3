"""Benchmark of piecewise NEB: parallel segments, and the two NEB drivers on the same endpoints.

Prints:

1. **pNEB scaling** (MAP, Chen et al., seed 000: one NEB per segment, all in parallel).
   The straight drag of the water through the packaged silica (ReaxFF ``ffield.SiOH``,
   195 atoms) is played once and cut into segments; K segments run as Parsl apps
   (``workflows/pathways.py:segment_task``) on a local HighThroughputExecutor with K
   workers: first one at a time (each alone on the executor), then all K at once.
   Reported: the wall time of the K together over the slowest single one. Goal <= 1.3.
   Each segment runs a fixed number of NEB steps (``fmax`` is set unreachably low), so
   all segments do the same work whatever their landscape.
2. **Drivers** on the same endpoints: ASE's NEB driving one LAMMPS in this process
   (``driver="ase"``) against LAMMPS's own ``neb`` with one MPI partition per image
   (``driver="lammps"``, ``mpiexec -np K lmp -partition Kx1``): (a) an Al adatom hop
   on Al(100) with LAMMPS ``eam`` run to convergence (fmax 0.02 eV/A); (b) one ReaxFF
   segment of the drag, a fixed number of steps (time per step, and the band quality
   reached). The faster is :data:`mapcvd.pathways.neb.DEFAULT_DRIVER`.

Usage: ``python benchmarks/pneb_parallel.py [--segments K] [--steps 60] [--images 5] [--skip-drivers]``

Run it on an otherwise idle machine when quoting figures: other heavy work on the same
cores inflates the parallel wall time (K workers share fewer free cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def _drag_store(root_dir: Path, actions: int):
    """A store with the packaged silica + water and its straight drag along +x (the baseline log)."""
    from mapcvd.config import defaults, validate
    from mapcvd.map.episode import STEP_FIELDS, SUMMARY_FIELDS, log_rows, play_episode
    from mapcvd.map.system import build_system
    from mapcvd.md.structures import read_structure
    from mapcvd.pathways.store import BASELINE_LOG
    from mapcvd.store import create_campaign
    from mapcvd.store.atoms import write_atoms
    from mapcvd.store.episodes import EpisodeWriter

    table = dict(defaults()["map"], max_actions=actions)
    config = validate({"campaign": {"site": "local", "seed": 1}, "map": table})
    path = root_dir / "bench.zarr"
    root = create_campaign(path, config=config)
    atoms = read_structure(table["structure"])
    system = build_system(config["map"], atoms)
    write_atoms(root, "map/structure", atoms, attrs={"source": table["structure"], "guided": system.guided.tolist()})
    env = system.environment(seed=1)
    try:
        played = play_episode(env, lambda state: (0, None))
        summary, steps, frames = log_rows(env, played, episode=0, epsilon=0.0, weights_version=-1)
    finally:
        env.close()
    EpisodeWriter(root, BASELINE_LOG, n_atoms=len(atoms), summary_fields=SUMMARY_FIELDS, step_fields=STEP_FIELDS,
                  frames=True).append(summary, steps, frames)
    return path, config, system, frames, steps["energy"]


def _segments(system, frames, step_energies, wanted: int) -> list[tuple[int, int]]:
    """``wanted`` (start, end) frame pairs: the profile's segments, else consecutive windows of the drag."""
    from mapcvd.md.engine import Engine
    from mapcvd.pathways.segments import profile_of, segment_profile

    with Engine(system.atoms, system.potential) as engine:
        engine.set_positions(frames[0])
        e0 = engine.potential_energy()
    found = [(s.start, s.end) for s in segment_profile(profile_of(e0, step_energies), 0.3)]
    width = max((len(frames) - 1) // wanted, 2)
    windows = [(k * width, (k + 1) * width) for k in range(wanted) if (k + 1) * width < len(frames)]
    pairs = (found + [w for w in windows if w not in found])[:wanted]
    if len(pairs) < wanted:
        raise SystemExit(f"only {len(pairs)} segments in the drag; lower --segments or raise --actions")
    return pairs


def bench_parallel(path, config, pairs, settings: dict, workers: int) -> dict:
    import parsl
    from mapcvd.workflows.sites import load_site, run_parsl

    from mapcvd.pathways.store import BASELINE_LOG

    table = config["map"]
    with run_parsl(load_site("local", run_dir=str(Path(path).parent / "runinfo"), gpu=False,
                             max_workers=workers)):
        app = parsl.python_app(_timed_segment, executors=["cpu"])
        warm = parsl.python_app(_sleep, executors=["cpu"])
        [f.result() for f in [warm(1.0) for _ in range(workers)]]  # every worker up

        def run(batch):
            start = time.perf_counter()
            results = [f.result() for f in [app(str(path), table, BASELINE_LOG, 0, a, b, settings) for a, b in batch]]
            return time.perf_counter() - start, results

        singles = [run([pair]) for pair in pairs]
        together, results = run(pairs)
    return {"singles": [wall for wall, _ in singles], "singles_cpu": [r[0]["cpu_seconds"] for _, r in singles],
            "together": together, "together_cpu": [r["cpu_seconds"] for r in results]}


def _timed_segment(*args):
    """``segment_task`` with the CPU time its worker spent (contention shows as wall >> CPU)."""
    import time  # noqa: PLC0415  (shipped to the workers by value)

    from mapcvd.workflows.pathways import segment_task  # noqa: PLC0415

    start = time.process_time()
    result = segment_task(*args)
    return {**result, "cpu_seconds": time.process_time() - start}


def _sleep(seconds: float) -> float:
    import time  # noqa: PLC0415  (the function is shipped to the workers by value, without this module)

    time.sleep(seconds)
    return seconds


def _al_hop():
    from ase.build import add_adsorbate, fcc100
    from ase.constraints import FixAtoms

    from mapcvd.md.lammps_loader import potentials_dir
    from mapcvd.md.potentials import lammps_commands

    slab = fcc100("Al", size=(3, 3, 3), a=4.05)
    add_adsorbate(slab, "Al", 1.8, "hollow")
    slab.center(axis=2, vacuum=5.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag > 2 for atom in slab]))
    final = slab.copy()
    final[-1].x += slab.cell[0, 0] / 3
    potential = lammps_commands(("pair_style eam", f"pair_coeff * * {potentials_dir() / 'Al_jnp.eam'}"), ["Al"])
    return slab, final, potential


def bench_drivers(system, frames, pair, steps: int, images: int) -> list[dict]:
    from mapcvd.pathways.neb import NebSettings, minimize_structure, run_neb

    rows = []
    initial, final, potential = _al_hop()
    for driver in ("ase", "lammps"):
        settings = NebSettings(images=images, fmax=0.02, max_steps=500, driver=driver)
        result = run_neb(initial, final, potential=potential, settings=settings)
        rows.append({"case": "Al adatom, eam, to fmax 0.02", "driver": driver, "seconds": result.seconds,
                     "steps": result.steps, "barrier": result.barrier_forward, "converged": result.converged,
                     "fmax": result.fmax})
    a, b = pair
    start, end = system.atoms.copy(), system.atoms.copy()
    start.positions, end.positions = frames[a], frames[b]
    relax = NebSettings(fmax=0.1)  # the endpoints are minimised once, outside the timings
    start, _ = minimize_structure(start, potential=system.potential, settings=relax)
    end, _ = minimize_structure(end, potential=system.potential, settings=relax)
    for driver in ("ase", "lammps"):
        settings = NebSettings(images=images, fmax=1e-6, max_steps=steps, minimize=False, driver=driver)
        result = run_neb(start, end, potential=system.potential, settings=settings, guide=frames[a + 1 : b])
        rows.append({"case": f"ReaxFF segment {a}->{b}, {steps} steps", "driver": driver, "seconds": result.seconds,
                     "steps": result.steps, "barrier": result.barrier_forward, "converged": result.converged,
                     "fmax": result.fmax})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=os.cpu_count() or 1, help="K segments on K workers")
    parser.add_argument("--steps", type=int, default=60, help="NEB steps per segment (fixed)")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--actions", type=int, default=30, help="actions of the straight drag")
    parser.add_argument("--skip-drivers", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="pneb-bench-") as tmp:
        t = time.perf_counter()
        path, config, system, frames, energies = _drag_store(Path(tmp), args.actions)
        pairs = _segments(system, frames, energies, args.segments)
        print(f"straight drag: {len(frames) - 1} actions in {time.perf_counter() - t:.0f} s; segments {pairs}")
        settings = {"images": args.images, "fmax": 1e-6, "max_steps": args.steps, "minimize": False, "driver": "ase"}
        par = bench_parallel(path, config, pairs, settings, args.segments)
        slowest = max(par["singles"])
        print(f"pNEB: {args.segments} segments x {args.steps} NEB steps x {args.images} images (ReaxFF, 195 atoms)")
        print(f"  single segments alone: {', '.join(f'{s:.1f}' for s in par['singles'])} s wall "
              f"(CPU in the apps: {', '.join(f'{s:.1f}' for s in par['singles_cpu'])} s)")
        print(f"  {args.segments} together on {args.segments} workers: {par['together']:.1f} s wall "
              f"(CPU in the apps: {', '.join(f'{s:.1f}' for s in par['together_cpu'])} s)")
        print(f"  ratio (together / slowest single): {par['together'] / slowest:.2f}   (goal <= 1.3)")
        cpu = max(par["together_cpu"]) / max(par["singles_cpu"])
        print(f"  CPU per app together / alone: {cpu:.2f} (about 1: the extra wall time is waiting for a core)")
        if not args.skip_drivers:
            print("NEB drivers on the same endpoints (ase: ASE NEB + one LAMMPS; lammps: neb, one process per image)")
            for row in bench_drivers(system, frames, pairs[0], args.steps, args.images):
                print(f"  {row['case']:34s} {row['driver']:6s} {row['seconds']:7.1f} s  {row['steps']:4d} steps  "
                      f"barrier {row['barrier']:.3f} eV  max force {row['fmax']:.3g} eV/A  "
                      f"{'converged' if row['converged'] else 'not converged'}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on this machine inflates the times)")


if __name__ == "__main__":
    main()
