"""``mapcvd neb``, ``mapcvd tst`` and ``mapcvd map paths``: from pathways to diffusion times."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapcvd.commands.common import log, open_for_run
from mapcvd.errors import InputError


def _elements(values: tuple[str, ...]) -> list[str]:
    """``--elements`` given as ``Si O H``, ``Si,O,H`` or repeated."""
    return [e for v in values for e in v.replace(",", " ").split()]


def _check_files(commands: tuple[str, ...]) -> None:
    """Refuse a ``pair_coeff`` that names a file that does not exist (LAMMPS may crash instead of failing)."""
    from mapcvd.errors import ForceFieldError  # noqa: PLC0415

    for command in commands:
        tokens = command.split()
        if not tokens or tokens[0] != "pair_coeff":
            continue
        for token in tokens[3:]:
            try:
                float(token)
                continue
            except ValueError:
                pass
            looks_like_file = "/" in token or ("." in token and token.rsplit(".", 1)[1].isalnum())
            if looks_like_file and not Path(token).expanduser().is_file():
                raise ForceFieldError(f"potential file not found: {token} (in '{command}')")


def _potential(forcefield: str | None, elements: tuple[str, ...], lammps: tuple[str, ...], units: str):
    """The potential of ``mapcvd neb``: a ReaxFF file (packaged name or path) or LAMMPS commands."""
    from mapcvd.md.potentials import lammps_commands, reaxff  # noqa: PLC0415

    types = _elements(elements)
    if bool(forcefield) == bool(lammps):
        raise InputError("give the potential as --forcefield FILE or as --lammps 'COMMAND' (repeated), not both"
                         if forcefield else "no potential: give --forcefield FILE (with --elements) or --lammps "
                         "'COMMAND' (repeated, with --elements)")
    if not types:
        raise InputError("--elements is needed: the element of each LAMMPS type, in order, e.g. --elements 'Si O H'")
    if lammps:
        _check_files(lammps)
        return lammps_commands(list(lammps), types, units=units, name="neb:custom")
    from mapcvd.data import data_path  # noqa: PLC0415

    packaged = data_path("forcefields", forcefield)
    path = packaged if ("/" not in forcefield and packaged.is_file()) else Path(forcefield)
    return reaxff(path, types)


# --------------------------------------------------------------------- neb
@click.command("neb")
@click.argument("initial")
@click.argument("final")
@click.option("--forcefield", default=None, help="ReaxFF file: a packaged name (ffield.SiOH) or a path.")
@click.option("--elements", multiple=True, help="Element of each LAMMPS type in order, e.g. 'Si O H'.")
@click.option("--lammps", "lammps_cmds", multiple=True, help="A LAMMPS potential command (repeat for several).")
@click.option("--units", type=click.Choice(["metal", "real"]), default="metal", show_default=True,
              help="LAMMPS units of the --lammps potential.")
@click.option("--images", type=int, default=None, help="Intermediate images (default: map.neb_images).")
@click.option("--climb/--no-climb", default=True, show_default=True, help="Climbing image (Henkelman et al. 2000).")
@click.option("--fmax", type=float, default=None, help="Force convergence, eV/A (default: map.neb_fmax_eV_A).")
@click.option("--max-steps", type=int, default=None, help="Optimiser steps (default: map.neb_max_steps).")
@click.option("--spring", type=float, default=None, help="Spring constant, eV/A^2 (default: map.neb_spring_eV_A2).")
@click.option("--driver", type=click.Choice(["ase", "lammps"]), default=None,
              help="ASE's NEB on LAMMPS in this process, or LAMMPS's neb on one process per image (default: map.neb_driver).")
@click.option("--no-minimize", is_flag=True, help="Use the endpoints as given (no minimisation first).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("neb"),
              show_default=True, help="Folder of band.extxyz, transition_state.extxyz and energy.png.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the barriers, energies and convergence to this JSON file ('-' for stdout).")
def neb(initial, final, forcefield, elements, lammps_cmds, units, images, climb, fmax, max_steps, spring, driver,
        no_minimize, out_dir, json_file):
    """Climbing-image NEB between the structures INITIAL and FINAL (same atoms, same order)."""
    from mapcvd.pathways.neb import band_state, check_endpoints, neb_from_map, run_neb  # noqa: PLC0415
    from mapcvd.pathways.neb_output import write_neb_files  # noqa: PLC0415
    from mapcvd.md.structures import read_structure  # noqa: PLC0415

    first, last = read_structure(initial), read_structure(final)
    check_endpoints(first, last)
    potential = _potential(forcefield, elements, lammps_cmds, units)
    potential.type_of(first.get_chemical_symbols())
    settings = neb_from_map(images=images, climb=climb, fmax=fmax, max_steps=max_steps, spring=spring,
                            minimize=not no_minimize, driver=driver)
    quiet = json_file is not None and str(json_file) == "-"
    if not quiet:
        log(f"NEB ({settings.driver}): {len(first)} atoms, {settings.images} images, fmax {settings.fmax} eV/A, "
            f"{potential.name}")
    result = run_neb(first, last, potential=potential, settings=settings)
    files = write_neb_files(result, first, out_dir, title=f"{Path(initial).stem} -> {Path(final).stem}",
                            climb=settings.climb)
    payload = {**result.summary(), "files": files, "settings": settings.__dict__, "potential": potential.name}
    if json_file is not None:
        text = json.dumps(payload, indent=2)
        if quiet:
            click.echo(text)
        else:
            json_file.parent.mkdir(parents=True, exist_ok=True)
            json_file.write_text(text + "\n")
    if not quiet:
        state = band_state(result.converged, result.climbed, settings.climb)
        if not result.converged:
            state += f" (best estimate after {result.steps} steps)"
        log(f"barrier {result.barrier_forward:.4f} eV forward, {result.barrier_backward:.4f} eV backward; "
            f"{state}; max force {result.fmax:.3g} eV/A; {result.seconds:.1f} s")
        log(f"wrote {files['band']}, {files['transition_state']}, {files['plot']}")


# --------------------------------------------------------------------- tst
@click.command("tst")
@click.option("--barrier", "barriers", type=float, multiple=True, required=True,
              help="A forward barrier in eV (repeat for consecutive hops).")
@click.option("--temperature", default="350C", show_default=True, help="Temperature with its unit: 623.15K or 350C.")
@click.option("--json", "as_json", is_flag=True, help='Print {"time_s": ..., "time_days": ...}.')
def tst(barriers, temperature, as_json):
    """Transition-state theory: time to cross consecutive barriers, sum_i h/(kT) exp(E_i/kT)."""
    from mapcvd.pathways.tst import describe_time, parse_temperature, tst_time  # noqa: PLC0415

    kelvin = parse_temperature(temperature)
    times = describe_time(tst_time(list(barriers), kelvin))
    if as_json:
        click.echo(json.dumps(times))
        return
    click.echo(f"{times['time_s']:.6g} s = {times['time_days']:.6g} days at {kelvin:.2f} K "
               f"(barriers {', '.join(f'{b:g}' for b in barriers)} eV)")




# --------------------------------------------------------------- map paths
@click.command("paths")
@click.argument("store_path", type=click.Path(path_type=Path))
@click.option("--top", type=int, default=None, help="Episodes refined and ranked (default: map.paths_top).")
@click.option("--temperature", default=None, help="TST temperature with its unit, e.g. 350C (default: config).")
@click.option("--distance", type=float, default=None, help="Distance the times are scaled to, nm (default: config).")
@click.option("--prominence", type=float, default=None, help="Smallest peak prominence of a segment, eV.")
@click.option("--min-length", type=float, default=1.0, show_default=True,
              help="Episodes whose guided atom advances less along the goal axis (A) are not ranked.")
@click.option("--site", default=None, help="Parsl site (default: the store's config).")
@click.option("--workers", type=int, default=None, help="NEB apps at once on the local site (default: one per core).")
@click.option("--baseline/--no-baseline", default=True, show_default=True,
              help="Also refine the straight drag along +goal axis.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the table, plots and transition states (default: STORE.paths).")
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as one JSON object.")
def map_paths(store_path, top, temperature, distance, prominence, min_length, site, workers, baseline, out_dir,
              as_json):
    """Rank a store's pathways by TST time after piecewise NEB; write a table, plots and transition states."""
    from mapcvd.commands.map_commands import _map_config  # noqa: PLC0415
    from mapcvd.pathways.neb import NebSettings  # noqa: PLC0415
    from mapcvd.pathways.report import write_report  # noqa: PLC0415
    from mapcvd.pathways.tst import parse_temperature  # noqa: PLC0415
    from mapcvd.store import open_campaign, run_stage  # noqa: PLC0415
    from mapcvd.workflows.map_training import map_site  # noqa: PLC0415
    from mapcvd.workflows.pathways import pathway_settings, run_pathways  # noqa: PLC0415

    group, _ = open_for_run(store_path)
    config = _map_config(None, store_path, {"campaign": {"site": site}})
    table = config["map"]
    top = table["paths_top"] if top is None else top
    kelvin = parse_temperature(temperature) if temperature is not None else table["tst_temperature_K"]
    distance_nm = table["tst_distance_nm"] if distance is None else distance
    prominence = table["segment_prominence_eV"] if prominence is None else prominence
    if top < 1 or not distance_nm > 0 or not prominence > 0:
        raise InputError("--top, --distance and --prominence must be positive")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    neb_settings = pathway_settings(table)["neb_settings"]
    quiet = (lambda _line: None) if as_json else log
    run_dir = store_path.parent / (store_path.name + ".runinfo")
    site_name = config["campaign"]["site"]
    parsl_config = map_site(site_name, str(run_dir), actors=1, gpu=False, workers=workers,
                            band_ranks=NebSettings(**neb_settings).ranks)
    result = run_stage(group, "map_paths", lambda: run_pathways(
        config, group, str(store_path), parsl_config, top=top, temperature_K=kelvin, distance_A=10.0 * distance_nm,
        prominence=prominence, neb_settings=neb_settings, baseline=baseline, min_length_A=min_length, log=quiet))
    out = out_dir or store_path.parent / (store_path.name.removesuffix(".zarr") + ".paths")
    files = write_report(open_campaign(store_path, "r"), out)
    if as_json:
        click.echo(json.dumps({"ranking": result["ranking"], "baseline": result["baseline"], "files": files}))
        return
    _print_table(result["ranking"], result["baseline"], kelvin, distance_nm)
    log(f"wrote {files['table']}, {len(files['plots'])} plot(s), {len(files['transition_states'])} "
        f"transition state(s) in {out}")


