"""Staged reactive MD of a MoO3 slab in S2/H2S/H2 gas: one run of a CVD schedule.

The method of Rajak et al., "Autonomous reinforcement learning agent for chemical vapor
deposition synthesis of quantum materials", npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3: an alpha-MoO3 double layer sits in a gas of S2, H2 and
H2S; the run is split into stages, each set by ``X_t = (T, n_S2, n_H2, n_H2S)``. The
bare slab, cut from the bulk crystal, is first relaxed by a few conjugate-gradient
iterations (its surfaces release about 0.9 eV per Mo). At the start of every stage

1. everything in the gas phase but the feed gas (H2O, SO, SO2, O2, S atoms and chains,
   SH, H, ...) is taken out, as the carrier gas of a flow reactor carries it away
   (``exhaust_products``, on by default; in a closed box the fragments pile up until
   the stage's gas no longer fits);
2. the gas is brought to the stage's molecule counts: free molecules of a species are
   inserted into the vacuum without overlap (:func:`mapcvd.md.gas.insert_gas`) or
   removed; only *free* molecules are ever removed, found by bonding connectivity
   (:func:`mapcvd.cvd.species.find_molecules`), so no atom bonded to the slab is taken;
3. the thermostat is set to T_t (Nose-Hoover, 25 fs damping, 0.25 fs steps, as in the
   ReaxFF sulfidation runs of Hong et al., Nano Lett. 17, 4866 (2017)); velocities are
   carried over from the previous stage (new molecules get Maxwell-Boltzmann velocities
   at T_t) and, by default, scaled to T_t;

then the stage runs with ReaxFF (``ffield.MoSOH``, QEq) in LAMMPS, and its end is
recorded: phase fractions (2H, 1T, defect) per Mo (:func:`mapcvd.cvd.phases.classify_mo`),
potential energy, species counts, mean temperature over the second half, atom count and
a frame. Positions and velocities cross stage boundaries; a new LAMMPS engine is built
only when atoms were added or removed (a few ms each: 0.2% of the wall time of a
laptop run, ``benchmarks/cvd_throughput.py``).

The schedule holds absolute molecule counts for the slab simulated; the paper's ranges
for its 288-Mo slab scale with ``n_mo`` (:attr:`RmdSettings.ranges`). Counts are rounded
to whole molecules.

Stage checkpoints: after each finished stage, :func:`run_schedule` can hand a
:class:`StageState` to a callback (``on_stage``), and a run can continue from one
(``resume``). The state holds the structure (positions, velocities, cell, atomic
numbers, molecule labels, ``info``), the per-stage records so far, the state of the
random generator, and the seed of the engine that ran the last stage; as plain arrays
plus JSON (:meth:`StageState.to_arrays`), never pickles. Resuming always builds a new
LAMMPS engine: QEq charges are solved afresh from the positions and the Nose-Hoover
thermostat starts anew, as in any stage that adds or removes atoms. What is and is not
bitwise identical to an uninterrupted run is said at :func:`run_schedule`. This module
knows nothing of where a state is kept (the workflow layer stores it).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units

from mapcvd.cvd.phases import PHASES, classify_mo
from mapcvd.cvd.rmd_settings import RmdSettings
from mapcvd.cvd.schedule import validate_schedule
from mapcvd.cvd.species import Molecules, find_molecules
from mapcvd.errors import InputError, MDError
from mapcvd.md.gas import MOLECULE_ARRAY

#: Order of the gas counts in ``RmdResult.gas_counts`` (as in the schedule's columns 1..3).
GAS_ORDER: tuple[str, str, str] = ("S2", "H2", "H2S")
#: Molecular species reported per stage.
SPECIES: tuple[str, ...] = ("S2", "H2S", "H2", "H2O", "SO", "SO2")
#: Columns of ``RmdResult.exhausted``: gas-phase components taken out at each stage start
#: when ``exhaust_products`` is set, by name; "other" counts the rest (O2, S, S_n, SH, H, ...).
PRODUCTS: tuple[str, ...] = ("H2O", "SO", "SO2", "other")
#: LAMMPS type order of the ReaxFF runs (ffield.MoSOH).
ELEMENTS: tuple[str, ...] = ("Mo", "O", "S", "H")


class GasInsertionError(MDError):
    """No room to insert a stage's gas molecules (the run cannot go on)."""


