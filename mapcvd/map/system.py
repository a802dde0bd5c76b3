"""From a ``[map]`` configuration table to a MAP system: structure, potential, agent, network.

Chen et al.'s MAP (seed 000) drags one H2O through amorphous silica under ReaxFF; the
defaults of the ``[map]`` table reproduce that system at laptop size. Nothing here is
specific to it: the host structure, the guided molecule, the goal axis and the
potential (a ReaxFF file, or any LAMMPS pair style written as commands) all come from
the table, so MAP can be pointed at another material.

:func:`check_map_table` validates everything that can be checked before any work
(the potential's files and elements, the guided atoms, the state grid and the
learner's replay cache against the memory of this machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from mapcvd.config import settings_from
from mapcvd.errors import InputError
from mapcvd.map.dqn import QNetwork3D
from mapcvd.map.environment import (
    MAX_GRID_BYTES,
    MapEnvironment,
    MapSettings,
)
from mapcvd.map.training_settings import TrainingSettings
from mapcvd.md.potentials import Potential, lammps_commands, reaxff
from mapcvd.md.structures import read_structure
from mapcvd.store.replay_spec import ReplaySpec


@dataclass
class MapSystem:
    """Everything an actor needs to build its environment.

    Attributes
    ----------
    atoms
        Host with the guided molecule.
    potential
        The LAMMPS potential.
    guided
        Indices of the guided molecule, tethered atom first.
    settings
        Environment settings.
    """

    atoms: Atoms
    potential: Potential
    guided: np.ndarray
    settings: MapSettings

    def environment(self, seed: int) -> MapEnvironment:
        """A new environment with its own LAMMPS engine (started at its first reset)."""
        return MapEnvironment(self.atoms, self.potential, self.guided, self.settings, seed=seed)

    @property
    def channels(self) -> int:
        """State channels: one per element of the potential's type order."""
        return len(self.potential.elements)


def elements_of(table: dict) -> list[str]:
    """The type order of the ``elements`` key."""
    elements = table["elements"].split()
    if not elements:
        raise InputError("map.elements is empty: give the element of each LAMMPS type, e.g. 'Si O H'")
    return elements


def build_potential(table: dict) -> Potential:
    """The potential of the table: ``lammps_commands`` when set, else the ReaxFF ``forcefield``."""
    elements = elements_of(table)
    commands = [c.strip() for c in table["lammps_commands"].split(";") if c.strip()]
    if commands:
        return lammps_commands(commands, elements, name="map:custom")
    from mapcvd.data import data_path  # noqa: PLC0415

    name = table["forcefield"]
    packaged = data_path("forcefields", name)
    path = packaged if ("/" not in name and packaged.is_file()) else name
    return reaxff(path, elements)


def guided_indices(atoms: Atoms, spec: str) -> np.ndarray:
    """Indices of the guided molecule: ``"water"`` (found automatically) or explicit indices."""
    if spec.strip().lower() == "water":
        from mapcvd.md.water import find_water  # noqa: PLC0415

        o_index, h = find_water(atoms)
        return np.array([o_index, *h], dtype=int)
    try:
        indices = np.array([int(v) for v in spec.replace(",", " ").split()], dtype=int)
    except ValueError:
        raise InputError(f"map.guided must be 'water' or atom indices, got {spec!r}") from None
    if indices.size == 0 or indices.min() < 0 or indices.max() >= len(atoms):
        raise InputError(f"map.guided indices {spec!r} are not inside the structure of {len(atoms)} atoms")
    return indices


def settings_of(table: dict) -> MapSettings:
    """Environment settings of the ``[map]`` table (reward weights from the ``reward_*`` keys)."""
    return settings_from(MapSettings, table, section="map")


def build_network(training: TrainingSettings, channels: int, seed: int) -> QNetwork3D:
    """The Q-network of the settings, initialised from ``seed`` (the same on every actor and the learner)."""
    import torch  # noqa: PLC0415

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return QNetwork3D(channels, training.grid_points, n_actions=5, conv_channels=training.conv_layers,
                          hidden=training.hidden)


def replay_spec(training: TrainingSettings, channels: int) -> ReplaySpec:
    """The replay layout of the settings."""
    return ReplaySpec(channels=channels, points=training.grid_points, n_actors=training.actors,
                      capacity=training.replay_capacity, chunk=training.replay_chunk)


def _available_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 40


def check_map_table(table: dict, atoms: Atoms | None = None) -> None:
    """Refuse, in one line, a table that cannot run (before any work starts).

    Checks the potential (files, elements), the grid size of one state, the learner's
    replay cache (two grids per transition, every actor's ring) against this
    machine's memory, the replay layout and, with ``atoms``, the guided atoms and that
    the potential maps every element of the structure.
    """
    _checked_parts(table, atoms)


def _checked_parts(table: dict, atoms: Atoms | None) -> tuple[Potential, MapSettings, np.ndarray | None]:
    """The potential, settings and (with ``atoms``) guided atoms of the table, after every check."""
    potential = build_potential(table)
    settings = settings_of(table)
    training = TrainingSettings.from_table(table)
    grid_bytes = len(potential.elements) * settings.grid_points**3 * 4
    if grid_bytes > MAX_GRID_BYTES:
        raise InputError(
            f"a state grid of {settings.grid_points}^3 points x {len(potential.elements)} channels takes "
            f"{grid_bytes / 2**20:.1f} MiB, over the {MAX_GRID_BYTES >> 20} MiB limit: lower map.grid_points"
        )
    spec = replay_spec(training, len(potential.elements))
    cache = spec.n_actors * spec.capacity * 2 * grid_bytes // 2  # float16 grids
    if cache > 0.5 * _available_memory():
        raise InputError(
            f"the learner's replay cache ({spec.n_actors} actors x {spec.capacity} transitions of "
            f"{settings.grid_points}^3 grids) needs {cache / 2**30:.1f} GiB, over half of this machine's "
            f"memory: lower map.replay_capacity or map.grid_points"
        )
    if atoms is None:
        return potential, settings, None
    potential.type_of(atoms.get_chemical_symbols())
    return potential, settings, guided_indices(atoms, table["guided"])


def build_system(table: dict, atoms: Atoms | None = None) -> MapSystem:
    """The system of the table; ``atoms`` overrides the ``structure`` key (e.g. the stored one)."""
    if atoms is None:
        atoms = read_structure(table["structure"])
    potential, settings, guided = _checked_parts(table, atoms)
    return MapSystem(atoms, potential, guided, settings)
