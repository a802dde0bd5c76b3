"""Reading and writing structure files, with clear errors.

Any format ASE reads is accepted; files are written as extended XYZ by default.
A bare name such as ``silica-192-water.extxyz`` that is not an existing file is
looked up among the packaged structures in ``data/structures``.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
from ase import Atoms

from mapcvd.errors import InputError


def resolve_structure_path(name_or_path: str | Path) -> Path:
    """Return an existing file for a path or a packaged structure name.

    Raises
    ------
    InputError
        If neither a file nor a packaged structure of that name exists.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    from mapcvd.data import data_path  # noqa: PLC0415

    packaged = data_path("structures", str(name_or_path))
    if path.name == str(name_or_path) and packaged.is_file():
        return packaged
    raise InputError(f"structure file not found: {name_or_path}")


def read_structure(name_or_path: str | Path, *, require: tuple[str, ...] = ()) -> Atoms:
    """Read a structure (last frame) with ASE.

    Parameters
    ----------
    name_or_path
        A file path or a packaged structure name.
    require
        Element symbols the structure must contain.

    Raises
    ------
    InputError
        If the file is missing, unreadable, empty, or lacks a required element.
    """
    path = resolve_structure_path(name_or_path)
    try:
        atoms = ase.io.read(path, index=-1)
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds of errors for bad files
        raise InputError(f"cannot read structure {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise InputError(f"structure {path} holds no atoms")
    missing = sorted(set(require) - set(atoms.get_chemical_symbols()))
    if missing:
        raise InputError(f"structure {path} has no {', '.join(missing)} atoms (needs {', '.join(require)})")
    return atoms


def write_structure(atoms: Atoms, path: str | Path, *, comment: str | None = None) -> Path:
    """Write ``atoms`` (extended XYZ unless the suffix says otherwise); create parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "extxyz" if path.suffix in ("", ".xyz", ".extxyz") else None
    if comment is not None and fmt == "extxyz":
        atoms = atoms.copy()
        atoms.info["comment"] = comment
    ase.io.write(path, atoms, format=fmt)
    return path
