"""An ASE calculator over the LAMMPS engine: one :class:`~mapcvd.md.engine.Engine` behind many images.

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
    """An ASE calculator backed by one :class:`~mapcvd.md.engine.Engine` (one LAMMPS instance).

    The engine is built at the first calculation and reused while the atoms keep their
    elements, cell and boundaries; new positions are scattered into it. A band gives
    each image its own light calculator from :meth:`image_calculator`: all of them
    share this engine (used serially), and each keeps the results of its own image, so
    an unchanged image is never evaluated twice.

    Parameters
    ----------
    potential
        The LAMMPS potential.
    """

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, potential: Potential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        self.engine = None
        self.calls = 0
        self._system = None

    def evaluate(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/A) of ``atoms`` from the shared engine."""
        system = (atoms.numbers.tobytes(), np.asarray(atoms.cell[:]).tobytes(), np.asarray(atoms.pbc).tobytes())
        if self.engine is None or system != self._system:
            self.close()
            self.engine = Engine(atoms, self.potential)
            self._system = system
        else:
            self.engine.set_positions(atoms.positions)
        self.calls += 1
        return self.engine.potential_energy(), self.engine.get_forces()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.evaluate(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}

    def image_calculator(self) -> Calculator:
        """A calculator for one image: its own result cache, this engine."""
        return _ImageCalculator(self)

    def close(self) -> None:
        """Free the LAMMPS instance."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self._system = None
        self.reset()


class _ImageCalculator(Calculator):
    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, owner: EngineCalculator):
        super().__init__()
        self.owner = owner

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.owner.evaluate(self.atoms)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
