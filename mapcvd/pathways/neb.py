"""Climbing-image nudged elastic band (CI-NEB) between two structures.

MAP (Chen et al., seed 000) refines each segment of a learned pathway with a nudged
elastic band: a chain of images between two minima, each image relaxed under the
component of the true force perpendicular to the path plus spring forces along it,
and, with a climbing image, the highest image driven up to the saddle point
(Henkelman, Uberuaga and Jonsson, J. Chem. Phys. 113, 9901 (2000),
doi:10.1063/1.1329672; improved tangent: Henkelman and Jonsson, J. Chem. Phys. 113,
9978 (2000), doi:10.1063/1.1323224).

Two drivers relax the band; both start from the same endpoints and the same band:

``"ase"``
    :class:`ase.mep.NEB` (improved tangent, climbing image) optimised by FIRE, BFGS or
    ASE's NEBOptimizer (ODE),
    every image evaluated in turn, each by its own LAMMPS instance of this process,
    through :class:`~mapcvd.md.calculator.EngineCalculator` (any ASE calculator works
    too, e.g. EMT in tests). Never ``parallel=True``: ASE then runs images in threads,
    and LAMMPS is not thread-safe.
``"lammps"``
    LAMMPS's own ``neb`` command, one partition (process) per image, started as
    ``mpiexec -np K lmp -partition Kx1`` (:mod:`mapcvd.pathways.neb_lammps`).

The endpoints and the first band are set up by :mod:`mapcvd.pathways.band`.

``benchmarks/pneb_parallel.py`` times both on the same endpoints; the faster is the
default (:data:`DEFAULT_DRIVER`). Measured on a 2-core machine: an Al adatom hop (eam,
to 0.02 eV/A) 0.3 s with ``"ase"`` against 6 s with ``"lammps"`` (process start-up and
7 processes on 2 cores dominate); 60 steps of a 195-atom ReaxFF segment 13.2 s against
13.9 s, and ``"lammps"`` needs a core per image where piecewise NEB already gives each
segment one core. Endpoints are minimised first unless told not to.
Energies of the final band are always single points of one engine, so both drivers
report comparable numbers. A band that does not reach ``fmax`` within ``max_steps`` is
returned with ``converged=False`` and its last (best) estimate.

The climbing image of the ASE driver is on only while the band has an interior maximum
(:func:`has_interior_maximum`), and is dropped if it climbs past a ceiling set by the
plain band (:func:`climb_ceiling`): the band is then the plain band, relaxed on from
where climbing began, and ``NebResult.climbed`` says so.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from mapcvd.config import SCHEMA, check_settings, setting, settings_from
from mapcvd.errors import InputError
from mapcvd.md.calculator import EngineCalculator
from mapcvd.md.potentials import Potential
from mapcvd.pathways.band import align_final, check_endpoints, initial_band
from mapcvd.pathways.neb_lammps import relax_band_lammps

DRIVERS = SCHEMA["map"]["neb_driver"].choices
#: The driver chosen by ``benchmarks/pneb_parallel.py`` (the faster on both of its cases): ``map.neb_driver``'s default.
DEFAULT_DRIVER = SCHEMA["map"]["neb_driver"].default
OPTIMIZERS = SCHEMA["map"]["neb_optimizer"].choices


@dataclass(frozen=True)
class NebSettings:
    """How a band is built and relaxed; the defaults and ranges of the config fields are SCHEMA's.

    Attributes (``[map]`` key in brackets; its doc in :data:`mapcvd.config.SCHEMA`)
    ------------------------------------------------------------------------------
    images
        Intermediate images (the band has ``images + 2``) [``neb_images``].
    climb
        Climbing image (Henkelman et al. 2000) after a first relaxation without it [``neb_climb``].
    fmax
        Convergence: largest force on any atom of any image (eV/A), NEB forces [``neb_fmax_eV_A``].
    max_steps
        Optimiser steps (both stages together) before giving up (``converged=False``) [``neb_max_steps``].
    spring
        Spring constant between images (eV/A^2) [``neb_spring_eV_A2``].
    optimizer
        ``"fire"``, ``"bfgs"`` or ``"ode"`` (ASE driver; LAMMPS's ``neb`` always uses FIRE) [``neb_optimizer``].
    max_move
        Length cap of one optimiser step, A: FIRE caps the norm of the whole displacement
        (all images, all atoms), BFGS the largest displacement of an atom. ASE's default,
        0.2, overshot on the demo's ReaxFF bands into force spikes of 1-7 eV/A on single
        Si atoms (``benchmarks/neb_convergence.py``); not used by ``"ode"``; no config key.
    minimize
        Minimise the endpoints first (to ``fmax``); no config key.
    endpoint_steps
        Most minimiser iterations per endpoint; no config key.
    driver
        ``"ase"`` or ``"lammps"`` [``neb_driver``].
    """

    images: int = setting("map", "neb_images")
    climb: bool = setting("map", "neb_climb")
    fmax: float = setting("map", "neb_fmax_eV_A")
    max_steps: int = setting("map", "neb_max_steps")
    spring: float = setting("map", "neb_spring_eV_A2")
    optimizer: str = setting("map", "neb_optimizer")
    max_move: float = 0.1
    minimize: bool = True
    endpoint_steps: int = 2000
    driver: str = setting("map", "neb_driver")

    def __post_init__(self):
        check_settings(self)
        if self.endpoint_steps < 1:
            raise InputError(f"NEB endpoint_steps must be >= 1, got {self.endpoint_steps}")
        if not self.max_move > 0:
            raise InputError(f"NEB max_move must be > 0 A, got {self.max_move}")

    @property
    def ranks(self) -> int:
        """MPI ranks of one band: one per image of the band (``images + 2``) with LAMMPS's ``neb``
        (``-partition Kx1``), which needs exactly that many; one with ASE's."""
        return self.images + 2 if self.driver == "lammps" else 1


def neb_from_map(table: dict | None = None, **given) -> NebSettings:
    """The NEB settings of a ``[map]`` table (its ``neb_*`` keys), with fields ``given`` (not None) on top.

    The one mapping of ``[map]`` to NEB, for ``mapcvd neb`` and the pathways workflow;
    ``table=None`` takes SCHEMA's defaults.
    """
    return settings_from(NebSettings, table, section="map", **given)


@dataclass
class NebResult:
    """A relaxed (or not) band.

    Attributes
    ----------
    energies
        Potential energy of each image, eV (endpoints included).
    positions
        ``(images + 2, n_atoms, 3)`` positions, A (unwrapped, continuous along the band).
    converged
        Whether ``fmax`` was reached.
    steps
        Optimiser steps taken.
    fmax
        Largest NEB force at the end (eV/A).
    driver
        Which driver relaxed the band.
    seconds
        Wall time, endpoint minimisation included.
    endpoint_energies_before
        Energies of the endpoints as given (before minimisation), eV.
    climbed
        Whether the final band's highest image is a climbing image (the barrier then is
        the saddle's); False for a plain band: ``climb`` off, a band without an interior
        maximum, or a climbing image that ran away (:func:`climb_ceiling`), whose band was
        relaxed plain instead and whose barrier is its highest image, a lower estimate.
    """

    energies: np.ndarray
    positions: np.ndarray
    converged: bool
    steps: int
    fmax: float
    driver: str
    seconds: float
    endpoint_energies_before: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))
    climbed: bool = False

    @property
    def ts_index(self) -> int:
        """Index of the highest image (the climbing image when converged)."""
        return int(np.argmax(self.energies))

    @property
    def barrier_forward(self) -> float:
        """Highest image energy minus the initial energy, eV."""
        return float(self.energies.max() - self.energies[0])

    @property
    def barrier_backward(self) -> float:
        """Highest image energy minus the final energy, eV."""
        return float(self.energies.max() - self.energies[-1])

    @property
    def reaction_coordinate(self) -> np.ndarray:
        """Cumulative distance along the band in configuration space, A."""
        steps = np.linalg.norm((np.diff(self.positions, axis=0)).reshape(len(self.positions) - 1, -1), axis=1)
        return np.concatenate([[0.0], np.cumsum(steps)])

    def summary(self) -> dict:
        """JSON-ready figures of the band."""
        return {
            "barrier_forward_eV": self.barrier_forward,
            "barrier_backward_eV": self.barrier_backward,
            "converged": bool(self.converged),
            "energies_eV": [float(e) for e in self.energies],
            "reaction_coordinate_A": [float(x) for x in self.reaction_coordinate],
            "ts_index": self.ts_index,
            "steps": int(self.steps),
            "fmax_eV_A": float(self.fmax),
            "driver": self.driver,
            "seconds": float(self.seconds),
            "endpoint_energies_before_eV": [float(e) for e in self.endpoint_energies_before],
            "climbed": bool(self.climbed),
        }


