"""The MAP environment: a guided molecule dragged through a host by a harmonic tether.

Chen et al.'s Molecular Autonomous Pathfinder (seed 000) defines the agent as the
centre of a harmonic spring bound to the O of a water molecule in amorphous silica
under ReaxFF (NVT, 10 K, 0.5 fs). Each of five actions (+x, +y, +z, -y, -z; no -x
to avoid oscillation) moves the spring centre by ``delta``; a short reactive-MD run
then relaxes the system. The state is a density grid around the agent
(:mod:`mapcvd.map.grid`). The reward is a weighted sum of five terms:

``position``
    progress along the goal axis: the increment of the agent's coordinate per action
    divided by ``delta``. Summed over an episode this is the agent's final coordinate
    (the paper's "x coordinate of the agent" reward) in its potential-based form,
    which does not reward lingering.
``energy``
    +1 when the potential energy after the relaxation is below the mean of the last
    100 MD steps before the action (the paper's reference energy), else 0.
``density``
    -1 when an atom outside the guided molecule is closer to the agent than
    ``density_distance``.
``distance``
    -1 when the guided atom is farther from the agent than ``distance_threshold``.
``time``
    -1 per action.

An episode ends when the guided atom has crossed the box along the goal axis
(unwrapped), after ``max_actions`` actions, or on a LAMMPS failure, after which the
environment rebuilds its engine and records the failure. Nothing is specific to
water or silica: the host, the guided molecule, the goal axis and the potential are
inputs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields

import numpy as np
from ase import Atoms

from mapcvd.config import check_settings, setting
from mapcvd.errors import InputError, MDError
from mapcvd.map.grid import DensityGrid
from mapcvd.md.analysis import minimum_image
from mapcvd.md.engine import Engine
from mapcvd.md.potentials import Potential

REWARD_TERMS = ("position", "energy", "density", "distance", "time")
AXES = "xyz"
#: Bytes above which a state grid is refused (it is stored for every transition).
MAX_GRID_BYTES = 4 * 1024**2


@dataclass(frozen=True)
class MapSettings:
    """Settings of the MAP environment; every default and range is the ``[map]`` key's in SCHEMA.

    Attributes (``[map]`` key in brackets; its doc in :data:`mapcvd.config.SCHEMA`)
    ------------------------------------------------------------------------------
    goal_axis
        Axis the molecule must cross (``"x"``: actions +x, +y, +z, -y, -z) [``goal_axis``].
    delta
        Displacement of the tether centre per action, A [``delta_A``].
    relax_steps
        MD steps after each action [``relax_steps``].
    temperature, timestep_fs, damping_fs
        NVT thermostat (K), timestep and damping (fs) [``temperature_K``, ``timestep_fs``, ``damping_fs``].
    tether_k
        Spring constant, eV/A^2 [``tether_k_eV_A2``].
    max_actions
        Actions before an episode is cut [``max_actions``].
    rewards
        Weight of each reward term; a term is switched off by weight 0 [``reward_<term>``].
    density_distance
        Closest approach (A) of another atom to the agent before ``density`` fires [``density_distance_A``].
    distance_threshold
        Agent-to-guided-atom distance (A) beyond which ``distance`` fires [``distance_threshold_A``].
    energy_window
        MD steps in the reference energy (the paper: 100) [``energy_window``].
    grid_points, grid_spacing, grid_sigma
        The density grid: points per side, spacing (A), Gaussian width (A)
        [``grid_points``, ``grid_spacing_A``, ``grid_sigma_A``].
    """

    goal_axis: str = setting("map", "goal_axis")
    delta: float = setting("map", "delta_A")
    relax_steps: int = setting("map", "relax_steps")
    temperature: float = setting("map", "temperature_K")
    timestep_fs: float = setting("map", "timestep_fs")
    damping_fs: float = setting("map", "damping_fs")
    tether_k: float = setting("map", "tether_k_eV_A2")
    max_actions: int = setting("map", "max_actions")
    rewards: dict = setting("map", {term: f"reward_{term}" for term in REWARD_TERMS})
    density_distance: float = setting("map", "density_distance_A")
    distance_threshold: float = setting("map", "distance_threshold_A")
    energy_window: int = setting("map", "energy_window")
    grid_points: int = setting("map", "grid_points")
    grid_spacing: float = setting("map", "grid_spacing_A")
    grid_sigma: float = setting("map", "grid_sigma_A")

    def __post_init__(self):
        unknown = sorted(set(self.rewards) - set(REWARD_TERMS))
        if unknown:
            raise InputError(f"unknown reward term(s) {', '.join(unknown)}; known: {', '.join(REWARD_TERMS)}")
        check_settings(self)

    @classmethod
    def from_dict(cls, values: dict) -> MapSettings:
        """Build from a config table; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown map setting(s) {', '.join(unknown)}")
        return cls(**values)

    def actions(self) -> np.ndarray:
        """Unit displacement of each action: +goal, then +/- the two other axes (5, 3)."""
        g = AXES.index(self.goal_axis)
        others = [a for a in range(3) if a != g]
        eye = np.eye(3)
        return np.stack([eye[g], eye[others[0]], eye[others[1]], -eye[others[0]], -eye[others[1]]])


