"""The MAP agent's state: a local density grid around the agent.

MAP (Chen et al., the Molecular Autonomous Pathfinder, seed 000) describes the
state as "a three-dimensional grid that approximates the distribution of neighbor
atoms around the agent", each grid value "the sum of Gaussian kernel centered at the
neighbor atoms". Here the grid is a cube of ``n**3`` points with spacing ``h``
centred on the agent, with one channel per element, so the network sees which kind
of atom is where:

    rho_e(g) = sum_{atoms j of element e} exp(-|g - r_j|^2 / (2 sigma^2))

with minimum-image distances in periodic directions. Atoms farther than
``cutoff_sigmas * sigma`` from the grid along any axis are ignored. The computation
is vectorised: one numpy pass over all atoms takes the minimum-image offset from the
agent and keeps those within reach; the separable Gaussian then factorises into three
1-D kernels per atom, so each channel is one ``einsum`` over atoms (no Python loop
over atoms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mapcvd.errors import InputError
from mapcvd.md.analysis import minimum_image

#: Largest grid (points per side) accepted; 64**3 x channels floats per state.
MAX_POINTS_PER_SIDE = 64


@dataclass(frozen=True)
class DensityGrid:
    """Geometry of the agent's local density grid.

    Attributes
    ----------
    elements
        Element of each channel, in channel order (e.g. ``("Si", "O", "H")``).
    points
        Grid points per side (the grid has ``points**3`` values per channel).
    spacing
        Distance between neighbouring grid points, A.
    sigma
        Width of the Gaussian kernel, A.
    cutoff_sigmas
        Atoms farther than this many ``sigma`` outside the grid are ignored.
    """

    elements: tuple[str, ...]
    points: int = 16
    spacing: float = 0.5
    sigma: float = 0.5
    cutoff_sigmas: float = 3.0

    def __post_init__(self):
        if not self.elements:
            raise InputError("the density grid needs at least one element channel")
        if not 2 <= self.points <= MAX_POINTS_PER_SIDE:
            raise InputError(
                f"grid points per side must be in 2..{MAX_POINTS_PER_SIDE}, got {self.points}"
            )
        if self.spacing <= 0 or self.sigma <= 0 or self.cutoff_sigmas <= 0:
            raise InputError("grid spacing, sigma and cutoff_sigmas must be positive")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(channels, points, points, points)``."""
        return (len(self.elements), self.points, self.points, self.points)

    @property
    def offsets(self) -> np.ndarray:
        """1-D offsets of the grid points from the centre, A."""
        return (np.arange(self.points) - (self.points - 1) / 2.0) * self.spacing

    @property
    def reach(self) -> float:
        """Distance from the centre, along each axis, within which atoms contribute, A."""
        return self.offsets[-1] + self.cutoff_sigmas * self.sigma

    def compute(
        self,
        center: np.ndarray,
        positions: np.ndarray,
        symbols,
        cell_lengths: np.ndarray,
        pbc,
        *,
        exclude: np.ndarray | None = None,
    ) -> np.ndarray:
        """The grid around ``center`` as a float32 array of :attr:`shape`.

        Parameters
        ----------
        center
            Grid centre (the agent position), A; may be unwrapped.
        positions
            Atom positions, A, shape (N, 3) (wrapped or unwrapped).
        symbols
            Element of each atom; atoms of elements without a channel are ignored.
        cell_lengths
            Orthogonal cell edge lengths, A.
        pbc
            Periodicity of each direction.
        exclude
            Indices of atoms left out (e.g. none: the guided molecule is part of the
            environment the agent sees; pass its indices to hide it).

        Raises
        ------
        InputError
            If the grid is wider than half a periodic cell edge (it would see an
            atom and its own image).
        """
        lengths = np.asarray(cell_lengths, dtype=float)
        periodic = np.asarray(pbc, dtype=bool)
        if np.any(periodic & (2 * self.reach > lengths)):
            raise InputError(
                f"the density grid reaches {self.reach:.2f} A from the agent along an axis, more than "
                f"half the periodic cell ({lengths.min():.2f} A): use fewer points or a smaller spacing"
            )
        symbols = np.asarray(symbols)
        channel = np.full(len(symbols), -1)
        for c, element in enumerate(self.elements):
            channel[symbols == element] = c
        if exclude is not None and len(exclude):
            channel[np.asarray(exclude)] = -1
        box = np.where(periodic, lengths, 0.0)
        delta = minimum_image(np.asarray(positions, dtype=float) - np.asarray(center, dtype=float), box)
        near = np.flatnonzero((channel >= 0) & np.all(np.abs(delta) <= self.reach, axis=1))
        grid = np.zeros(self.shape, dtype=np.float64)
        delta = delta[near]
        # separable Gaussian: exp(-|g-d|^2/2s^2) = prod over axes of 1-D kernels
        diff = self.offsets[None, None, :] - delta[:, :, None]  # (atoms, 3, points)
        kernel = np.exp(-(diff**2) / (2.0 * self.sigma**2))
        for c in range(len(self.elements)):
            mine = channel[near] == c
            if mine.any():
                k = kernel[mine]
                grid[c] = np.einsum("ai,aj,ak->ijk", k[:, 0], k[:, 1], k[:, 2], optimize=True)
        return grid.astype(np.float32)