def _optimizer(settings: NebSettings, band: bool = True):
    """The optimiser of a band (``band``) or of an endpoint, a callable ``(atoms, logfile=)``.

    ``"ode"`` is ASE's NEBOptimizer, for bands only (Makri, Ortner and Kermode 2019,
    doi:10.1063/1.5064465); its endpoints use FIRE. FIRE and BFGS steps are capped at
    ``settings.max_move``.
    """
    from ase.mep.neb import NEBOptimizer  # noqa: PLC0415
    from ase.optimize import BFGS, FIRE  # noqa: PLC0415

    if settings.optimizer == "ode" and band:
        return functools.partial(NEBOptimizer, method="ode")
    return functools.partial(BFGS if settings.optimizer == "bfgs" else FIRE, maxstep=settings.max_move)


def _minimize(atoms: Atoms, calc, settings: NebSettings) -> None:
    """Minimise one endpoint in place: FIRE, or BFGS when the band's is (FIRE copes with ReaxFF's QEq noise)."""
    atoms.calc = _calculator_for_image(calc)
    _optimizer(settings, band=False)(atoms, logfile=None).run(fmax=settings.fmax, steps=settings.endpoint_steps)


def _calculator_for_image(calc):
    """Each image its own calculator: an engine-backed view, or a copy of an ASE calculator."""
    if isinstance(calc, EngineCalculator):
        return calc.image_calculator()
    return calc