def _print_table(ranking: list[dict], baseline: dict | None, kelvin: float, distance_nm: float) -> None:
    from rich.table import Table  # noqa: PLC0415

    from mapcvd.commands.common import console  # noqa: PLC0415
    from mapcvd.pathways.store import converged_share, row_status  # noqa: PLC0415

    table = Table(title=f"MAP pathways by TST time over {distance_nm:g} nm at {kelvin:.2f} K (after piecewise NEB)")
    for name in ("rank", "episode", "length A", "barriers eV (raw -> NEB)", "bands", "time s", "time days"):
        table.add_column(name)
    rows = [(str(k + 1), r) for k, r in enumerate(ranking)] + ([("straight", baseline)] if baseline else [])
    for rank, r in rows:
        barriers = ", ".join(f"{a:.2f}->{b:.2f}" for a, b in zip(r["raw_barriers_eV"], r["barriers_eV"])) or "none"
        seconds = r["time_scaled_s"]
        status = row_status(r)
        bands = {"no barrier": "no barrier", "converged": "converged",
                 "unconverged": f"NOT converged ({r.get('converged_segments', 0)}/{r['n_segments']})"}[status]
        table.add_row(rank, r["label"], f"{r['length_A']:.1f}", barriers, bands,
                      "fastest" if status == "no barrier" else "n/a" if seconds is None else f"{seconds:.3g}",
                      "" if seconds is None else f"{r['time_scaled_days']:.3g}"
                      + (" (unconverged)" if status == "unconverged" else ""))
    console().print(table)
    done, total = converged_share([r for _, r in rows])
    share = f"{done / total:.0%}" if total else "n/a"
    console().print(f"NEB bands converged: {done} of {total} segments ({share}); a pathway without a barrier above "
                    "the prominence ranks first, unconverged ones after every converged one")
