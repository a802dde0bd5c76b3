"""Benchmark of the MD engine: ReaxFF cost per step and the Python-driven cycle overhead.

Prints, for silica + one water at about 200 and 600 atoms (ReaxFF ``ffield.SiOH``
with QEq, NVT 10 K, 0.5 fs, as MAP's environment):

* ms per MD step;
* the overhead of one Python-driven MAP cycle (move the tether, run 20 steps, read
  the per-step energies and the water's position) against the same steps run inside
  LAMMPS alone (one ``run`` command, no Python in between), measured in one process,
  interleaved, median of repeats. Goal: <= 2 %.

Usage: ``python benchmarks/md_engine.py [--cycles 20] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from mapcvd.data import data_path
from mapcvd.md.engine import Engine
from mapcvd.md.potentials import reaxff
from mapcvd.md.structures import read_structure
from mapcvd.md.water import find_water

STEPS_PER_CYCLE = 20
TEMPERATURE, TIMESTEP = 10.0, 0.5


def bench(structure: str, cycles: int, repeats: int) -> dict:
    atoms = read_structure(structure)
    o_index, _ = find_water(atoms)
    potential = reaxff(data_path("forcefields", "ffield.SiOH"), ["Si", "O", "H"])
    with Engine(atoms, potential) as engine:
        centre = engine.get_positions(unwrapped=True)[o_index].copy()
        engine.set_tether([o_index], centre, k=5.0)
        engine.run_nvt(STEPS_PER_CYCLE, TEMPERATURE, timestep_fs=TIMESTEP)  # set-up run

        def python_cycles() -> float:
            start = time.perf_counter()
            for _ in range(cycles):
                centre[0] += 0.01
                engine.move_tether(centre)
                trace = engine.run_nvt(STEPS_PER_CYCLE, TEMPERATURE, timestep_fs=TIMESTEP)
                engine.get_positions(unwrapped=True)[o_index]
                trace.potential_energy.mean()
            return time.perf_counter() - start

        def lammps_alone() -> float:
            # the same number of steps in one LAMMPS command (same fixes, no Python between)
            start = time.perf_counter()
            engine.lammps.command(f"run {cycles * STEPS_PER_CYCLE} pre no post no")
            return time.perf_counter() - start

        py, raw = [], []
        for _ in range(repeats):
            py.append(python_cycles())
            raw.append(lammps_alone())
    t_py, t_raw = statistics.median(py), statistics.median(raw)
    return {
        "structure": structure,
        "atoms": len(atoms),
        "ms_per_step": 1e3 * t_raw / (cycles * STEPS_PER_CYCLE),
        "cycle_ms": 1e3 * t_py / cycles,
        "overhead_pct": 100.0 * (t_py - t_raw) / t_raw,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--structures", nargs="+", default=["silica-192-water.extxyz", "silica-576-water.extxyz"],
        help="packaged structure names or files of silica with one water",
    )
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, {platform.processor() or platform.platform()}")
    print(f"ReaxFF ffield.SiOH + QEq, NVT {TEMPERATURE} K, {TIMESTEP} fs, one LAMMPS process (1 core)")
    print(f"{'structure':28s} {'atoms':>6s} {'ms/step':>9s} {'cycle ms':>9s} {'overhead':>9s}")
    for structure in args.structures:
        r = bench(structure, args.cycles, args.repeats)
        print(
            f"{Path(r['structure']).name:28s} {r['atoms']:6d} {r['ms_per_step']:9.2f} {r['cycle_ms']:9.1f} "
            f"{r['overhead_pct']:8.2f}%"
        )
    print(f"cycle = move tether + run {STEPS_PER_CYCLE} steps + read energies and positions; "
          "overhead = (Python-driven - LAMMPS alone) / LAMMPS alone; goal <= 2%")


if __name__ == "__main__":
    main()
