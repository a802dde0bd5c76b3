"""The MAP agent's density grid and the prioritized-replay sum tree."""

import numpy as np
import pytest
from scipy import stats

from mapcvd.errors import InputError
from mapcvd.map.grid import DensityGrid
from mapcvd.map.sumtree import SumTree


def brute_force_grid(grid, center, positions, symbols, lengths):
    """Reference: loop over channels, grid points and atoms, minimum image."""
    out = np.zeros(grid.shape)
    g = grid.offsets
    points = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1) + center
    for c, element in enumerate(grid.elements):
        for r, s in zip(positions, symbols):
            if s != element:
                continue
            d = points - r
            d -= lengths * np.round(d / lengths)
            out[c] += np.exp(-np.sum(d**2, axis=-1) / (2 * grid.sigma**2))
    return out


def test_density_grid_matches_brute_force_across_boundary():
    rng = np.random.default_rng(3)
    lengths = np.array([14.0, 14.0, 14.0])
    positions = rng.uniform(0, 14, size=(120, 3))
    symbols = rng.choice(["Si", "O", "H"], size=120)
    grid = DensityGrid(("Si", "O", "H"), points=8, spacing=0.6, sigma=0.7, cutoff_sigmas=6.0)
    center = np.array([0.3, 13.8, 7.0])  # next to a corner: images matter
    values = grid.compute(center, positions, symbols, lengths, (True, True, True))
    assert values.shape == (3, 8, 8, 8) and values.dtype == np.float32
    reference = brute_force_grid(grid, center, positions, symbols, lengths)
    np.testing.assert_allclose(values, reference, rtol=1e-5, atol=1e-6)


def test_density_grid_unwrapped_centre_and_translation_invariance():
    rng = np.random.default_rng(4)
    lengths = np.array([15.0, 15.0, 15.0])
    positions = rng.uniform(0, 15, size=(80, 3))
    symbols = ["O"] * 80
    grid = DensityGrid(("O",), points=6, spacing=0.5, sigma=0.5)
    a = grid.compute(np.array([2.0, 3.0, 4.0]), positions, symbols, lengths, (True,) * 3)
    b = grid.compute(np.array([17.0, 3.0, -11.0]), positions, symbols, lengths, (True,) * 3)  # images
    np.testing.assert_allclose(a, b, atol=1e-6)
    shift = np.array([1.3, -2.1, 0.4])
    c = grid.compute(np.array([2.0, 3.0, 4.0]) + shift, positions + shift, symbols, lengths, (True,) * 3)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_density_grid_single_atom_peak_and_bad_sizes():
    grid = DensityGrid(("Si", "O"), points=5, spacing=1.0, sigma=0.5)
    values = grid.compute(np.zeros(3) + 5, np.array([[5.0, 5.0, 5.0]]), ["O"], np.full(3, 20.0), (True,) * 3)
    assert values[0].max() == 0.0  # no Si
    assert values[1, 2, 2, 2] == pytest.approx(1.0)  # the centre point sits on the O
    assert values[1, 3, 2, 2] == pytest.approx(np.exp(-2.0), rel=1e-6)
    with pytest.raises(InputError, match="points per side"):
        DensityGrid(("O",), points=1000)
    with pytest.raises(InputError, match="half the periodic cell"):
        DensityGrid(("O",), points=40, spacing=0.5).compute(
            np.zeros(3), np.zeros((1, 3)), ["O"], np.full(3, 10.0), (True,) * 3
        )


def test_sum_tree_sampling_frequencies_match_priorities():
    rng = np.random.default_rng(7)
    tree = SumTree(50)
    priorities = rng.uniform(0, 1, size=50) ** 2
    priorities[[3, 17]] = 0.0  # never sampled
    tree.update(np.arange(50), priorities)
    draws = np.concatenate([tree.sample(64, rng)[0] for _ in range(2000)])
    counts = np.bincount(draws, minlength=50)
    assert counts[3] == 0 and counts[17] == 0
    nonzero = priorities > 0
    expected = priorities[nonzero] / priorities.sum() * draws.size
    chi2 = stats.chisquare(counts[nonzero], expected)
    assert chi2.pvalue > 1e-3


def test_sum_tree_updates_total_and_rebuild():
    tree = SumTree(1000)
    rng = np.random.default_rng(0)
    for _ in range(200):
        slots = rng.integers(0, 1000, size=32)
        tree.update(slots, rng.uniform(0, 10, size=32))
    assert tree.total == pytest.approx(tree.priorities.sum(), rel=1e-12)
    tree.update([5, 5], [1.0, 2.0])  # the last value of a repeated slot wins
    assert tree.priorities[5] == 2.0
    before = tree.total
    tree.rebuild()
    assert tree.total == pytest.approx(before, rel=1e-12) and tree.drift() < 1e-12
    slots, values = tree.sample(16, rng)
    np.testing.assert_array_equal(values, tree.priorities[slots])


def test_sum_tree_refuses_bad_input():
    tree = SumTree(4)
    with pytest.raises(InputError):
        tree.sample(2, np.random.default_rng(0))
    with pytest.raises(InputError):
        tree.update([4], [1.0])
    with pytest.raises(InputError):
        tree.update([0], [-1.0])
    with pytest.raises(InputError):
        SumTree(0)
