"""The smoke campaign: every engine of mapcvd run briefly, as one Parsl graph.

Until the MAP and CVD campaigns land, ``mapcvd campaign run`` runs this graph on
the chosen site: it loads the starting structures and, in parallel Parsl apps,

* drags the water through the silica with MAP's harmonic tether (ReaxFF
  ``ffield.SiOH``, NVT 10 K, 0.5 fs: the agent of Chen et al.'s MAP, seed 000),
  recording the potential energy after each move;
* runs the MoO3 slab in S2/H2S/H2 gas at 1500 K with ReaxFF ``ffield.MoSOH``
  (Rajak et al., doi:10.1038/s41524-021-00535-3), recording energy and temperature.

Each app owns its own LAMMPS instance in its own worker process. Only this driver
writes the store (one writer per array).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from ase import Atoms


def drag_water(atoms: Atoms, params: dict) -> dict:
    """Move the tether on the water's O along +x, relaxing after each move.

    Parameters
    ----------
    atoms
        Silica with one water molecule.
    params
        The ``[smoke]`` configuration section.

    Returns
    -------
    dict
        ``energy_eV`` (per move, after relaxation), ``o_x_A`` (unwrapped x of the
        water O per move), ``md_seconds`` (time inside LAMMPS runs), ``natoms``.
    """
    from mapcvd.data import data_path  # noqa: PLC0415  (imports inside apps: workers import lazily)
    from mapcvd.md.engine import Engine  # noqa: PLC0415
    from mapcvd.md.potentials import reaxff  # noqa: PLC0415
    from mapcvd.md.water import find_water  # noqa: PLC0415

    o_index, _ = find_water(atoms)
    potential = reaxff(data_path("forcefields", "ffield.SiOH"), ["Si", "O", "H"])
    energies, o_x = [], []
    md_seconds = 0.0
    with Engine(atoms, potential) as engine:
        centre = engine.get_positions(unwrapped=True)[o_index].copy()
        engine.set_tether([o_index], centre, k=params["tether_k_eV_A2"])
        for _ in range(params["water_actions"]):
            centre[0] += params["tether_step_A"]
            engine.move_tether(centre)
            start = time.perf_counter()
            trace = engine.run_nvt(
                params["steps_per_action"],
                params["water_temperature_K"],
                timestep_fs=params["water_timestep_fs"],
            )
            md_seconds += time.perf_counter() - start
            energies.append(trace.potential_energy[-1])
            o_x.append(engine.get_positions(unwrapped=True)[o_index, 0])
    return {
        "energy_eV": np.asarray(energies),
        "o_x_A": np.asarray(o_x),
        "md_seconds": md_seconds,
        "natoms": len(atoms),
    }


def moo3_gas_md(atoms: Atoms, params: dict) -> dict:
    """NVT of the MoO3 slab in gas; returns the energy and temperature traces.

    Returns
    -------
    dict
        ``energy_eV`` and ``temperature_K`` per step, ``natoms_before`` and
        ``natoms_after`` (LAMMPS's atom count at the end), ``md_seconds``.
    """
    from mapcvd.data import data_path  # noqa: PLC0415
    from mapcvd.md.engine import Engine  # noqa: PLC0415
    from mapcvd.md.potentials import reaxff  # noqa: PLC0415

    potential = reaxff(data_path("forcefields", "ffield.MoSOH"), ["Mo", "O", "S", "H"])
    with Engine(atoms, potential) as engine:
        start = time.perf_counter()
        trace = engine.run_nvt(
            params["moo3_steps"],
            params["moo3_temperature_K"],
            timestep_fs=params["moo3_timestep_fs"],
            damping_fs=25.0,
        )
        md_seconds = time.perf_counter() - start
        natoms_after = int(engine.lammps.get_natoms())
    return {
        "energy_eV": trace.potential_energy,
        "temperature_K": trace.temperature,
        "natoms_before": len(atoms),
        "natoms_after": natoms_after,
        "md_seconds": md_seconds,
    }


def prepare_structures(config: dict) -> dict[str, Atoms]:
    """Load the silica+water structure and build the MoO3 slab with gas."""
    from mapcvd.md.moo3 import insert_gas, moo3_slab  # noqa: PLC0415
    from mapcvd.md.structures import read_structure  # noqa: PLC0415
    from mapcvd.md.water import find_water  # noqa: PLC0415

    s = config["structures"]
    silica_water = read_structure(s["silica_water"], require=("Si", "O", "H"))
    find_water(silica_water)
    slab = moo3_slab(s["moo3_mo"], vacuum=s["moo3_vacuum_A"])
    rng = np.random.default_rng(config["campaign"]["seed"])
    counts = {"S2": s["gas_S2"], "H2S": s["gas_H2S"], "H2": s["gas_H2"]}
    slab_gas = insert_gas(slab, counts, rng=rng)
    return {"silica_water": silica_water, "moo3_gas": slab_gas}


def run_smoke(config: dict, group, parsl_config, log: Callable[[str], None] = print) -> dict:
    """Run the smoke graph on ``parsl_config`` and record results in the store ``group``.

    Parameters
    ----------
    config
        Validated campaign configuration.
    group
        Open campaign store (this process is its only writer).
    parsl_config
        A fresh Parsl ``Config`` for the site.
    log
        Called with one line of text per event.

    Returns
    -------
    dict
        Summary of what ran (energies, timings, atom counts).
    """
    import parsl  # noqa: PLC0415

    from mapcvd.store import set_stage_status  # noqa: PLC0415
    from mapcvd.store.atoms import write_atoms  # noqa: PLC0415
    from mapcvd.workflows.sites import run_parsl  # noqa: PLC0415

    set_stage_status(group, "structures", "running")
    structures = prepare_structures(config)
    smoke = group.require_group("smoke")
    for name, atoms in structures.items():
        write_atoms(smoke, f"structures/{name}", atoms)
        log(f"structure {name}: {len(atoms)} atoms ({atoms.get_chemical_formula()})")
    set_stage_status(group, "structures", "done")

    set_stage_status(group, "smoke_md", "running")
    params = config["smoke"]
    start = time.perf_counter()
    try:
        with run_parsl(parsl_config):
            water_app = parsl.python_app(drag_water, executors=["cpu"])
            moo3_app = parsl.python_app(moo3_gas_md, executors=["cpu"])
            futures = {
                "water": water_app(structures["silica_water"], params),
                "moo3": moo3_app(structures["moo3_gas"], params),
            }
            log(f"submitted {len(futures)} ReaxFF apps to site '{config['campaign']['site']}'")
            results = {name: fut.result() for name, fut in futures.items()}
    except BaseException:
        set_stage_status(group, "smoke_md", "failed")
        raise
    wall = time.perf_counter() - start
    for name, result in results.items():
        g = smoke.require_group(f"results/{name}")
        for key, value in result.items():
            if isinstance(value, np.ndarray):
                g.create_array(key, data=value, overwrite=True)
            else:
                g.attrs[key] = value
    set_stage_status(group, "smoke_md", "done")
    water, moo3 = results["water"], results["moo3"]
    summary = {
        "water_moves": len(water["energy_eV"]),
        "water_o_dx_A": float(water["o_x_A"][-1] - water["o_x_A"][0]),
        "water_energy_range_eV": float(np.ptp(water["energy_eV"])),
        "moo3_steps": len(moo3["energy_eV"]),
        "moo3_mean_T_K": float(np.mean(moo3["temperature_K"][len(moo3["temperature_K"]) // 2 :])),
        "moo3_atoms_kept": moo3["natoms_after"] == moo3["natoms_before"],
        "md_seconds": water["md_seconds"] + moo3["md_seconds"],
        "wall_seconds": wall,
    }
    log(
        f"water: {summary['water_moves']} tether moves, O moved {summary['water_o_dx_A']:+.2f} A in x; "
        f"MoO3+gas: {summary['moo3_steps']} steps, mean T (2nd half) {summary['moo3_mean_T_K']:.0f} K, "
        f"atoms kept: {summary['moo3_atoms_kept']}"
    )
    return summary
