"""Molecules in a reactive-MD frame: bonds from a bond-length table, periodic components.

The staged CVD runs of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, hold a MoO3 slab in S2/H2S/H2 gas; during the run the
gas reacts with the slab (O release and self-reduction, SO/SO2 and H2O formation, Mo-S
bonds; Hong et al., Nano Lett. 17, 4866 (2017)). To bring the gas back to each stage's
targets, and to report what the gas holds, a frame is split into molecules:

* two atoms are bonded when their minimum-image distance is below the cut-off of their
  element pair in :data:`BOND_CUTOFFS` (about 1.2-1.3 times the bond length, so that
  bonds stretched at the 750-3750 K of the runs still count);
* molecules are the connected components of that bond graph, found with one periodic
  neighbour search (:func:`mapcvd.md.analysis.neighbor_pairs`, any periodic cell) and
  :func:`scipy.sparse.csgraph.connected_components`, with no Python loop over atoms;
* a molecule is named after its composition (:data:`FORMULAS`): S2, H2S, H2, H2O, SO,
  SO2. The slab and everything bonded to it is one large component with Mo, so it never
  takes one of these names: a molecule named S2 is a *free* S2.

Cut-offs (A)
------------
H-H 1.2 (ReaxFF H2 0.84), H-O 1.3 (0.97), H-S 1.7 (1.22), O-O 1.8 (1.21-1.48),
O-S 1.9 (SO2 1.48), S-S 2.5 (S2 1.97), Mo-O 2.5 (MoO3 1.67-2.33), Mo-S 2.8 (MoS2 2.41),
Mo-H 2.1, Mo-Mo 3.0 (bcc Mo 2.72; Mo-Mo in MoO3 and MoS2 is >= 3.18, not a bond).
Every cut-off is below 3.0 A, the default minimum distance of gas insertion, so a
freshly inserted molecule is always free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mapcvd.errors import InputError
from mapcvd.md.analysis import neighbor_pairs

__all__ = ["BOND_CUTOFFS", "FORMULAS", "Molecules", "count_species", "find_molecules"]

#: Bond cut-off (A) per element pair; pairs not listed are never bonded.
BOND_CUTOFFS: dict[frozenset, float] = {
    frozenset({"H"}): 1.2,
    frozenset({"H", "O"}): 1.3,
    frozenset({"H", "S"}): 1.7,
    frozenset({"O"}): 1.8,
    frozenset({"O", "S"}): 1.9,
    frozenset({"S"}): 2.5,
    frozenset({"Mo", "O"}): 2.5,
    frozenset({"Mo", "S"}): 2.8,
    frozenset({"Mo", "H"}): 2.1,
    frozenset({"Mo"}): 3.0,
}

#: Composition of each named species (element -> number of atoms).
FORMULAS: dict[str, dict[str, int]] = {
    "S2": {"S": 2},
    "H2S": {"H": 2, "S": 1},
    "H2": {"H": 2},
    "H2O": {"H": 2, "O": 1},
    "SO": {"O": 1, "S": 1},
    "SO2": {"O": 2, "S": 1},
}


@dataclass(frozen=True)
class Molecules:
    """The molecules (bonded components) of a structure.

    Attributes
    ----------
    label
        Component index of every atom, shape (N,), values ``0 .. n - 1``.
    size
        Atoms per component, shape (n,).
    names
        Species name of each component (a key of :data:`FORMULAS`), ``""`` when its
        composition matches none, shape (n,), dtype object.
    """

    label: np.ndarray
    size: np.ndarray
    names: np.ndarray

    def __len__(self) -> int:
        return int(self.size.size)

    def count(self, name: str) -> int:
        """Number of free molecules of species ``name``."""
        return int(np.count_nonzero(self.names == name))

    def atoms_of(self, components) -> np.ndarray:
        """Sorted atom indices of the given component indices."""
        return np.flatnonzero(np.isin(self.label, np.asarray(components, dtype=np.int64)))

    def free(self, name: str) -> np.ndarray:
        """Component indices of the free molecules of species ``name`` (ascending)."""
        return np.flatnonzero(self.names == name)


def _cutoff_table(elements: list[str], cutoffs: dict[frozenset, float]) -> np.ndarray:
    """Square table of bond cut-offs (A) by element code; 0 where never bonded."""
    n = len(elements)
    table = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            table[a, b] = cutoffs.get(frozenset({elements[a], elements[b]}), 0.0)
    return table


def find_molecules(atoms: Atoms, *, cutoffs: dict[frozenset, float] | None = None) -> Molecules:
    """Split a structure into bonded molecules and name them.

    Bonds are pairs closer than the cut-off of their element pair (minimum image along
    periodic directions); molecules are the connected components of the bond graph
    (the analysis of the gas in the staged CVD runs of Rajak et al. 2021,
    doi:10.1038/s41524-021-00535-3). Vectorised: one neighbour search, one sparse
    connected-components call, compositions by ``bincount``.

    Parameters
    ----------
    atoms
        Structure, periodic along its ``pbc`` directions; any cell (orthogonal,
        hexagonal, triclinic).
    cutoffs
        Cut-off per element pair (``frozenset({"S"})`` for S-S); default
        :data:`BOND_CUTOFFS`.

    Returns
    -------
    Molecules
        Component label per atom, component sizes and species names.

    Raises
    ------
    InputError
        If the largest cut-off is not below half the shortest periodic
        lattice vector (the smallest cell length of an orthogonal box).
    """
    cutoffs = BOND_CUTOFFS if cutoffs is None else cutoffs
    n_atoms = len(atoms)
    if n_atoms == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Molecules(empty, empty, np.zeros(0, dtype=object))
    symbols = np.asarray(atoms.get_chemical_symbols())
    formula_elements = {el for comp in FORMULAS.values() for el in comp}
    elements = sorted(set(symbols.tolist()) | formula_elements)
    code = np.searchsorted(np.asarray(elements), symbols)
    table = _cutoff_table(elements, cutoffs)
    rmax = float(table.max())
    if rmax > 0 and n_atoms > 1:
        pairs = neighbor_pairs(atoms, rmax)
        bonded = pairs.distance < table[code[pairs.i], code[pairs.j]]
        i, j = pairs.i[bonded], pairs.j[bonded]
    else:
        i = j = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n_atoms, n_atoms))
    n_comp, label = connected_components(graph, directed=False)
    label = label.astype(np.int64)
    n_el = len(elements)
    composition = np.bincount(label * n_el + code, minlength=n_comp * n_el).reshape(n_comp, n_el)
    names = np.full(n_comp, "", dtype=object)
    for name, comp in FORMULAS.items():  # a handful of species, vectorised over components
        row = np.zeros(n_el, dtype=np.int64)
        row[[elements.index(el) for el in comp]] = list(comp.values())
        names[np.all(composition == row, axis=1)] = name
    return Molecules(label=label, size=np.bincount(label, minlength=n_comp), names=names)


def count_species(atoms_or_molecules, species=tuple(FORMULAS)) -> dict[str, int]:
    """Number of free molecules of each species, ``{name: count}`` in the order asked.

    Parameters
    ----------
    atoms_or_molecules
        An :class:`ase.Atoms` (analysed with :func:`find_molecules`) or a
        :class:`Molecules` already found.
    species
        Names to count, each a key of :data:`FORMULAS`.
    """
    unknown = [s for s in species if s not in FORMULAS]
    if unknown:
        raise InputError(f"unknown species {', '.join(unknown)}; known: {', '.join(FORMULAS)}")
    mol = atoms_or_molecules if isinstance(atoms_or_molecules, Molecules) else find_molecules(atoms_or_molecules)
    return {name: mol.count(name) for name in species}