@dataclass
class StepRecord:
    """What one action did (kept per episode, stored for the pathway analysis)."""

    action: int
    energy: float
    agent: np.ndarray
    guided: np.ndarray
    terms: dict
    reward: float


class MapEnvironment:
    """One MAP environment with its own LAMMPS engine.

    Parameters
    ----------
    atoms
        Host with the guided molecule.
    potential
        The potential (e.g. ``reaxff(ffield.SiOH, ["Si","O","H"])``).
    guided
        Atom indices of the guided molecule; the first is the tethered atom.
    settings
        Environment settings.
    seed
        Seed of the velocity initialisation.
    """

    def __init__(self, atoms: Atoms, potential: Potential, guided, settings: MapSettings, *, seed: int = 0):
        self.initial = atoms.copy()
        self.potential = potential
        self.guided = np.atleast_1d(np.asarray(guided, dtype=int))
        if self.guided.size == 0 or self.guided.min() < 0 or self.guided.max() >= len(atoms):
            raise InputError("guided atom indices must be non-empty and inside the structure")
        self.settings = settings
        self.seed = seed
        self.symbols = np.array(atoms.get_chemical_symbols())
        self.lengths = np.diag(np.asarray(atoms.cell[:]))
        self.pbc = np.asarray(atoms.pbc, dtype=bool)
        self.grid = DensityGrid(tuple(potential.elements), settings.grid_points, settings.grid_spacing,
                                settings.grid_sigma)
        if np.prod(self.grid.shape) * 4 > MAX_GRID_BYTES:
            raise InputError(f"a state grid of shape {self.grid.shape} is over {MAX_GRID_BYTES >> 20} MiB")
        self.grid.compute(np.zeros(3), atoms.positions, self.symbols, self.lengths, self.pbc)  # size check
        self.actions = settings.actions()
        self.axis = AXES.index(settings.goal_axis)
        self.weights = {t: float(settings.rewards.get(t, 0.0)) for t in REWARD_TERMS}
        others = np.ones(len(atoms), dtype=bool)
        others[self.guided] = False
        self._others = np.flatnonzero(others)
        self.engine: Engine | None = None
        self.failures: list[str] = []
        self.episode_seed = seed

    # ------------------------------------------------------------------ episode
    def reset(self) -> np.ndarray:
        """Start an episode from the initial structure; return the first state."""
        if self.engine is not None:
            self.engine.close()
        self.episode_seed += 1
        self.engine = Engine(self.initial, self.potential, seed=self.episode_seed)
        s = self.settings
        positions = self.engine.get_positions(unwrapped=True)
        self.agent = positions[self.guided[0]].copy()
        self.start = self.agent.copy()
        self.engine.set_tether([self.guided[0]], self.agent, k=s.tether_k)
        trace = self.engine.run_nvt(s.relax_steps, s.temperature, timestep_fs=s.timestep_fs, damping_fs=s.damping_fs)
        self.history = deque(trace.potential_energy, maxlen=s.energy_window)
        self.start_energy = float(trace.potential_energy[-1])
        self.records: list[StepRecord] = []
        self.frames: list[np.ndarray] = [self.engine.get_positions(unwrapped=True)]
        return self.state()

    def state(self) -> np.ndarray:
        """The density grid around the agent."""
        positions = self.engine.get_positions()
        return self.grid.compute(self.agent, positions, self.symbols, self.lengths, self.pbc)

    def step(self, action: int) -> tuple[np.ndarray | None, float, bool, dict]:
        """Move the tether by action ``action``, relax, and score.

        Returns
        -------
        state, reward, done, info
            ``info`` has ``terms`` (each reward term before weighting), ``energy``
            (eV), ``progress`` (A along the goal axis), ``crossed``, ``truncated``
            and ``failed`` (the LAMMPS error message, or None). After a failure the
            state is None and the engine has been rebuilt by :meth:`reset` next time.
        """
        s = self.settings
        if not 0 <= action < len(self.actions):
            raise InputError(f"action must be in 0..{len(self.actions) - 1}, got {action}")
        before = self.agent[self.axis]
        reference = float(np.mean(self.history))
        self.agent = self.agent + s.delta * self.actions[action]
        try:
            self.engine.move_tether(self.agent)
            trace = self.engine.run_nvt(s.relax_steps, s.temperature, timestep_fs=s.timestep_fs,
                                        damping_fs=s.damping_fs)
            positions = self.engine.get_positions(unwrapped=True)
        except MDError as exc:
            self.failures.append(str(exc))
            self.engine = None
            info = {"terms": {}, "energy": float("nan"), "progress": self.progress(), "crossed": False,
                    "truncated": False, "failed": str(exc)}
            return None, 0.0, True, info
        self.history.extend(trace.potential_energy)
        energy = float(trace.potential_energy[-1])
        guided = positions[self.guided[0]]
        terms = self._terms(before, energy, reference, positions, guided)
        reward = float(sum(self.weights[t] * v for t, v in terms.items()))
        self.records.append(StepRecord(action, energy, self.agent.copy(), guided.copy(), terms, reward))
        self.frames.append(positions)
        crossed = guided[self.axis] - self.start[self.axis] >= self.lengths[self.axis]
        truncated = not crossed and len(self.records) >= s.max_actions
        info = {"terms": terms, "energy": energy, "progress": self.progress(), "crossed": bool(crossed),
                "truncated": bool(truncated), "failed": None}
        return self.state(), reward, bool(crossed or truncated), info

    def _terms(self, before, energy, reference, positions, guided) -> dict:
        s = self.settings
        delta = minimum_image(positions[self._others] - self.agent, np.where(self.pbc, self.lengths, 0.0))
        closest = float(np.sqrt(np.min(np.sum(delta**2, axis=1)))) if len(delta) else np.inf
        return {
            "position": (self.agent[self.axis] - before) / s.delta,
            "energy": 1.0 if energy < reference else 0.0,
            "density": -1.0 if closest < s.density_distance else 0.0,
            "distance": -1.0 if np.linalg.norm(guided - self.agent) > s.distance_threshold else 0.0,
            "time": -1.0,
        }

    def progress(self) -> float:
        """Distance (A) the guided atom has moved along the goal axis, unwrapped."""
        if not self.records:
            return 0.0
        return float(self.records[-1].guided[self.axis] - self.start[self.axis])

    def close(self) -> None:
        """Free the engine."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None
