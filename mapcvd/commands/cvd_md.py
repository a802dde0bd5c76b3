"""``mapcvd cvd phases`` and ``mapcvd cvd rmd``: phase analysis and staged reactive MD.

Both follow Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3: the per-Mo 2H/1T/defect criterion
(:func:`mapcvd.cvd.phases.classify_mo`) and the staged reactive-MD run of a MoO3 slab
in S2/H2S/H2 gas (:func:`mapcvd.cvd.rmd.run_schedule`).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from mapcvd.commands.common import console as _console


# ------------------------------------------------------------------- phases
@click.command("phases")
@click.argument("structure", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help='Print {"n_mo", "counts", "fractions"} as JSON.')
@click.option("--cutoff", type=float, default=None, help="Mo-S/O neighbour cut-off in A (default 2.9).")
@click.option("--normal", default="z", show_default=True, help="Layer normal: x, y or z.")
def phases(structure, as_json, cutoff, normal):
    """Count the 2H, 1T and defect Mo of STRUCTURE (any file ASE reads; last frame)."""
    from mapcvd.cvd.phases import MO_S_CUTOFF, PHASES, classify_mo

    result = classify_mo(structure, cutoff=MO_S_CUTOFF if cutoff is None else cutoff, normal=normal)
    if as_json:
        click.echo(json.dumps(result.to_json()))
        return
    click.echo(f"{structure}: {result.n_mo} Mo")
    for phase in PHASES:
        click.echo(f"  {phase:7s}{result.counts[phase]:6d}  {result.fractions[phase]:.3f}")


# ---------------------------------------------------------------------- rmd
STAGE_COLUMNS = (
    "stage", "T_target_K", "n_S2", "n_H2", "n_H2S", "T_mean_K", "energy_eV", "n_atoms",
    "f_2H", "f_1T", "f_defect", "gas_S2", "gas_H2", "gas_H2S",
    "inserted_S2", "inserted_H2", "inserted_H2S", "removed_S2", "removed_H2", "removed_H2S",
    "exhausted_H2O", "exhausted_SO", "exhausted_SO2", "exhausted_other",
)


def _stage_rows(result) -> tuple[list[list], list[str]]:
    """Rows (one per stage, plain Python numbers) and header: :data:`STAGE_COLUMNS`, then species."""
    from mapcvd.cvd.rmd import SPECIES

    rows = []
    for k in range(len(result.schedule)):
        T, s2, h2, h2s = result.schedule[k].tolist()
        rows.append([
            k + 1, T, round(s2), round(h2), round(h2s),
            round(float(result.temperature_K[k]), 3), round(float(result.energy_eV[k]), 6), int(result.n_atoms[k]),
            *[round(float(f), 6) for f in result.fractions[k]],
            *[int(v) for v in result.gas_counts[k]], *[int(v) for v in result.inserted[k]],
            *[int(v) for v in result.removed[k]], *[int(v) for v in result.exhausted[k]],
            *[int(v) for v in result.species[k]],
        ])
    return rows, [*STAGE_COLUMNS, *(f"species_{s}" for s in SPECIES)]


def _write_outputs(out: Path, result, settings, seed: int, schedule_file: Path) -> None:
    """stages.csv, rmd.json, frames.extxyz and the schedule used, in ``out``."""
    import dataclasses

    import ase.io

    from mapcvd.cvd.rmd import GAS_ORDER, SPECIES, frame_atoms
    from mapcvd.cvd.schedule import write_schedule

    out.mkdir(parents=True, exist_ok=True)
    rows, header = _stage_rows(result)
    with open(out / "stages.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    write_schedule(out / "schedule.csv", result.schedule)
    summary = {
        "schedule_file": str(schedule_file),
        "seed": seed,
        "settings": dataclasses.asdict(settings),
        "steps_per_stage": result.steps_per_stage,
        "simulated_ps": result.simulated_ps,
        "md_seconds": result.md_seconds,
        "build_seconds": result.build_seconds,
        "wall_seconds": result.wall_seconds,
        "gas_order": list(GAS_ORDER),
        "species_order": list(SPECIES),
        "schedule": result.schedule.tolist(),
        "fractions": result.fractions.tolist(),
        "gas_counts": result.gas_counts.tolist(),
        "temperature_K": result.temperature_K.tolist(),
        "energy_eV": result.energy_eV.tolist(),
        "species": result.species.tolist(),
        "n_atoms": result.n_atoms.tolist(),
    }
    (out / "rmd.json").write_text(json.dumps(summary, indent=1) + "\n")
    frames = []
    for k, frame in enumerate(result.frames):
        atoms = frame_atoms(frame)
        atoms.info.update(stage=k + 1, T_target_K=float(result.schedule[k, 0]), energy_eV=float(result.energy_eV[k]))
        frames.append(atoms)
    ase.io.write(out / "frames.extxyz", frames, format="extxyz")


@click.command("rmd")
@click.option("--schedule", "schedule_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV with header T,n_S2,n_H2,n_H2S and one row per stage (molecules for this slab).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for stages.csv, rmd.json, frames.extxyz.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Campaign config (TOML); its [cvd] table sets the slab and stages (default: demo).")
@click.option("--seed", type=int, default=None, help="Random seed (default: cvd.seed of the config).")
def rmd(schedule_file, out_dir, config_file, seed):
    """Staged reactive MD (ReaxFF) of the MoO3 slab in S2/H2/H2S gas along a schedule."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from mapcvd.config import load_config
    from mapcvd.cvd.rmd import RmdSettings, run_schedule
    from mapcvd.cvd.schedule import read_schedule
    from mapcvd.errors import InputError

    config = load_config(config_file)
    settings = RmdSettings.from_config(config["cvd"])
    seed = config["cvd"]["seed"] if seed is None else seed
    if seed < 0:
        raise InputError(f"--seed must be non-negative, got {seed}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a directory")
    schedule = read_schedule(schedule_file, settings.ranges)
    n = len(schedule)
    click.echo(
        f"staged reactive MD: {settings.n_mo}-Mo slab, {n} stages of {settings.stage_ps:g} ps "
        f"({settings.stage_steps} steps of {settings.timestep_fs:g} fs), seed {seed}"
    )

    def line(info: dict) -> str:
        f, g = info["fractions"], info["gas"]
        return (f"stage {info['stage']}/{info['n_stages']}: T {info['T_target']:.0f} K (mean {info['T_mean']:.0f}), "
                f"gas S2 {g['S2']} H2 {g['H2']} H2S {g['H2S']}, 2H {f['2H']:.3f} 1T {f['1T']:.3f} "
                f"defect {f['defect']:.3f}, {info['n_atoms']} atoms, {info['seconds']:.1f} s")

    if sys.stdout.isatty():
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=_console(), transient=True) as bar:
            task = bar.add_task("stage 1", total=n)

            def progress(k: int, info: dict) -> None:
                bar.console.print(line(info))
                bar.update(task, completed=k + 1, description=f"stage {min(k + 2, n)}")

            result = run_schedule(schedule, settings, seed=seed, progress=progress)
    else:
        result = run_schedule(schedule, settings, seed=seed, progress=lambda k, info: click.echo(line(info)))
    _write_outputs(out_dir, result, settings, seed, schedule_file)
    final = dict(zip(("2H", "1T", "defect"), result.fractions[-1].tolist()))
    outside = 1.0 - result.md_seconds / result.wall_seconds if result.wall_seconds > 0 else 0.0
    click.echo(
        f"done: {result.simulated_ps:.3g} ps in {result.wall_seconds:.1f} s "
        f"({outside:.1%} outside LAMMPS); final 2H {final['2H']:.3f} 1T {final['1T']:.3f} "
        f"defect {final['defect']:.3f}; wrote {out_dir}/stages.csv, rmd.json, frames.extxyz"
    )