@dataclass
class RmdResult:
    """What one staged run produced (S stages).

    schedule (S, 4): the (T, n_S2, n_H2, n_H2S) run; fractions (S, 3): (2H, 1T, defect)
    at the end of each stage; gas_counts (S, 3): molecules at each stage start, GAS_ORDER;
    temperature_K (S,): mean over the second half of each stage; energy_eV (S,): PE at
    each stage end; species (S, len(SPECIES)) int; n_atoms (S,) at each stage end;
    frames: positions/numbers/cell per stage end (for validation plots);
    md_seconds (inside LAMMPS) and wall_seconds.

    Added by the implementation: inserted and removed (S, 3) int, molecules of each
    GAS_ORDER species added or taken at each stage start; exhausted (S, 4) int,
    gas-phase components taken out at each stage start (PRODUCTS), and exhausted_atoms
    (S,) int, their atoms; build_seconds, the part of
    md_seconds spent building LAMMPS engines (``n_builds`` of them); steps_per_stage and
    timestep_fs. md_seconds counts every LAMMPS call: engine builds, the slab relaxation
    (once per process and slab), the MD runs and the gathers of positions/velocities;
    resumed_stages, the stages taken from a :class:`StageState` (``resume``), whose
    timings and builds the run's include. Each frame is a dict with ``positions``
    (N, 3) A, ``numbers`` (N,), ``cell`` (3, 3) A and ``molecule`` (N,) insertion labels
    (0 = slab); see :func:`frame_atoms`.
    """

    schedule: np.ndarray
    fractions: np.ndarray
    gas_counts: np.ndarray
    temperature_K: np.ndarray
    energy_eV: np.ndarray
    species: np.ndarray
    n_atoms: np.ndarray
    md_seconds: float
    wall_seconds: float
    frames: list = field(default_factory=list)
    inserted: np.ndarray | None = None
    exhausted: np.ndarray | None = None
    exhausted_atoms: np.ndarray | None = None
    removed: np.ndarray | None = None
    build_seconds: float = 0.0
    n_builds: int = 0
    steps_per_stage: int = 0
    timestep_fs: float = 0.0
    resumed_stages: int = 0

    @property
    def simulated_ps(self) -> float:
        """MD time of the whole run in ps."""
        return len(self.schedule) * self.steps_per_stage * self.timestep_fs / 1000.0


def frame_atoms(frame: dict) -> Atoms:
    """An :class:`ase.Atoms` (periodic) from one entry of :attr:`RmdResult.frames`."""
    atoms = Atoms(numbers=frame["numbers"], positions=frame["positions"], cell=frame["cell"], pbc=True)
    atoms.arrays[MOLECULE_ARRAY] = np.asarray(frame["molecule"], dtype=int)
    return atoms


# ------------------------------------------------------------------ velocities
def _dof(n_atoms: int) -> int:
    return max(3 * n_atoms - 3, 1)  # LAMMPS compute temp: 3N minus the 3 of the centre of mass


def kinetic_temperature(velocities: np.ndarray, masses: np.ndarray) -> float:
    """Kinetic temperature (K) of velocities in A/fs, with LAMMPS's 3N - 3 degrees of freedom."""
    v = velocities / units.fs  # A/fs -> ASE velocity units (sqrt(eV/amu))
    kinetic = 0.5 * float(np.sum(masses[:, None] * v * v))
    return 2.0 * kinetic / (_dof(len(masses)) * units.kB)