def _images(template: Atoms, band: np.ndarray, calc) -> list[Atoms]:
    images = []
    for positions in band:
        image = template.copy()
        image.set_constraint([c.copy() for c in template.constraints])
        image.positions = positions
        image.calc = _calculator_for_image(calc)
        images.append(image)
    return images


def _energies(template: Atoms, band: np.ndarray, calc) -> np.ndarray:
    return np.array([image.get_potential_energy() for image in _images(template, band, calc)])


def _neb(images: list[Atoms], settings: NebSettings, climb: bool):
    from ase.mep import NEB  # noqa: PLC0415

    return NEB(images, k=settings.spring, climb=climb, method="improvedtangent", allow_shared_calculator=True)


def has_interior_maximum(energies) -> bool:
    """Whether a band's highest intermediate image lies above both endpoints: only then is
    there a saddle for a climbing image to climb to (on a band that rises or falls all the
    way, climbing would drive the highest image towards an endpoint)."""
    energies = np.asarray(energies, dtype=float)
    return len(energies) > 2 and float(energies[1:-1].max()) > max(float(energies[0]), float(energies[-1]))


def band_forces(template: Atoms, band: np.ndarray, calc, settings: NebSettings,
                climb: bool | None = None) -> tuple[np.ndarray, float, bool]:
    """Energies of a band's images (eV), its largest NEB force on an atom (eV/A), as ASE's NEB
    defines it, and whether a climbing image counted.

    Used on the final band of either driver, so both report the same measure. The
    climbing image counts where ``climb`` (``settings.climb`` when None) and the band has
    an interior maximum (:func:`has_interior_maximum`).
    """
    climb = settings.climb if climb is None else climb
    images = _images(template, band, calc)
    if len(images) < 3:
        return np.array([image.get_potential_energy() for image in images]), 0.0, False
    neb = _neb(images, settings, climb)
    forces = neb.get_forces()
    if climb and not _climb_only_over_a_saddle(neb):  # the rule of _relax_ase: no saddle, no climbing
        forces = neb.get_forces()
    return (np.asarray(neb.energies, dtype=float).copy(), float(np.sqrt((forces**2).sum(axis=1).max())),
            bool(neb.climb))


