"""One LAMMPS instance driven from Python: the simulation engine of every mapcvd layer.

The engine is built from an ASE :class:`~ase.Atoms` and a
:class:`~mapcvd.md.potentials.Potential`. Atom ``i`` of the ``Atoms`` is LAMMPS atom
ID ``i + 1``, and every array the engine returns is in that order (gathered by atom
ID, not in LAMMPS's local storage order, which changes at re-neighbouring).

Units at the interface are always A, eV, fs and K, whatever LAMMPS unit style the
potential needs (ReaxFF runs in ``units real``, kcal/mol).

The harmonic tether of the MAP agent (Chen et al., MAP, seed 000) is an ``addforce``
fix driven by LAMMPS ``internal`` variables, so moving its centre between two runs
costs three variable writes and needs no re-initialisation of LAMMPS: short runs use
``run N pre no post no``. Per-step potential energies and temperatures are recorded
by a ``fix vector`` whose storage window is renewed only every
:data:`RECORD_WINDOW` steps.

LAMMPS is not thread-safe: use one engine per process, serially. The LAMMPS input
text, box and image-flag conversion live in :mod:`mapcvd.md.lammps_io`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from mapcvd.errors import InputError, MDError
from mapcvd.md.lammps_io import (
    box_commands,
    box_of,
    classify,
    decode_images,
    encode_images,
    setup_commands,
    tether_commands,
)
from mapcvd.md.lammps_loader import lammps_module, new_lammps
from mapcvd.md.potentials import Potential
from mapcvd.timing import measure

#: Steps of per-step records kept before the recording fix is renewed (one LAMMPS setup).
RECORD_WINDOW = 100_000


@dataclass
class MDTrace:
    """Per-step records of one MD run (steps 1..N of that run).

    Attributes
    ----------
    potential_energy
        Potential energy in eV at each step, without restraint (tether) energy.
    temperature
        Instantaneous kinetic temperature in K at each step.
    """

    potential_energy: np.ndarray
    temperature: np.ndarray


class Engine:
    """A LAMMPS simulation of one structure under one potential.

    Parameters
    ----------
    atoms
        The structure. Its cell must be orthogonal; a non-periodic direction with
        no cell length gets a shrink-wrapped boundary around the atoms.
    potential
        How forces are computed, with the element order of LAMMPS types.
    log_file
        LAMMPS log file, or ``None`` for no log.
    neighbor_skin
        Neighbour-list skin in A.
    seed
        Seed of the velocity initialisation.

    Raises
    ------
    UnknownElementError
        If ``atoms`` holds an element the potential does not map.
    InputError
        If the cell is not orthogonal or the structure is empty.
    MDError
        For any LAMMPS failure while the system is set up.
    """

    def __init__(
        self,
        atoms: Atoms,
        potential: Potential,
        *,
        log_file: str | None = None,
        neighbor_skin: float = 2.0,
        seed: int = 12345,
    ):
        if len(atoms) == 0:
            raise InputError("cannot build an engine for a structure with no atoms")
        self.potential = potential
        self.symbols = list(atoms.get_chemical_symbols())
        self.types = np.asarray(potential.type_of(self.symbols), dtype=np.int32)
        self.natoms = len(atoms)
        self.seed = int(seed)
        self._e = potential.energy_to_ev
        self._lmp = None
        self._closed = False
        self._needs_setup = True
        self._velocities_set = False
        self._thermostat: tuple | None = None
        self._timestep_fs: float | None = None
        self._record_end = -1
        self._record_start = 0
        self._tether_indices: tuple[int, ...] | None = None
        self._tether_center = np.zeros(3)
        self._last_pe: float | None = None
        with measure("lammps"):
            self._lmp = new_lammps(log_file=log_file)
        try:
            self._setup(atoms, neighbor_skin)
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up
    def _setup(self, atoms: Atoms, skin: float) -> None:
        pbc, lengths, lo, boundary = box_of(atoms)
        positions = atoms.get_positions()
        self.pbc = pbc
        self.cell_lengths = lengths
        self.cell_origin = lo
        p = self.potential
        self.command(box_commands(p, boundary, lo, lo + lengths))
        wrapped, images = self._wrap(positions)
        lmp = self._lmp
        image = [lmp.encode_image_flags(int(a), int(b), int(c)) for a, b, c in images]
        try:
            lmp.create_atoms(
                self.natoms,
                list(range(1, self.natoms + 1)),
                self.types.tolist(),
                wrapped.ravel().tolist(),
                image=image,
            )
        except Exception as exc:  # noqa: BLE001 - LAMMPS raises plain Exception
            raise self._translate(exc, "create_atoms") from exc
        if lmp.get_natoms() != self.natoms:
            raise MDError(f"LAMMPS created {lmp.get_natoms()} of {self.natoms} atoms (atoms outside the box?)")
        self.command("\n".join(p.commands))
        self.command(setup_commands(skin))

    def _wrap(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Wrap positions into the box; return them and the integer image flags."""
        rel = (positions - self.cell_origin) / self.cell_lengths
        images = np.where(self.pbc, np.floor(rel), 0.0).astype(np.int64)
        wrapped = positions - images * self.cell_lengths
        return wrapped, images

    # ---------------------------------------------------------------- plumbing
    def _translate(self, exc: Exception, cmd: str) -> MDError:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        message = message.removeprefix("ERROR: ").removeprefix("ERROR on proc 0: ")
        cls = classify(message)
        self.close()
        return cls(f"LAMMPS failed ({message}) while running: {cmd.strip().splitlines()[0]}")

    def command(self, text: str) -> None:
        """Run one or more LAMMPS commands; a LAMMPS error becomes an :class:`MDError`.

        After an error the engine is closed: build a new one to go on.
        """
        if self._closed:
            raise MDError("this engine was closed (after a LAMMPS failure or close()); build a new one")
        try:
            with measure("lammps"):
                self._lmp.commands_string(text)
        except Exception as exc:  # noqa: BLE001 - LAMMPS raises plain Exception
            raise self._translate(exc, text) from exc

    def close(self) -> None:
        """Free the LAMMPS instance. The engine cannot be used afterwards."""
        if self._lmp is not None and not self._closed:
            try:
                self._lmp.close()
            except Exception:  # noqa: BLE001 - closing a failed instance may raise again
                pass
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def lammps(self):
        """The underlying ``lammps.lammps`` object, for advanced use."""
        return self._lmp

    @property
    def step(self) -> int:
        """The current LAMMPS timestep number."""
        return int(self._lmp.extract_global("ntimestep"))

    # ------------------------------------------------------------ atom access
    def _gather(self, name: str, dtype: int, count: int) -> np.ndarray:
        if self._closed:
            raise MDError("this engine was closed; build a new one")
        data = self._lmp.gather_atoms(name, dtype, count)
        return np.ctypeslib.as_array(data).reshape(self.natoms, count).copy() if count > 1 else np.ctypeslib.as_array(data).copy()

    def _scatter(self, name: str, dtype: int, count: int, values: np.ndarray) -> None:
        ctype = np.float64 if dtype == 1 else np.int32
        buf = np.ascontiguousarray(values, dtype=ctype).ravel()
        try:
            self._lmp.scatter_atoms(name, dtype, count, buf.ctypes.data_as(ctypes.c_void_p))
        except Exception as exc:  # noqa: BLE001
            raise self._translate(exc, f"scatter {name}") from exc

    def get_images(self) -> np.ndarray:
        """Integer periodic image flags of each atom, shape (N, 3)."""
        return decode_images(self._gather("image", 0, 1))

    def get_positions(self, unwrapped: bool = False) -> np.ndarray:
        """Positions in A, shape (N, 3), in atom order; ``unwrapped`` adds image shifts."""
        x = self._gather("x", 1, 3)
        if unwrapped:
            x = x + self.get_images() * self.cell_lengths
        return x

    def set_positions(self, positions: np.ndarray) -> None:
        """Set all positions (A, atom order, wrapped or unwrapped)."""
        self._write_positions(positions)
        self._needs_setup = True
        self._last_pe = None

    def _write_positions(self, positions) -> None:
        """Scatter positions (A, atom order, wrapped or unwrapped) into LAMMPS, wrapped, with image flags."""
        positions = np.asarray(positions, dtype=float)
        if positions.shape != (self.natoms, 3):
            raise InputError(f"positions must have shape ({self.natoms}, 3), got {positions.shape}")
        wrapped, images = self._wrap(positions)
        self._scatter("x", 1, 3, wrapped)
        self._scatter("image", 0, 1, encode_images(images))

    def get_velocities(self) -> np.ndarray:
        """Velocities in A/fs, shape (N, 3), in atom order."""
        return self._gather("v", 1, 3) / self.potential.time_to_fs

    def set_velocities(self, velocities: np.ndarray) -> None:
        """Set all velocities (A/fs, atom order)."""
        velocities = np.asarray(velocities, dtype=float)
        if velocities.shape != (self.natoms, 3):
            raise InputError(f"velocities must have shape ({self.natoms}, 3), got {velocities.shape}")
        self._scatter("v", 1, 3, velocities * self.potential.time_to_fs)
        self._velocities_set = True
        self._needs_setup = True

    def get_forces(self) -> np.ndarray:
        """Forces in eV/A on each atom (with any tether force), shape (N, 3)."""
        self.potential_energy()
        return self._gather("f", 1, 3) * self._e

    def get_charges(self) -> np.ndarray | None:
        """Atomic charges (e) for charge-carrying atom styles, else ``None``."""
        if self.potential.atom_style != "charge":
            return None
        return self._gather("q", 1, 1)

    def to_atoms(self, unwrapped: bool = False) -> Atoms:
        """The current structure as ASE ``Atoms`` (positions relative to the cell origin)."""
        atoms = Atoms(
            symbols=self.symbols,
            positions=self.get_positions(unwrapped=unwrapped) - self.cell_origin,
            cell=np.diag(self.cell_lengths),
            pbc=self.pbc,
        )
        return atoms

    # -------------------------------------------------------------- energies
    def potential_energy(self) -> float:
        """Potential energy in eV, without tether or other restraint energy."""
        if self._last_pe is None or self._needs_setup:
            self.command("run 0 post no")
            self._needs_setup = False
            self._record_end = -1  # setup invalidated the recording window's step bookkeeping
            self._last_pe = self._read_pe()
        return self._last_pe

    def single_point(self, positions: np.ndarray) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/A) at ``positions`` (A, atom order), for an engine used as a
        force calculator (NEB images, minimisers).

        While only positions changed since the last evaluation and no thermostat or tether
        is on, LAMMPS runs ``run 1 pre no post no`` (no integration fix: the atoms stay
        put) instead of ``run 0``: it skips the set-up and its full neighbour-list build,
        about a third of a 195-atom ReaxFF evaluation. LAMMPS still rebuilds the lists
        when an atom moved more than half the skin (``neigh_modify check yes``), so the
        result is ``run 0``'s (within the QEq tolerance); otherwise this is
        :meth:`set_positions` then :meth:`potential_energy`.
        """
        if self._needs_setup or self._last_pe is None or self._thermostat is not None or self._tether_indices:
            self.set_positions(positions)
            return self.potential_energy(), self.get_forces()
        self._write_positions(positions)
        self.command("run 1 pre no post no")
        self._record_end = -1  # the timestep counter moved
        self._last_pe = self._read_pe()
        return self._last_pe, self._gather("f", 1, 3) * self._e

    def _read_pe(self) -> float:
        lammps = lammps_module()
        return float(self._lmp.extract_compute("mapcvd_pe", lammps.LMP_STYLE_GLOBAL, lammps.LMP_TYPE_SCALAR)) * self._e

    # ------------------------------------------------------------- dynamics
    def _ensure_thermostat(self, t_start: float, t_stop: float, damping_fs: float, timestep_fs: float) -> None:
        tunit = self.potential.time_to_fs
        if timestep_fs != self._timestep_fs:
            self.command(f"timestep {timestep_fs / tunit}")
            self._timestep_fs = timestep_fs
            self._needs_setup = True
        if not self._velocities_set:
            mom = "yes" if self.natoms > 1 else "no"
            self.command(f"velocity all create {max(t_start, 1e-3)} {self.seed} dist gaussian mom {mom} rot no")
            self._velocities_set = True
            self._needs_setup = True
        wanted = (t_start, t_stop, damping_fs)
        if wanted != self._thermostat:
            if self._thermostat is not None:
                self.command("unfix mapcvd_nvt")
            self.command(f"fix mapcvd_nvt all nvt temp {t_start} {t_stop} {damping_fs / tunit}")
            self._thermostat = wanted
            self._needs_setup = True

    def run_nvt(
        self,
        nsteps: int,
        temperature: float,
        *,
        timestep_fs: float,
        damping_fs: float = 100.0,
        final_temperature: float | None = None,
    ) -> MDTrace:
        """Run ``nsteps`` of Nose-Hoover NVT and return per-step energies and temperatures.

        Parameters
        ----------
        nsteps
            Number of MD steps (> 0).
        temperature
            Thermostat target in K (start of a ramp if ``final_temperature`` is given).
        timestep_fs
            MD timestep in fs.
        damping_fs
            Thermostat damping time in fs.
        final_temperature
            If given, the target ramps linearly from ``temperature`` to this value.
        """
        if nsteps <= 0:
            raise InputError(f"nsteps must be positive, got {nsteps}")
        if temperature <= 0 or timestep_fs <= 0 or damping_fs <= 0:
            raise InputError("temperature, timestep and damping must be positive")
        t_stop = temperature if final_temperature is None else float(final_temperature)
        self._ensure_thermostat(float(temperature), t_stop, float(damping_fs), float(timestep_fs))
        return self._run_recorded(nsteps)

    def _run_recorded(self, nsteps: int) -> MDTrace:
        lammps = lammps_module()
        step = self.step
        if self._needs_setup or step + nsteps > self._record_end:
            if self._lmp.has_id("fix", "mapcvd_record"):
                self.command("unfix mapcvd_record")
            self.command("fix mapcvd_record all vector 1 v_mapcvd_pe v_mapcvd_temp")
            self._record_start = step
            self._record_end = step + nsteps + RECORD_WINDOW
            pre = "yes"
        else:
            pre = "no"
        self.command(f"run {nsteps} start {self._record_start} stop {self._record_end} pre {pre} post no")
        self._needs_setup = False
        rows = int(self._lmp.extract_fix("mapcvd_record", lammps.LMP_STYLE_GLOBAL, lammps.LMP_SIZE_ROWS))
        get = self._lmp.extract_fix
        style, kind = lammps.LMP_STYLE_GLOBAL, lammps.LMP_TYPE_ARRAY
        first = rows - nsteps
        pe = np.array([get("mapcvd_record", style, kind, i, 0) for i in range(first, rows)]) * self._e
        temp = np.array([get("mapcvd_record", style, kind, i, 1) for i in range(first, rows)])
        self._last_pe = float(pe[-1])
        return MDTrace(potential_energy=pe, temperature=temp)

    def minimize(
        self,
        *,
        fmax: float = 0.01,
        max_iterations: int = 2000,
        max_evaluations: int = 20000,
        energy_tolerance: float = 0.0,
    ) -> float:
        """Minimise the energy (conjugate gradient); return the final energy in eV.

        Parameters
        ----------
        fmax
            Stop when the global force norm falls below this (eV/A).
        max_iterations, max_evaluations
            Caps on CG iterations and force evaluations.
        energy_tolerance
            Relative energy-change stopping tolerance (0 disables it).
        """
        if fmax <= 0 or max_iterations <= 0 or max_evaluations <= 0:
            raise InputError("fmax, max_iterations and max_evaluations must be positive")
        ftol = fmax / self._e
        self.command(f"min_style cg\nminimize {energy_tolerance} {ftol} {max_iterations} {max_evaluations}")
        self._needs_setup = True  # the timestep counter moved: recording must be renewed
        self._last_pe = self._read_pe()
        return self._last_pe

    # --------------------------------------------------------------- tether
    def set_tether(self, indices, center, k: float) -> None:
        """Hold the centre of mass of atoms ``indices`` on a harmonic spring.

        Parameters
        ----------
        indices
            0-based atom indices (e.g. the water's O).
        center
            Spring centre (A, unwrapped coordinates, as the agent moves across images).
        k
            Spring constant in eV/A^2; the energy is ``k/2 |r_com - center|^2``.
        """
        indices = tuple(int(i) for i in np.atleast_1d(indices))
        if not indices or min(indices) < 0 or max(indices) >= self.natoms:
            raise InputError(f"tether indices must lie in 0..{self.natoms - 1}")
        if k <= 0:
            raise InputError(f"tether spring constant must be positive, got {k}")
        if self._tether_indices is not None:
            self.clear_tether()
        self.command(tether_commands(indices, center, k / self._e))
        self._tether_indices = indices
        self._tether_center = np.asarray(center, dtype=float).copy()
        self._needs_setup = True

    def move_tether(self, center) -> None:
        """Move the spring centre (A, unwrapped); takes effect in the next run, no re-setup."""
        if self._tether_indices is None:
            raise MDError("no tether is set: call set_tether first")
        if self._closed:
            raise MDError("this engine was closed (after a LAMMPS failure or close()); build a new one")
        center = np.asarray(center, dtype=float)
        try:
            for axis, value in zip("xyz", center):
                self._lmp.set_internal_variable(f"mapcvd_t{axis}", float(value))
        except Exception as exc:  # noqa: BLE001 - LAMMPS raises plain Exception
            raise self._translate(exc, "move tether") from exc
        self._tether_center = center.copy()

    @property
    def tether_center(self) -> np.ndarray | None:
        """Current spring centre (A), or ``None`` without a tether."""
        return None if self._tether_indices is None else self._tether_center.copy()

    def clear_tether(self) -> None:
        """Remove the tether."""
        if self._tether_indices is None:
            return
        self.command("unfix mapcvd_tether\ngroup mapcvd_tether delete")
        self._tether_indices = None
        self._needs_setup = True