def maxwell_boltzmann(masses: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Velocities (A/fs) drawn from the Maxwell-Boltzmann distribution at ``temperature``."""
    sigma = np.sqrt(units.kB * temperature / masses)[:, None] * units.fs
    return rng.normal(size=(len(masses), 3)) * sigma


def _zero_momentum(velocities: np.ndarray, masses: np.ndarray) -> np.ndarray:
    return velocities - (masses @ velocities) / masses.sum()


# ------------------------------------------------------------------------- gas
def exhaust_products(atoms: Atoms, velocities: np.ndarray,
                     molecules: Molecules | None = None) -> tuple[Atoms, np.ndarray, np.ndarray, int]:
    """Take out everything in the gas phase but the feed gas, as a flow reactor's carrier gas does.

    A bonded component (:func:`mapcvd.cvd.species.find_molecules`) leaves when it holds
    no Mo (so it is not the slab or bonded to it) and is not a feed molecule (S2, H2 or
    H2S, whose counts the schedule sets): the by-products H2O, SO and SO2, O2 released
    by the slab, and fragments such as S atoms, S_n chains, SH or H. ``molecules``: the
    components of ``atoms`` when already found (the end of the previous stage).

    Returns
    -------
    tuple
        ``(atoms, velocities, exhausted, n_atoms)``: the kept atoms in their order, their
        velocities, the components taken out by :data:`PRODUCTS` name (H2O, SO, SO2,
        then all others), and the number of atoms taken out.
    """
    mol = find_molecules(atoms) if molecules is None else molecules
    has_mo = np.bincount(mol.label, weights=np.asarray(atoms.numbers) == 42, minlength=len(mol)) > 0
    leaving = ~has_mo & ~np.isin(mol.names, GAS_ORDER)
    names = mol.names[leaving]
    named = [int(np.count_nonzero(names == name)) for name in PRODUCTS[:-1]]
    exhausted = np.array([*named, int(leaving.sum()) - sum(named)], dtype=np.int64)
    keep = ~leaving[mol.label]
    if keep.all():
        return atoms, velocities, exhausted, 0
    return atoms[keep], velocities[keep], exhausted, int(np.count_nonzero(~keep))


def adjust_gas(
    atoms: Atoms,
    velocities: np.ndarray,
    targets: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
    settings: RmdSettings,
) -> tuple[Atoms, np.ndarray, np.ndarray, np.ndarray]:
    """Bring the free S2, H2 and H2S molecules to a stage's targets (Rajak et al. 2021).

    Free molecules (bonded components named S2, H2 or H2S by
    :func:`mapcvd.cvd.species.find_molecules`) of a species in excess are removed, chosen
    at random; atoms bonded to the slab are never part of one, so they are never taken.
    Missing molecules are inserted (:func:`mapcvd.md.gas.insert_gas`, at least
    ``settings.min_distance_A`` from every atom) into the widest z gap left by the slab
    and everything bonded to it, with Maxwell-Boltzmann velocities at ``temperature``.
    Method of doi:10.1038/s41524-021-00535-3.

    Parameters
    ----------
    atoms
        The current structure (periodic, orthogonal cell), with molecule labels.
    velocities
        Velocities in A/fs, shape (N, 3), in the order of ``atoms``.
    targets
        Molecules wanted, (n_S2, n_H2, n_H2S) in :data:`GAS_ORDER`, integers.
    temperature
        Temperature (K) of the new molecules' velocities.
    rng
        Random generator of the choices.
    settings
        Supplies ``min_distance_A``.

    Returns
    -------
    tuple
        ``(atoms, velocities, inserted, removed)``: the new structure (kept atoms in
        their order, then the new ones), its velocities, and the molecules of each
        GAS_ORDER species added and removed (int arrays of 3).

    Raises
    ------
    GasInsertionError
        When the missing molecules do not fit.
    """
    from mapcvd.md.gas import insert_gas, vacuum_gap

    mol = find_molecules(atoms)
    current = np.array([mol.count(g) for g in GAS_ORDER])
    excess = np.maximum(current - targets, 0)
    missing = np.maximum(targets - current, 0)
    if excess.any():
        chosen = [rng.choice(mol.free(g), size=int(n), replace=False) for g, n in zip(GAS_ORDER, excess) if n]
        keep = ~np.isin(mol.label, np.concatenate(chosen))
        atoms, velocities, label = atoms[keep], velocities[keep], mol.label[keep]
    else:
        label = mol.label
    if missing.any():
        is_mo = np.asarray(atoms.numbers) == 42
        with_mo = np.bincount(label, weights=is_mo, minlength=int(label.max()) + 1) > 0
        region = vacuum_gap(atoms, with_mo[label])  # the gap between the slab's faces (incl. adsorbates)
        counts = {g: int(n) for g, n in zip(GAS_ORDER, missing)}
        atoms.info["gas_counts"] = {g: int(c) for g, c in zip(GAS_ORDER, targets - missing)}
        n_old = len(atoms)
        try:
            atoms = insert_gas(atoms, counts, rng=rng, min_distance=settings.min_distance_A, region=region)
        except InputError as exc:
            raise GasInsertionError(str(exc)) from exc
        new_v = maxwell_boltzmann(atoms.get_masses()[n_old:], temperature, rng)
        velocities = np.vstack([velocities, new_v])
    return atoms, velocities, missing, excess


# ------------------------------------------------------------------------- run
def _potential():
    from mapcvd.data import data_path
    from mapcvd.md.potentials import reaxff

    return reaxff(data_path("forcefields", "ffield.MoSOH"), ELEMENTS)


@functools.lru_cache(maxsize=4)
def _relaxed_slab_positions(n_mo: int, vacuum: float, iterations: int, skin: float) -> np.ndarray:
    """Positions of the bare slab after ``iterations`` CG steps (cached per process).

    The slab is cut from the bulk crystal; its surfaces relax by about 0.9 eV per Mo
    under ffield.MoSOH, most of it in the first 25 iterations. Without this, that
    energy heats the first stage.
    """
    from mapcvd.md.engine import Engine
    from mapcvd.md.moo3 import moo3_slab

    slab = moo3_slab(n_mo, vacuum=vacuum)
    with Engine(slab, _potential(), neighbor_skin=skin) as engine:
        engine.minimize(fmax=0.05, max_iterations=iterations, max_evaluations=10 * iterations)
        positions = engine.get_positions()
    positions.flags.writeable = False
    return positions


class _Timer:
    """Accumulates the seconds spent in ``with`` blocks (from ``seconds``, e.g. those of a resumed run)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = float(seconds)

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._t0


# ------------------------------------------------------------ stage checkpoints
#: The per-stage records of a run: name -> (dtype, shape of one stage's record). The
#: names are those of :attr:`StageState.outputs` (and, prefixed ``out_``, of its arrays).
STAGE_RECORDS: dict[str, tuple[type, tuple[int, ...]]] = {
    "fractions": (np.float64, (len(PHASES),)), "gas": (np.int64, (len(GAS_ORDER),)),
    "temp": (np.float64, ()), "energy": (np.float64, ()), "species": (np.int64, (len(SPECIES),)),
    "n_atoms": (np.int64, ()), "ins": (np.int64, (len(GAS_ORDER),)), "rem": (np.int64, (len(GAS_ORDER),)),
    "exh": (np.int64, (len(PRODUCTS),)), "exh_atoms": (np.int64, ()),
}
#: Version of the layout of :meth:`StageState.to_arrays` (part of :func:`run_key`).
STATE_FORMAT = 1


def _stack(records: dict[str, list], n: int) -> dict[str, np.ndarray]:
    """The per-stage records of ``n`` stages as arrays of :data:`STAGE_RECORDS`' dtypes and shapes."""
    return {name: np.array(records[name], dtype=dtype).reshape(n, *shape)
            for name, (dtype, shape) in STAGE_RECORDS.items()}


def run_key(schedule: np.ndarray, settings: RmdSettings, seed: int) -> dict:
    """What ties a :class:`StageState` to one attempt of a run (JSON).

    The schedule as run (after :func:`~mapcvd.cvd.schedule.validate_schedule`), every
    field of ``settings``, the MD seed and :data:`STATE_FORMAT`: a state of another
    schedule, other settings or another seed is not a state of this run.
    """
    return {"format": STATE_FORMAT, "seed": int(seed), "settings": dataclasses.asdict(settings),
            "schedule": np.asarray(schedule, dtype=np.float64).tolist()}


@dataclass
class StageState:
    """Everything a staged run needs to continue after its first ``stage`` stages.

    Written after each finished stage of :func:`run_schedule` (``on_stage``) and taken
    by it to continue (``resume``); staged reactive MD of Rajak et al., npj Comput.
    Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3.

    Attributes
    ----------
    stage
        Stages finished (1..S).
    key
        :func:`run_key` of the run.
    atoms
        The structure at the end of stage ``stage``: numbers, positions (A), cell, pbc,
        molecule labels (``arrays["mapcvd_molecule"]``) and ``info`` (the slab's
        ``n_mo``, ``repeat``, ``vacuum`` and the ``gas_counts`` of the last insertion).
    velocities
        Velocities (A/fs), shape (N, 3), in the order of ``atoms``.
    rng_state
        ``bit_generator.state`` of the run's random generator after that stage.
    engine_seed
        Seed of the LAMMPS engine that ran the stage (used again when the next stage
        keeps the engine but a resumed run must build one).
    outputs
        Per-stage records of the finished stages (:data:`STAGE_RECORDS`), ``stage`` rows each.
    frames
        The frame of each finished stage (:attr:`RmdResult.frames`).
    md_seconds, build_seconds, wall_seconds, n_builds
        Timings and engine builds so far, over every process that ran the run.
    """

    stage: int
    key: dict
    atoms: Atoms
    velocities: np.ndarray
    rng_state: dict
    engine_seed: int
    outputs: dict[str, np.ndarray]
    frames: list[dict]
    md_seconds: float = 0.0
    build_seconds: float = 0.0
    wall_seconds: float = 0.0
    n_builds: int = 0

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """The state as plain arrays and JSON metadata (for a store; no pickles).

        Returns
        -------
        arrays : dict of str to numpy.ndarray
            ``numbers``, ``positions``, ``velocities``, ``cell``, ``pbc``, ``molecule``;
            ``out_NAME`` for each per-stage record; the frames concatenated
            (``frame_sizes``, ``frame_positions``, ``frame_numbers``, ``frame_molecule``,
            ``frame_cells``).
        meta : dict
            ``rng_state``, ``engine_seed``, ``info``, the timings and ``n_builds`` (JSON).
            ``stage`` and ``key`` are kept by the caller (the checkpoint's version and key).
        """
        atoms = self.atoms
        arrays = {
            "numbers": np.asarray(atoms.numbers, dtype=np.int64), "positions": atoms.get_positions(),
            "velocities": np.asarray(self.velocities, dtype=np.float64), "cell": np.array(atoms.cell[:]),
            "pbc": np.asarray(atoms.pbc, dtype=bool),
            "molecule": np.asarray(atoms.arrays[MOLECULE_ARRAY], dtype=np.int64),
            **{f"out_{name}": np.asarray(value) for name, value in self.outputs.items()},
        }
        frames = self.frames
        arrays.update(
            frame_sizes=np.array([len(f["numbers"]) for f in frames], dtype=np.int64),
            frame_positions=np.concatenate([f["positions"] for f in frames]).reshape(-1, 3),
            frame_numbers=np.concatenate([f["numbers"] for f in frames]).astype(np.int64),
            frame_molecule=np.concatenate([f["molecule"] for f in frames]).astype(np.int64),
            frame_cells=np.array([f["cell"] for f in frames], dtype=np.float64).reshape(-1, 3, 3),
        )
        info = {k: (list(v) if isinstance(v, tuple) else v) for k, v in atoms.info.items()}
        meta = {"rng_state": self.rng_state, "engine_seed": int(self.engine_seed), "info": info,
                "md_seconds": float(self.md_seconds), "build_seconds": float(self.build_seconds),
                "wall_seconds": float(self.wall_seconds), "n_builds": int(self.n_builds)}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict, *, stage: int, key: dict) -> StageState:
        """Inverse of :meth:`to_arrays`: the state of ``stage`` finished stages of the run ``key``.

        Raises
        ------
        InputError
            When the arrays do not hold ``stage`` stages of a state.
        """
        try:
            atoms = Atoms(numbers=arrays["numbers"], positions=arrays["positions"], cell=arrays["cell"],
                          pbc=arrays["pbc"])
            atoms.arrays[MOLECULE_ARRAY] = np.asarray(arrays["molecule"], dtype=np.int64)
            atoms.info.update(meta["info"])
            outputs = {name: np.asarray(arrays[f"out_{name}"]) for name in STAGE_RECORDS}
            sizes = np.asarray(arrays["frame_sizes"], dtype=np.int64)
            bounds = np.concatenate([[0], np.cumsum(sizes)])
            frames = [{"positions": arrays["frame_positions"][a:b].copy(),
                       "numbers": arrays["frame_numbers"][a:b].copy(), "cell": arrays["frame_cells"][i].copy(),
                       "molecule": arrays["frame_molecule"][a:b].copy()}
                      for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
            state = cls(stage=int(stage), key=key, atoms=atoms, velocities=np.asarray(arrays["velocities"]),
                        rng_state=meta["rng_state"], engine_seed=int(meta["engine_seed"]), outputs=outputs,
                        frames=frames, md_seconds=float(meta["md_seconds"]),
                        build_seconds=float(meta["build_seconds"]), wall_seconds=float(meta["wall_seconds"]),
                        n_builds=int(meta["n_builds"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"not a stage state: {type(exc).__name__}: {exc}") from None
        held = sorted({len(v) for v in outputs.values()} | {len(frames)})
        if held != [state.stage] or state.velocities.shape != (len(atoms), 3):
            raise InputError(f"not a state of {state.stage} finished stages: it holds records and frames of "
                             f"{'/'.join(map(str, held))} stage(s), velocities of shape {state.velocities.shape} "
                             f"for {len(atoms)} atoms")
        return state


def run_schedule(
    schedule: np.ndarray,
    settings: RmdSettings,
    *,
    seed: int = 0,
    progress: Callable[[int, dict], None] | None = None,
    resume: StageState | None = None,
    on_stage: Callable[[StageState], None] | None = None,
) -> RmdResult:
    """Run every stage of ``schedule``; raise :class:`~mapcvd.errors.MDError` on a LAMMPS failure.

    Staged reactive MD of Rajak et al., npj Comput. Mater. 7, 108 (2021),
    doi:10.1038/s41524-021-00535-3 (see the module docstring).

    Parameters
    ----------
    schedule
        Shape (S, 4): ``(T [K], n_S2, n_H2, n_H2S)`` per stage, absolute molecule
        counts for this slab (rounded to integers). Only basic checks here (T > 0,
        counts >= 0); check the ranges with :func:`mapcvd.cvd.schedule.validate_schedule`.
    settings
        Slab size, stage length, timestep, thermostat, insertion distance.
    seed
        Seed of every random choice (initial velocities, gas placement and removal).
    progress
        Called after each stage as ``progress(stage_index, info)``, with ``info`` holding
        ``stage`` (1-based), ``n_stages``, ``T_target``, ``T_mean``, ``fractions``
        (dict), ``gas`` (dict, at the stage start), ``n_atoms``, ``energy_eV``, ``seconds``.
    resume
        A :class:`StageState` of this run (its ``key`` must be :func:`run_key` of
        ``schedule``, ``settings`` and ``seed``): the run continues after its
        ``stage`` finished stages, whose records and frames are kept as they are; none
        is run again (a state of every stage returns at once).
    on_stage
        Called after each finished stage, before ``progress``, with the
        :class:`StageState` after it (fresh copies); what it raises stops the run (the
        engine is closed).

    Returns
    -------
    RmdResult
        ``resumed_stages`` is ``resume.stage`` (0 without ``resume``); the timings and
        ``n_builds`` add those of the state.

    Raises
    ------
    InputError
        A malformed schedule, or a ``resume`` state of another run.
    MDError
        A LAMMPS failure (e.g. :class:`~mapcvd.errors.LostAtomsError`), a non-finite
        energy or temperature (diverged QEq or integration), or
        :class:`GasInsertionError` when a stage's gas does not fit; the message names
        the stage.

    Notes
    -----
    A resumed run builds a new LAMMPS engine for its first stage. Its random generator
    is the stored one, and the seed of a new engine is drawn from it exactly when the
    uninterrupted run draws one (at stage 1 and where atoms are added, removed or
    exhausted); where the uninterrupted run would keep its engine, the resumed run
    builds one with the stored ``engine_seed`` instead, drawing nothing. So:

    * the finished stages' records and frames are the stored ones, bit for bit;
    * when the first resumed stage adds, removes or exhausts atoms (most stages of a
      random schedule), the uninterrupted run builds a new engine there too, from the
      same positions, velocities, types and random state, and the rest of the run is
      bitwise identical to it (serial LAMMPS on the same build; tested);
    * when it changes no atom, the uninterrupted run goes on in its engine, which keeps
      its QEq charge history (the start of the next charge solve) and LAMMPS's own atom
      order (the order of force sums); the resumed run's new engine starts both afresh,
      so its energies differ from there by about the QEq tolerance (1e-6 eV after 40
      steps of the 8-Mo slab, measured), and the trajectory diverges as MD does. When
      that stage also keeps the last stage's temperature, the uninterrupted run keeps
      its Nose-Hoover chain's variables (the thermostat's friction), which a new engine
      starts at zero: the difference is then larger (0.16 eV after 40 steps, measured),
      the ensemble the same. ``n_builds`` is then one higher;
    * timings (``md_seconds``, ``wall_seconds``, ``build_seconds``) add both processes'
      and never repeat.
    """
    from mapcvd.md.engine import Engine
    from mapcvd.md.moo3 import moo3_slab

    wall0 = time.perf_counter()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    sched = validate_schedule(schedule, source="schedule")
    targets = np.rint(sched[:, 1:]).astype(np.int64)
    n_stages, steps = len(sched), settings.stage_steps
    key = run_key(sched, settings, seed)
    rng = np.random.default_rng(seed)
    potential = _potential()
    if resume is None:
        md, build, wall_before = _Timer(), _Timer(), 0.0
        first, n_builds, engine_seed, frames = 0, 0, 0, []
        out = {name: [] for name in STAGE_RECORDS}
        atoms = moo3_slab(int(settings.n_mo), vacuum=settings.vacuum_A)
        if settings.relax_iterations > 0:
            try:
                with md:
                    atoms.positions = _relaxed_slab_positions(int(settings.n_mo), float(settings.vacuum_A),
                                                              int(settings.relax_iterations),
                                                              float(settings.neighbor_skin_A))
            except MDError as exc:
                raise type(exc)(f"slab relaxation: {exc}") from exc
        velocities = maxwell_boltzmann(atoms.get_masses(), float(sched[0, 0]), rng)
    else:
        if resume.key != key or not 1 <= resume.stage <= n_stages:
            raise InputError(f"the state of {resume.stage} stage(s) is not one of this run "
                             "(another schedule, settings or seed)")
        md, build, wall_before = _Timer(resume.md_seconds), _Timer(resume.build_seconds), resume.wall_seconds
        first, n_builds, engine_seed = resume.stage, resume.n_builds, resume.engine_seed
        frames = [dict(f) for f in resume.frames]
        out = {name: list(resume.outputs[name]) for name in STAGE_RECORDS}
        atoms, velocities = resume.atoms.copy(), np.array(resume.velocities, dtype=np.float64)
        rng.bit_generator.state = resume.rng_state
    engine = None
    # the components at the end of the last stage
    species: Molecules | None = find_molecules(atoms) if first else None
    try:
        for k in range(first, n_stages):
            t_stage = time.perf_counter()
            temperature = float(sched[k, 0])
            where = f"stage {k + 1}/{n_stages} (T {temperature:g} K)"
            exhausted, exhausted_atoms = np.zeros(len(PRODUCTS), dtype=np.int64), 0
            if settings.exhaust_products and k > 0:
                atoms, velocities, exhausted, exhausted_atoms = exhaust_products(atoms, velocities, species)
            try:
                atoms, velocities, inserted, removed = adjust_gas(atoms, velocities, targets[k], temperature, rng, settings)
            except GasInsertionError as exc:
                raise GasInsertionError(f"{where}: {exc}") from exc
            changed = bool(inserted.any() or removed.any() or exhausted.any())
            masses = atoms.get_masses()
            velocities = _zero_momentum(velocities, masses)
            if settings.rescale_velocities:
                velocities = velocities * np.sqrt(temperature / max(kinetic_temperature(velocities, masses), 1e-12))
            gas = find_molecules(atoms)
            try:
                if changed or engine is None:
                    if changed or k == 0:  # where an uninterrupted run draws a new engine's seed
                        engine_seed = int(rng.integers(1, 2**31 - 1))
                    with md, build:
                        if engine is not None:
                            engine.close()
                        engine = Engine(atoms, potential, neighbor_skin=settings.neighbor_skin_A, seed=engine_seed)
                    n_builds += 1
                with md:
                    engine.set_velocities(velocities)
                    trace = engine.run_nvt(steps, temperature, timestep_fs=settings.timestep_fs,
                                           damping_fs=settings.damping_fs)
                    positions, velocities = engine.get_positions(), engine.get_velocities()
            except MDError as exc:
                raise type(exc)(f"{where}: {exc}") from exc
            if not (np.all(np.isfinite(trace.potential_energy)) and np.all(np.isfinite(trace.temperature))
                    and np.all(np.isfinite(positions))):
                raise MDError(f"{where}: non-finite energy, temperature or positions (QEq or integration diverged)")
            atoms.positions = positions
            species = find_molecules(atoms)
            phases = classify_mo(atoms)
            out["fractions"].append(phases.vector)
            out["gas"].append([gas.count(g) for g in GAS_ORDER])
            out["temp"].append(float(trace.temperature[steps // 2:].mean()))
            out["energy"].append(float(trace.potential_energy[-1]))
            out["species"].append([species.count(s) for s in SPECIES])
            out["n_atoms"].append(len(atoms))
            out["ins"].append(inserted)
            out["rem"].append(removed)
            out["exh"].append(exhausted)
            out["exh_atoms"].append(exhausted_atoms)
            frames.append({
                "positions": atoms.get_positions(), "numbers": atoms.numbers.copy(),
                "cell": np.array(atoms.cell[:]), "molecule": atoms.arrays[MOLECULE_ARRAY].copy(),
            })
            if on_stage is not None:
                on_stage(StageState(
                    stage=k + 1, key=key, atoms=atoms.copy(), velocities=velocities.copy(),
                    rng_state=rng.bit_generator.state, engine_seed=engine_seed, outputs=_stack(out, k + 1),
                    frames=list(frames), md_seconds=md.seconds, build_seconds=build.seconds,
                    wall_seconds=wall_before + time.perf_counter() - wall0, n_builds=n_builds))
            if progress is not None:
                progress(k, {
                    "stage": k + 1, "n_stages": n_stages, "T_target": temperature, "T_mean": out["temp"][-1],
                    "fractions": dict(zip(PHASES, phases.vector.tolist())),
                    "gas": dict(zip(GAS_ORDER, out["gas"][-1])), "n_atoms": len(atoms),
                    "energy_eV": out["energy"][-1], "seconds": time.perf_counter() - t_stage,
                })
    finally:
        if engine is not None:
            engine.close()
    records = _stack(out, n_stages)
    return RmdResult(
        schedule=sched,
        fractions=records["fractions"],
        gas_counts=records["gas"],
        temperature_K=records["temp"],
        energy_eV=records["energy"],
        species=records["species"],
        n_atoms=records["n_atoms"],
        md_seconds=md.seconds,
        wall_seconds=wall_before + time.perf_counter() - wall0,
        frames=frames,
        inserted=records["ins"],
        removed=records["rem"],
        exhausted=records["exh"],
        exhausted_atoms=records["exh_atoms"],
        build_seconds=build.seconds,
        n_builds=n_builds,
        steps_per_stage=steps,
        timestep_fs=settings.timestep_fs,
        resumed_stages=first,
    )
