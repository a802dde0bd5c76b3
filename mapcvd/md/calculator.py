"""An ASE calculator over the LAMMPS engine: a few :class:`~mapcvd.md.engine.Engine` behind many images.

The NEB's ASE driver (:mod:`mapcvd.pathways.neb`) evaluates every image of a band
through it, serially (LAMMPS is not thread-safe).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mapcvd.md.engine import Engine
from mapcvd.md.potentials import Potential


class EngineCalculator(Calculator):
    """An ASE calculator backed by LAMMPS :class:`~mapcvd.md.engine.Engine` instances.

    An engine is built at its first calculation and reused while the atoms keep their
    elements, cell and boundaries; new positions go in by :meth:`Engine.single_point
    <mapcvd.md.engine.Engine.single_point>`. A band gives each image its own light
    calculator from :meth:`image_calculator`, which keeps the results of its own image
    (an unchanged image is never evaluated twice) and its own engine, one of at most
    :attr:`max_engines`, shared in turn beyond that. An image's engine then sees only
    the small moves of its image between optimiser steps, which skip LAMMPS's set-up
    and neighbour-list build: 52 against 72 ms per evaluation of the demo's 195-atom
    ReaxFF system (``benchmarks/neb_convergence.py`` times whole bands).

    Parameters
    ----------
    potential
        The LAMMPS potential.
    max_engines
        Most LAMMPS instances (one per image up to this many).
    """

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, potential: Potential, max_engines: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.max_engines = max(int(max_engines), 1)
        self.calls = 0
        self._engines: dict[int, tuple[bytes, Engine]] = {}
        self._images_made = 0

    def evaluate(self, atoms: Atoms, slot: int = 0) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/A) of ``atoms`` from engine ``slot``."""
        system = (atoms.numbers.tobytes() + np.asarray(atoms.cell[:]).tobytes() + np.asarray(atoms.pbc).tobytes())
        entry = self._engines.get(slot)
        if entry is None or entry[0] != system:
            if entry is not None:
                entry[1].close()
            entry = self._engines[slot] = (system, Engine(atoms, self.potential))
        self.calls += 1
        return entry[1].single_point(atoms.positions)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.evaluate(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}

    def image_calculator(self) -> Calculator:
        """A calculator for one image: its own result cache and engine slot."""
        self._images_made += 1
        return _ImageCalculator(self, self._images_made % self.max_engines)

    def close(self) -> None:
        """Free the LAMMPS instances."""
        for _, engine in self._engines.values():
            engine.close()
        self._engines = {}
        self.reset()


class _ImageCalculator(Calculator):
    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, owner: EngineCalculator, slot: int):
        super().__init__()
        self.owner = owner
        self.slot = slot

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.owner.evaluate(self.atoms, self.slot)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