def band_state(converged: bool, climbed: bool, climb: bool) -> str:
    """How a band ended, in words, for logs and plots: ``"NOT converged"``, ``"converged"``, or,
    where a climbing image was asked for (``climb``) and the band ended without one,
    ``"converged, plain band"`` (its barrier is its highest image, not a saddle's)."""
    if not converged:
        return "NOT converged"
    return "converged" if climbed or not climb else "converged, plain band"


def climb_ceiling(energies) -> float:
    """The highest energy (eV) a climbing image may reach from the plain band ``energies``.

    The band's highest energy plus its span (highest minus lower endpoint), at least
    0.5 eV above it. A climbing image stops at the saddle next to the plain band's
    highest image, usually a fraction of the barrier above it; one that climbs past this
    ceiling has left the path up a repulsive wall (seen on the demo's ReaxFF segments:
    0.6 to 22 eV in 400 steps, water pressed into the silica) and has no saddle to find.
    """
    energies = np.asarray(energies, dtype=float)
    top = float(energies.max())
    return top + max(top - min(float(energies[0]), float(energies[-1])), 0.5)


# ------------------------------------------------------------------ drivers
def _relax_ase(template: Atoms, band: np.ndarray, calc,
               settings: NebSettings) -> tuple[np.ndarray, bool, int, bool]:
    """Relax ``band`` with ASE's NEB; return positions, converged, steps, and whether it climbed.

    With ``settings.climb``: first a plain band near the path, then the climbing image
    (Henkelman et al. 2000), on only while the band has an interior maximum. A climbing
    image that rises past :func:`climb_ceiling` of the plain band is abandoned: the plain
    band is restored and relaxed on without it, in the steps that are left.
    """
    images = _images(template, band, calc)
    neb = _neb(images, settings, climb=False)
    optimizer_class = _optimizer(settings)
    if not settings.climb:
        optimizer = optimizer_class(neb, logfile=None)
        converged = bool(optimizer.run(fmax=settings.fmax, steps=settings.max_steps))
        return np.array([image.positions for image in images]), converged, optimizer.nsteps, False
    first = optimizer_class(neb, logfile=None)
    first.run(fmax=max(3.0 * settings.fmax, 0.1), steps=max(settings.max_steps // 3, 1))
    steps = first.nsteps
    plain = np.array([image.positions for image in images])
    ceiling = climb_ceiling(neb.energies)
    _climb_only_over_a_saddle(neb)
    optimizer = optimizer_class(neb, logfile=None)
    optimizer.attach(functools.partial(_climb_only_over_a_saddle, neb))
    optimizer.attach(functools.partial(_stop_a_runaway_climb, neb, ceiling))
    converged, ran_away = False, False
    try:
        converged = optimizer.run(fmax=settings.fmax, steps=max(settings.max_steps - steps, 1))
    except _ClimbRanAway:
        ran_away = True
    steps += optimizer.nsteps
    if ran_away:
        neb.climb = False
        for image, positions in zip(images, plain):
            image.positions = positions
        optimizer = optimizer_class(neb, logfile=None)
        converged = optimizer.run(fmax=settings.fmax, steps=max(settings.max_steps - steps, 1))
        steps += optimizer.nsteps
    return np.array([image.positions for image in images]), bool(converged), steps, not ran_away


class _ClimbRanAway(Exception):
    """A climbing image rose past its :func:`climb_ceiling` (raised by an observer to stop the optimiser)."""


def _stop_a_runaway_climb(neb, ceiling: float) -> None:
    """Optimiser observer: raise :class:`_ClimbRanAway` once the climbing image is above ``ceiling`` (eV)."""
    if neb.climb and float(np.max(neb.energies[1:-1])) > ceiling:
        raise _ClimbRanAway


def _climb_only_over_a_saddle(neb) -> bool:
    """Switch a climbing-image band's climbing image on only while the band has an interior
    maximum, and return whether it is on.

    On a band that rises (or falls) all the way there is no saddle to converge to and the
    climbing image pushes on towards an endpoint (seen on the demo's ReaxFF segments: stuck
    at 0.46 eV/A with it, converged without it). Applied after the plain stage, after every
    step of the climbing stage (an optimiser observer), and to the final band
    (:func:`band_forces`).
    """
    neb.climb = has_interior_maximum(neb.energies)
    return neb.climb


def _calculator(potential: Potential | None, calculator):
    if (potential is None) == (calculator is None):
        raise InputError("give a LAMMPS potential or an ASE calculator (one of them)")
    return calculator if calculator is not None else EngineCalculator(potential)


def minimize_structure(atoms: Atoms, *, potential: Potential | None = None, calculator=None,
                       settings: NebSettings = NebSettings()) -> tuple[Atoms, float]:
    """A copy of ``atoms`` minimised as :func:`run_neb` minimises endpoints, and its energy (eV).

    Uses ``settings.optimizer`` to ``settings.fmax`` within ``settings.endpoint_steps``;
    the constraints of ``atoms`` hold.
    """
    calc = _calculator(potential, calculator)
    try:
        copy = atoms.copy()
        copy.set_constraint([c.copy() for c in atoms.constraints])
        _minimize(copy, calc, settings)
        energy = float(copy.get_potential_energy())
    finally:
        if isinstance(calc, EngineCalculator):
            calc.close()
    copy.calc = None
    return copy, energy


def run_neb(initial: Atoms, final: Atoms, *, potential: Potential | None = None, calculator=None,
            settings: NebSettings = NebSettings(), guide: np.ndarray | None = None,
            workdir: str | None = None) -> NebResult:
    """Minimise the endpoints (unless told not to), build a band and relax it by CI-NEB.

    Parameters
    ----------
    initial, final
        Endpoints: the same atoms in the same order and cell; ``final`` is moved to
        the periodic images nearest to ``initial``. Constraints of ``initial``
        (e.g. :class:`ase.constraints.FixAtoms`) hold for every image.
    potential
        A LAMMPS potential (both drivers); or
    calculator
        any ASE calculator (the ``"ase"`` driver only), e.g. EMT.
    settings
        Band and optimiser settings, the driver among them.
    guide
        Frames of a trajectory between the endpoints to lay the first band along.
    workdir
        Folder for the LAMMPS driver's files (a temporary one by default).

    Raises
    ------
    InputError
        For mismatched endpoints, or neither/both of ``potential`` and ``calculator``.
    """
    start_time = time.perf_counter()
    check_endpoints(initial, final)
    if settings.driver == "lammps" and potential is None:
        raise InputError("the LAMMPS neb driver needs a LAMMPS potential, not an ASE calculator")
    calc = _calculator(potential, calculator)
    try:
        start = initial.copy()
        start.set_constraint([c.copy() for c in initial.constraints])
        end = start.copy()
        end.set_constraint([c.copy() for c in initial.constraints])
        end.positions = align_final(initial.positions, final.positions, np.diag(initial.cell[:]), initial.pbc)
        before = _energies(start, np.array([start.positions, end.positions]), calc)
        if settings.minimize:
            for atoms in (start, end):
                _minimize(atoms, calc, settings)
            end.positions = align_final(start.positions, end.positions, np.diag(start.cell[:]), start.pbc)
        band = initial_band(start.positions, end.positions, settings.images, guide)
        if settings.driver == "lammps":  # LAMMPS's neb climbs whenever settings.climb
            positions, converged, steps = relax_band_lammps(start, band, potential, settings, workdir=workdir)
            climb = settings.climb
        else:
            positions, converged, steps, climb = _relax_ase(start, band, calc, settings)
        energies, fmax, climbed = band_forces(start, positions, calc, settings, climb=climb)
        if settings.driver == "ase":
            # ASE's NEBOptimizer can say converged by its own residual while a force on the band is
            # still above fmax; converged means fmax reached, as the final band measures it
            converged = bool(converged) and fmax <= settings.fmax
    finally:
        if isinstance(calc, EngineCalculator):
            calc.close()
    return NebResult(energies=energies, positions=positions, converged=converged, steps=steps, fmax=fmax,
                     driver=settings.driver, seconds=time.perf_counter() - start_time,
                     endpoint_energies_before=before, climbed=climbed)
