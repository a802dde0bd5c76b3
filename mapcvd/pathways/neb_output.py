"""Files of a nudged elastic band: the band, its transition state, its energy curve.

The transition-state structure carries, for OVITO or the ASE GUI, each atom's
displacement from the start of its segment (``displacement``, ``displacement_A``), a
mask of the guided atom and of its nearest Si (``guided``, ``nearest_si``), and the
index and distance of that Si in its info (MAP, Chen et al., seed 000: the water's
O hops between Si sites). Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mapcvd.pathways.band import nearest_atom
from mapcvd.pathways.neb import NebResult, band_state


def _agg():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def band_atoms(template: Atoms, positions: np.ndarray, energies: np.ndarray) -> list[Atoms]:
    """One ``Atoms`` per image with its energy (extxyz writes it as ``energy=``)."""
    images = []
    for k, (pos, energy) in enumerate(zip(positions, energies)):
        atoms = Atoms(numbers=template.numbers, positions=pos, cell=template.cell, pbc=template.pbc)
        atoms.info["image"] = k
        atoms.calc = SinglePointCalculator(atoms, energy=float(energy))
        images.append(atoms)
    return images


def annotate_transition_state(template: Atoms, ts_positions: np.ndarray, start_positions: np.ndarray,
                              guided: int | None = None, energy: float | None = None) -> Atoms:
    """The transition state with per-atom displacements from ``start_positions`` and the guided atom's nearest Si.

    Parameters
    ----------
    template
        Elements, cell and boundaries.
    ts_positions, start_positions
        ``(n_atoms, 3)`` positions of the transition state and of the segment start (A,
        continuous: no wrapping between them).
    guided
        Index of the guided atom (the water O); without it no neighbour is marked.
    energy
        Energy of the transition state (eV), stored with it.
    """
    atoms = Atoms(numbers=template.numbers, positions=ts_positions, cell=template.cell, pbc=template.pbc)
    displacement = np.asarray(ts_positions, dtype=float) - np.asarray(start_positions, dtype=float)
    atoms.new_array("displacement", displacement)
    atoms.new_array("displacement_A", np.linalg.norm(displacement, axis=1))
    guided_mask = np.zeros(len(atoms), dtype=bool)
    nearest_mask = np.zeros(len(atoms), dtype=bool)
    if guided is not None:
        guided_mask[guided] = True
        symbols = np.array(atoms.get_chemical_symbols())
        silicon = np.flatnonzero(symbols == "Si")
        index, distance = nearest_atom(atoms.positions, guided, silicon, np.diag(template.cell[:]), template.pbc)
        atoms.info.update({"guided_index": int(guided), "nearest_si_index": index, "nearest_si_distance_A": distance})
        if index >= 0:
            nearest_mask[index] = True
    atoms.new_array("guided", guided_mask)
    atoms.new_array("nearest_si", nearest_mask)
    if energy is not None:
        atoms.calc = SinglePointCalculator(atoms, energy=float(energy))
    return atoms


def plot_energy_curve(result: NebResult, path: str | Path, title: str = "NEB", climb: bool = True) -> Path:
    """Energy of each image (relative to the initial one) along the reaction coordinate; TS marked;
    ``climb``: whether the band was asked for a climbing image (:func:`~mapcvd.pathways.neb.band_state`)."""
    plt = _agg()
    x = result.reaction_coordinate
    e = result.energies - result.energies[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, e, "o-", color="tab:blue", label="images")
    ts = result.ts_index
    ax.plot([x[ts]], [e[ts]], "*", color="tab:red", markersize=14, label="transition state")
    state = band_state(result.converged, result.climbed, climb)
    ax.set_title(f"{title}: {result.barrier_forward:.3f} eV forward, {result.barrier_backward:.3f} eV back ({state})")
    ax.set_xlabel("reaction coordinate (A)")
    ax.set_ylabel("energy - E(initial) (eV)")
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_neb_files(result: NebResult, template: Atoms, out_dir: str | Path, guided: int | None = None,
                    title: str = "NEB", climb: bool = True) -> dict[str, str]:
    """Write ``band.extxyz``, ``transition_state.extxyz`` and ``energy.png`` into ``out_dir``; return their paths."""
    import ase.io  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    band = out / "band.extxyz"
    ase.io.write(band, band_atoms(template, result.positions, result.energies), format="extxyz")
    ts = out / "transition_state.extxyz"
    ts_atoms = annotate_transition_state(template, result.positions[result.ts_index], result.positions[0], guided,
                                         energy=float(result.energies[result.ts_index]))
    ase.io.write(ts, ts_atoms, format="extxyz")
    png = plot_energy_curve(result, out / "energy.png", title, climb)
    return {"band": str(band), "transition_state": str(ts), "plot": str(png)}
