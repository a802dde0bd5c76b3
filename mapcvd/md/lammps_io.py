"""LAMMPS input text and data conversion for :class:`mapcvd.md.engine.Engine`.

Pure helpers with no LAMMPS instance of their own:

* :func:`box_of`: the simulation box of an ASE structure (orthogonal cells only; a
  non-periodic direction without a cell length is shrink-wrapped around the atoms).
* :func:`box_commands` and :func:`setup_commands`: the LAMMPS input that creates that
  box and the computes the engine reads (potential energy, temperature).
* :func:`encode_images` / :func:`decode_images`: LAMMPS image flags to and from
  integer (N, 3) arrays.
* :func:`tether_commands`: the harmonic tether of the MAP agent (Chen et al., MAP,
  seed 000), an ``addforce`` fix driven by LAMMPS ``internal`` variables, so that
  moving its centre costs three variable writes and no re-initialisation.
* :func:`classify`: the :class:`~mapcvd.errors.MDError` subclass for a LAMMPS error.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from mapcvd.errors import ForceFieldError, InputError, LostAtomsError, MDError, UnknownElementError
from mapcvd.md.potentials import Potential

__all__ = [
    "box_commands",
    "box_of",
    "classify",
    "decode_images",
    "encode_images",
    "setup_commands",
    "tether_commands",
]

# LAMMPS image-flag encoding for the default 32-bit imageint (IMGBITS = 10).
_IMGMAX, _IMGBITS, _IMGMASK = 512, 10, 1023


def classify(message: str) -> type[MDError]:
    """The :class:`~mapcvd.errors.MDError` subclass for a LAMMPS error message."""
    text = message.lower()
    if "lost atoms" in text or "out of range atoms" in text:
        return LostAtomsError
    if "cannot open" in text or "reaxff potential file" in text or "potential file" in text:
        return ForceFieldError
    if "element" in text:
        return UnknownElementError
    return MDError


def box_of(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The box of ``atoms``: ``(pbc, lengths, origin, boundary)``, in A.

    ``boundary`` holds the LAMMPS boundary style per direction (``"p"`` or ``"s"``).

    Raises
    ------
    InputError
        If the cell has tilt, or a periodic direction has no cell length.
    """
    cell = np.asarray(atoms.cell[:])
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-8:
        raise InputError("only orthogonal cells are supported (the structure's cell has tilt)")
    lengths = np.diag(cell).copy()
    pbc = np.asarray(atoms.pbc, dtype=bool)
    positions = atoms.get_positions()
    lo = np.zeros(3)
    boundary = []
    for d in range(3):
        if pbc[d]:
            if lengths[d] <= 0:
                raise InputError(f"periodic direction {'xyz'[d]} has no cell length")
            boundary.append("p")
        else:
            boundary.append("s")
            if lengths[d] <= 0:
                lo[d] = positions[:, d].min() - 1.0
                lengths[d] = positions[:, d].max() + 1.0 - lo[d]
    return pbc, lengths, lo, boundary


def box_commands(potential: Potential, boundary: list[str], lo: np.ndarray, hi: np.ndarray) -> str:
    """LAMMPS input that creates the box ``lo..hi`` with one atom type per element."""
    p = potential
    masses = "\n".join(
        f"mass {i + 1} {atomic_masses[atomic_numbers[el]]:.6f}" for i, el in enumerate(p.elements)
    )
    return f"""
            units {p.units}
            atom_style {p.atom_style}
            atom_modify map array sort 0 0.0
            boundary {' '.join(boundary)}
            region mapcvd_box block {lo[0]} {hi[0]} {lo[1]} {hi[1]} {lo[2]} {hi[2]} units box
            create_box {len(p.elements)} mapcvd_box
            {masses}
            """


def setup_commands(skin: float) -> str:
    """LAMMPS input for the neighbour list and the computes the engine reads."""
    return f"""
            neighbor {skin} bin
            neigh_modify every 1 delay 0 check yes
            compute mapcvd_pe all pe pair bond angle dihedral improper kspace
            compute mapcvd_temp all temp
            variable mapcvd_pe equal c_mapcvd_pe
            variable mapcvd_temp equal c_mapcvd_temp
            thermo 0
            thermo_style custom step temp pe c_mapcvd_pe
            """


def decode_images(img: np.ndarray) -> np.ndarray:
    """Integer image flags, shape (N, 3), from LAMMPS's encoded ``image`` per atom."""
    img = img.astype(np.int64)
    return np.stack(
        [(img & _IMGMASK) - _IMGMAX, ((img >> _IMGBITS) & _IMGMASK) - _IMGMAX, (img >> (2 * _IMGBITS)) - _IMGMAX],
        axis=1,
    )


def encode_images(images: np.ndarray) -> np.ndarray:
    """LAMMPS's encoded ``image`` per atom from integer image flags, shape (N, 3)."""
    return (
        ((images[:, 2] + _IMGMAX) << (2 * _IMGBITS)) | ((images[:, 1] + _IMGMAX) << _IMGBITS) | (images[:, 0] + _IMGMAX)
    )


def tether_commands(indices: tuple[int, ...], center, k_native: float) -> str:
    """LAMMPS input of the harmonic tether on the centre of mass of ``indices`` (0-based).

    ``k_native`` is the spring constant in the potential's energy unit per A^2; the
    centre lives in the ``internal`` variables ``mapcvd_tx``, ``mapcvd_ty``,
    ``mapcvd_tz``, and the energy ``k/2 |r_com - center|^2`` is added to the total.
    """
    ids = " ".join(str(i + 1) for i in indices)
    axes = "xyz"
    lines = [f"group mapcvd_tether id {ids}"]
    lines += [f"variable mapcvd_t{a} internal {float(c)}" for a, c in zip(axes, center)]
    lines += [f"variable mapcvd_tk equal {k_native}", "variable mapcvd_tm equal mass(mapcvd_tether)"]
    lines += [
        f"variable mapcvd_f{a} atom -v_mapcvd_tk*(xcm(mapcvd_tether,{a})-v_mapcvd_t{a})*mass/v_mapcvd_tm"
        for a in axes
    ]
    sq = "+".join(f"(xcm(mapcvd_tether,{a})-v_mapcvd_t{a})^2" for a in axes)
    lines += [
        f"variable mapcvd_fe atom 0.5*v_mapcvd_tk*({sq})*mass/v_mapcvd_tm",
        "fix mapcvd_tether mapcvd_tether addforce v_mapcvd_fx v_mapcvd_fy v_mapcvd_fz energy v_mapcvd_fe",
        "fix_modify mapcvd_tether energy yes",
    ]
    return "\n".join(lines)
