"""The MAP environment on the packaged silica + water (ReaxFF)."""

import numpy as np
import pytest

from mapcvd.data import data_path
from mapcvd.errors import InputError
from mapcvd.map.environment import MapEnvironment, MapSettings
from mapcvd.md.potentials import reaxff
from mapcvd.md.structures import read_structure
from mapcvd.md.water import find_water


@pytest.fixture(scope="module")
def system():
    atoms = read_structure("silica-192-water.extxyz")
    o, h = find_water(atoms)
    return atoms, reaxff(data_path("forcefields", "ffield.SiOH"), ["Si", "O", "H"]), [o, *h]


def test_actions_are_the_papers_five():
    np.testing.assert_array_equal(
        MapSettings().actions(), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, -1, 0], [0, 0, -1]]
    )


def test_bad_settings_refused():
    with pytest.raises(InputError, match="unknown reward"):
        MapSettings(rewards={"speed": 1.0})
    with pytest.raises(InputError, match="delta"):
        MapSettings(delta=0.0)
    with pytest.raises(InputError, match="unknown map setting"):
        MapSettings.from_dict({"dleta": 0.5})


def test_grid_that_does_not_fit_refused(system):
    atoms, potential, guided = system
    with pytest.raises(InputError):
        MapEnvironment(atoms, potential, guided, MapSettings(grid_points=64, grid_spacing=0.5))


def test_dragging_along_x_makes_progress_and_scores(system):
    atoms, potential, guided = system
    env = MapEnvironment(atoms, potential, guided, MapSettings(max_actions=4, relax_steps=20), seed=3)
    state = env.reset()
    assert state.shape == (3, 16, 16, 16) and state[0].sum() > 0  # Si, O, H channels
    rewards = []
    for _ in range(4):
        state, reward, done, info = env.step(0)
        rewards.append(reward)
    assert done and info["truncated"] and not info["crossed"]
    assert 0.5 < info["progress"] < 2.5  # four moves of 0.5 A, the O follows its tether
    assert info["terms"]["position"] == pytest.approx(1.0) and info["terms"]["time"] == -1.0
    assert len(env.records) == 4 and len(env.frames) == 5
    assert np.isfinite([r.energy for r in env.records]).all()
    # a sideways move gives no position reward
    env.reset()
    _, _, _, info = env.step(1)
    assert info["terms"]["position"] == 0.0
    env.close()


def test_lammps_failure_ends_episode_and_environment_recovers(system):
    atoms, potential, guided = system
    env = MapEnvironment(atoms, potential, guided, MapSettings(max_actions=3, relax_steps=5), seed=4)
    env.reset()
    env.engine.close()  # the next LAMMPS call fails as a crashed instance would
    state, reward, done, info = env.step(0)
    assert done and state is None and info["failed"] and env.failures
    assert env.reset().shape == (3, 16, 16, 16)  # rebuilt
    _, _, _, info = env.step(0)
    assert info["failed"] is None
    env.close()


def test_each_reward_term_computes_what_the_paper_says(system):
    """R_position, R_energy, R_density, R_distance and R_time recomputed independently after each action."""
    from ase.geometry import get_distances

    atoms, potential, guided = system
    settings = MapSettings(max_actions=6, relax_steps=10, energy_window=15, density_distance=2.0,
                           distance_threshold=0.3,
                           rewards={"position": 1.0, "energy": 0.5, "density": 0.25, "distance": 0.75, "time": 0.1})
    env = MapEnvironment(atoms, potential, guided, settings, seed=4)
    env.reset()
    assert len(env.history) == 10  # the first relaxation's MD energies (fewer than the window)
    others = np.setdiff1d(np.arange(len(atoms)), guided)
    try:
        for action in (0, 0, 1, 3, 0, 2):
            reference = float(np.mean(env.history))  # the mean of the last <= 15 MD steps before the action
            before = env.agent.copy()
            _, reward, _, info = env.step(action)
            terms, record = info["terms"], env.records[-1]
            assert terms["position"] == pytest.approx((record.agent[0] - before[0]) / settings.delta)
            assert terms["position"] == pytest.approx(1.0 if action == 0 else 0.0)  # only +x counts; sideways 0
            assert terms["energy"] == (1.0 if record.energy < reference else 0.0)
            _, d = get_distances(env.engine.get_positions()[others], [record.agent], cell=atoms.cell, pbc=atoms.pbc)
            assert terms["density"] == (-1.0 if d.min() < settings.density_distance else 0.0)
            stretch = np.linalg.norm(record.guided - record.agent)
            assert terms["distance"] == (-1.0 if stretch > settings.distance_threshold else 0.0)
            assert terms["time"] == -1.0
            assert reward == pytest.approx(sum(settings.rewards[t] * v for t, v in terms.items()))
            assert len(env.history) == min(15, 10 * (len(env.records) + 1))  # the window slides over MD steps
    finally:
        env.close()
