"""Structures (ASE ``Atoms``) in the campaign store as plain arrays, never pickles."""

from __future__ import annotations

import numpy as np
import zarr
from ase import Atoms

from mapcvd.errors import StoreError
from mapcvd.store.layout import ATOMS_KIND


def write_atoms(root: zarr.Group, path: str, atoms: Atoms, *, attrs: dict | None = None) -> zarr.Group:
    """Write ``atoms`` (numbers, positions, cell, pbc) to the group ``path``; ``attrs`` go in its attributes.

    The attributes are written last, with ``kind = "mapcvd-atoms"``: a half-written
    group is not read back as a structure.
    """
    group = root.require_group(path)
    group.create_array("numbers", data=atoms.numbers.astype(np.int32), overwrite=True)
    group.create_array("positions", data=np.asarray(atoms.positions, dtype=np.float64), overwrite=True)
    group.create_array("cell", data=np.asarray(atoms.cell[:], dtype=np.float64), overwrite=True)
    group.create_array("pbc", data=np.asarray(atoms.pbc, dtype=bool), overwrite=True)
    group.update_attributes({**(attrs or {}), "kind": ATOMS_KIND, "natoms": len(atoms)})
    return group


def read_atoms(root: zarr.Group, path: str) -> tuple[Atoms, dict]:
    """The structure written by :func:`write_atoms` at ``path`` and its attributes."""
    try:
        group = root[path]
    except KeyError:
        raise StoreError(f"no structure at {path} in the store") from None
    attrs = dict(group.attrs)
    if attrs.get("kind") != ATOMS_KIND:
        raise StoreError(f"{path} in the store is not a complete structure")
    atoms = Atoms(numbers=np.asarray(group["numbers"][:]), positions=np.asarray(group["positions"][:]),
                  cell=np.asarray(group["cell"][:]), pbc=np.asarray(group["pbc"][:]))
    return atoms, attrs
