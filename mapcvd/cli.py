"""The ``mapcvd`` command line.

Every error a user can cause ends as one line on stderr and a non-zero exit code,
never a traceback (``MAPCVD_DEBUG=1`` shows tracebacks for developers).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from mapcvd import __version__
from mapcvd.commands import register
from mapcvd.commands.common import console as _console
from mapcvd.commands.common import log as _log
from mapcvd.errors import InputError, MapcvdError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="mapcvd")
def cli():
    """mapcvd: AI-guided long-time atomistic simulation on LAMMPS ReaxFF, PyTorch and Parsl.

    MAP (deep-RL diffusion pathways, piecewise NEB, transition-state theory) and
    RL-designed CVD synthesis of MoS2 (NADE-CVD surrogate, REINFORCE agent).
    """


# --------------------------------------------------------------------- info
@cli.command()
@click.option("--site", default=None, metavar="NAME|PATH.py",
              help="Also start this Parsl site and run a check task on each of its executors (host, cores, "
                   "LAMMPS and torch as the workers see them); exits non-zero if one fails.")
@click.option("--timeout", type=click.FloatRange(min=1.0), default=600.0, show_default=True,
              help="With --site: seconds to wait for each executor (batch jobs may queue first).")
def info(site, timeout):
    """Show versions, the LAMMPS build, Parsl sites and packaged data."""
    from mapcvd.data import data_path  # noqa: PLC0415
    from mapcvd.md.lammps_loader import new_lammps  # noqa: PLC0415
    from mapcvd.store import package_versions  # noqa: PLC0415
    from mapcvd.workflows.sites import site_names  # noqa: PLC0415

    for name, version in package_versions().items():
        click.echo(f"{name:8s} {version}")
    lmp = new_lammps()
    wanted = ("REAXFF", "QEQ", "MANYBODY", "REPLICA", "OPENMP")
    have = [p for p in wanted if p in lmp.installed_packages]
    click.echo(f"LAMMPS   {lmp.version()} with {' '.join(have)}")
    lmp.close()
    click.echo(f"sites    {', '.join(site_names())}")
    for kind in ("forcefields", "structures"):
        files = sorted(p.name for p in data_path(kind).iterdir() if not p.name.startswith("."))
        click.echo(f"{kind:12s} {', '.join(files)}")
    if site is not None:
        _check_site(site, timeout)


def _check_site(site: str, timeout: float) -> None:
    """Start ``site``, run :func:`~mapcvd.workflows.selftest.worker_report` on each executor, print them."""
    from mapcvd.workflows.parsl_runtime import run_parsl  # noqa: PLC0415
    from mapcvd.workflows.selftest import site_report  # noqa: PLC0415
    from mapcvd.workflows.sites import load_site  # noqa: PLC0415

    run_dir = Path("runs") / "site-check.runinfo"  # on the shared file system, where workers can log
    config = load_site(site, run_dir=str(run_dir))
    click.echo(f"site {site}: starting it and running one check task per executor (up to {timeout:g} s each)")
    with run_parsl(config) as dfk:
        reports = site_report(dfk, timeout)
    failed = []
    for label, r in reports.items():
        if "error" in r:
            failed.append(label)
            click.echo(f"  {label:5s} FAILED: {r['error']}")
            continue
        reaxff = "REAXFF" in r["lammps"]["packages"]
        if not reaxff:
            failed.append(label)
        job = f", {r['batch_job']}" if r.get("batch_job") else ""
        job += f", ranks start with '{r['mpi_prefix']}'" if r.get("mpi_prefix") else ""
        click.echo(f"  {label:5s} host {r['host']} (pid {r['pid']}, {r['cores']} cores{job}), Python {r['python']}, "
                   f"LAMMPS {r['lammps']['version']} {'with' if reaxff else 'WITHOUT'} REAXFF, "
                   f"torch {r['torch']} with {r['cuda_devices']} CUDA device(s)")
    if failed:
        raise MapcvdError(f"site {site}: executor(s) {', '.join(failed)} failed the check "
                          f"(see {run_dir} and the site's worker_init)")
    click.echo(f"site {site}: every executor ran its check")


# -------------------------------------------------------------------- build
@cli.group()
def build():
    """Build starting structures (amorphous silica, water, MoO3 slab)."""


@build.command("silica")
@click.option("--atoms", "n_atoms", type=int, required=True, help="Number of atoms, a multiple of 3 (SiO2 units).")
@click.option("--density", type=float, default=2.2, show_default=True, help="Target density in g/cm^3.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the start and velocities.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file (extxyz).")
def build_silica(n_atoms, density, seed, out):
    """Amorphous SiO2 by Vashishta melt-quench, then ReaxFF (ffield.SiOH) relaxation."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    from mapcvd.md.silica import build_amorphous_silica  # noqa: PLC0415
    from mapcvd.md.structures import write_structure  # noqa: PLC0415

    start = time.perf_counter()
    columns = (TextColumn("{task.description:28s}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_console(), transient=True, disable=not sys.stdout.isatty()) as bar:
        task = bar.add_task("melt-quench", total=1.0)

        def progress(stage: str, fraction: float) -> None:
            bar.update(task, description=stage, completed=fraction)

        atoms, stats = build_amorphous_silica(n_atoms, density=density, seed=seed, progress=progress)
    write_structure(atoms, out, comment=f"mapcvd build silica --atoms {n_atoms} --density {density} --seed {seed}")
    click.echo(f"wrote {out}: {len(atoms)} atoms, {time.perf_counter() - start:.1f} s")
    _print_stats(stats)


def _print_stats(stats: dict) -> None:
    for key, value in stats.items():
        if isinstance(value, float):
            click.echo(f"  {key}: {value:.4g}")
        else:
            click.echo(f"  {key}: {value}")


@build.command("water")
@click.option("--silica", "silica_file", required=True, help="Silica structure file (any format ASE reads).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file (extxyz).")
@click.option("--x", "x_plane", type=float, default=None, help="Place the water near the plane x = X (A).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the orientation search.")
def build_water(silica_file, out, x_plane, seed):
    """Place one H2O in the most open site near a plane x = X and relax it with ReaxFF."""
    from mapcvd.md.structures import read_structure, write_structure  # noqa: PLC0415
    from mapcvd.md.water import insert_water  # noqa: PLC0415

    silica = read_structure(silica_file, require=("Si", "O"))
    atoms, info = insert_water(silica, x=x_plane, seed=seed)
    x_text = "" if x_plane is None else f" --x {x_plane}"
    write_structure(atoms, out, comment=f"mapcvd build water --silica {silica_file}{x_text} --seed {seed}")
    click.echo(f"wrote {out}: {len(atoms)} atoms")
    _print_stats(info)
    if not info.get("intact", True):
        click.echo("warning: the relaxed water is not intact (it reacted with the silica); try another --seed or --x", err=True)


@build.command("moo3")
@click.option("--mo", "n_mo", type=int, required=True, help="Number of Mo atoms (the paper's slab: 288).")
@click.option("--vacuum", type=float, default=15.0, show_default=True, help="Vacuum along z (A).")
@click.option("--s2", type=int, default=0, show_default=True, help="S2 molecules to insert into the vacuum.")
@click.option("--h2s", type=int, default=0, show_default=True, help="H2S molecules to insert.")
@click.option("--h2", type=int, default=0, show_default=True, help="H2 molecules to insert.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the gas placement.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output file (extxyz).")
def build_moo3(n_mo, vacuum, s2, h2s, h2, seed, out):
    """An alpha-MoO3 slab (one double layer) with vacuum, optionally with S2/H2S/H2 gas."""
    import numpy as np  # noqa: PLC0415

    from mapcvd.md.gas import insert_gas  # noqa: PLC0415
    from mapcvd.md.moo3 import moo3_slab  # noqa: PLC0415
    from mapcvd.md.structures import write_structure  # noqa: PLC0415

    atoms = moo3_slab(n_mo, vacuum=vacuum)
    counts = {"S2": s2, "H2S": h2s, "H2": h2}
    if any(counts.values()):
        atoms = insert_gas(atoms, counts, rng=np.random.default_rng(seed))
    write_structure(atoms, out)
    gas = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no gas"
    click.echo(f"wrote {out}: {len(atoms)} atoms ({n_mo} Mo slab, {gas}), cell {np.diag(atoms.cell[:]).round(2)} A")


# ----------------------------------------------------------------- campaign
@cli.group()
def campaign():
    """Run a whole campaign, watch it, resume it."""


@campaign.command("run")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--site", default=None, help="Parsl site: threads, local, slurm, pbs or PATH.py (default: config).")
@click.option("--store", "store_path", default=None, help="Campaign store path (default: from the config).")
@click.option("--resume", is_flag=True, help="Continue an existing store (re-running on one does the same).")
@click.option("--no-dashboard", is_flag=True, help="Print plain log lines instead of the live display.")
def campaign_run(config_file, site, store_path, resume, no_dashboard):
    """Run the whole campaign of CONFIG_FILE (default: the packaged demo) on a Parsl site.

    MAP (training, greedy and random evaluation, piecewise NEB and TST times of the best
    pathways) and, alongside it, CVD (reactive-MD dataset, NADE-CVD, agent, validation),
    in one Parsl run. On an existing store (or with --resume) done stages are skipped and
    the others continue; without CONFIG_FILE an existing store keeps its stored settings.
    Ctrl-C stops cleanly and leaves unfinished stages pending.
    """
    from mapcvd.commands.common import open_for_run, refuse_changed_map_config  # noqa: PLC0415
    from mapcvd.config import config_from_stored, load_config  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415
    from mapcvd.workflows.campaign import campaign_site, check_campaign, run_campaign  # noqa: PLC0415

    overrides = {"campaign": {"site": site, "store": store_path}}
    config = load_config(config_file, overrides=overrides)
    path = Path(config["campaign"]["store"])
    exists = path.is_dir() and any(path.iterdir())
    if resume and not exists:
        raise InputError(f"--resume given but no store exists at {path}")
    if exists and config_file is None:  # continue with the store's own settings
        config = config_from_stored(open_campaign(path, "r").attrs.get("config") or {}, overrides, where=str(path))
    elif exists:  # a config file on an existing store: only keys that are safe to change may differ
        refuse_changed_map_config(path, config)
    check_campaign(config)
    site_name = config["campaign"]["site"]
    run_dir = path.parent / (path.name + ".runinfo")
    parsl_config = campaign_site(site_name, str(run_dir), config)  # a bad site fails before any work
    group, created = open_for_run(path, config)
    _log(f"{'created' if created else 'continuing'} campaign store {path}; site '{site_name}', "
         f"{config['map']['actors']} MAP actor(s) for {config['map']['minutes']:g} min alongside "
         f"{config['cvd_learning']['runs']} CVD runs")

    def work(log):
        return run_campaign(config, group, str(path), parsl_config, log=log)

    start = time.perf_counter()
    if sys.stdout.isatty() and not no_dashboard:
        summary = _with_dashboard(path, work)
    else:
        summary = work(_log)
    _log(f"stages: {json.dumps(summary['stages'])}")
    for line in _campaign_summary(summary["results"]):
        _log(line)
    _log(f"done: campaign '{config['campaign']['name']}' on site '{site_name}' in "
         f"{time.perf_counter() - start:.0f} s; results in {path} (mapcvd campaign report {path})")


def _with_dashboard(path: Path, work):
    """Run ``work(log)`` under the live dashboard, redrawn from the store every 2 s by a thread."""
    import threading  # noqa: PLC0415

    from rich.live import Live  # noqa: PLC0415

    from mapcvd.dashboard import collect, render  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    history: dict = {}

    def view():
        return render(collect(open_campaign(path, "r"), path=path, history=history))

    stop = threading.Event()
    with Live(view(), console=_console(), auto_refresh=False, transient=False) as live:
        def refresh() -> None:
            while not stop.wait(2.0):
                try:
                    live.update(view(), refresh=True)
                except Exception:  # noqa: BLE001 - a store caught mid-write: try again next time
                    pass

        def log(message: str) -> None:
            live.console.print(f"[{time.strftime('%H:%M:%S')}] {message}", markup=False, highlight=False)

        thread = threading.Thread(target=refresh, name="dashboard", daemon=True)
        thread.start()
        try:
            return work(log)
        finally:
            stop.set()
            thread.join(10.0)
            try:
                live.update(view(), refresh=True)
            except Exception:  # noqa: BLE001 - the final redraw is a nicety
                pass


def _campaign_summary(results: dict) -> list[str]:
    """One line per headline result of the stages run now."""
    lines = []
    for policy in ("greedy", "random"):
        r = results.get(f"map_evaluate_{policy}")
        if r:
            lines.append(f"MAP {policy}: {r['episodes']} episode(s), mean progress {r['mean_progress_A']:+.2f} A, "
                         f"mean return {r['mean_return']:+.2f}")
    paths = results.get("map_paths")
    if paths:
        for row in paths["ranking"][:3] + ([paths["baseline"]] if paths["baseline"] else []):
            t = row["time_scaled_s"]
            barriers = ", ".join(f"{b:.2f}" for b in row["barriers_eV"]) or "none above the prominence"
            lines.append(f"pathway {row['label']}: barriers (eV) {barriers}, "
                         + ("no TST time" if t is None else f"{t:.3g} s ({row['time_scaled_days']:.3g} days)"))
    nade = results.get("cvd_nade")
    if nade:
        lines.append("NADE-CVD held-out MAE (free-running): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in nade["mae_free_run"].items()))
    lines += _agent_lines(results)
    return lines


def _agent_lines(results: dict) -> list[str]:
    """The CVD agents' returns against random schedules and the paper's strategy (undiscounted)."""
    from mapcvd.cvd.learning import no_2h  # noqa: PLC0415
    from mapcvd.cvd.validation import SUM_TOLERANCE  # noqa: PLC0415

    lines = []
    for stage, what in (("cvd_agent", "this campaign's NADE-CVD"), ("cvd_agent_paper", None)):
        agent = results.get(stage)
        if not agent:
            continue
        c = agent["comparison"]
        what = what or f"the {agent['surrogate']} surrogate"
        line = (f"CVD agent on {what}: return {c['agent']:.4f}, random schedules {c['random']:.4f}, "
                f"paper's strategy {c['strategy']:.4f}")
        if no_2h(agent.get("max_2h")):
            line += (f"; no reactive-MD run of the dataset formed 2H (largest fraction {agent['max_2h']:.3g}), "
                     "so these returns are noise around 0, not a result")
        else:
            line += f"; agent/random x{c['ratio']:.2f}, agent/strategy x{c['ratio_strategy']:.2f}"
        lines.append(line)
        if agent.get("optimum"):
            o = agent["optimum"]
            lines.append(f"  schedules optimised through the surrogate from the same kind of start: mean return "
                         f"{o['mean_return']:.4f} (best {o['best_return']:.4f}); the agent reaches "
                         f"{c['agent'] / o['mean_return']:.0%} of it")
        if "best_schedule" in agent:
            t = [row[0] for row in agent["best_schedule"]]
            lines.append(f"  best schedule (return {agent['best_return']:.3f}): T (K) per stage "
                         + " ".join(f"{v:.0f}" for v in t))
            if agent["best_sum_error"] > SUM_TOLERANCE:
                lines.append(f"  its predicted fractions stray {agent['best_sum_error']:.2f} from summing to 1 "
                             "(the surrogate extrapolates there): its return is partly an artefact of the model")
    return lines


@campaign.command("status")
@click.argument("store_path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print {\"stages\": {...}, \"name\": ...} plus the dashboard's figures as JSON (one line).")
@click.option("--watch", is_flag=True, help="Refresh until every stage is done or failed (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@click.option("--keep-watching", is_flag=True, help="With --watch: go on after every stage has finished.")
def campaign_status(store_path, as_json, watch, interval, keep_watching):
    """Show a campaign store: stages, MAP training, NEB, CVD runs, warnings (read-only; safe while it runs).

    On a terminal the dashboard is drawn with colours (redrawn in place with --watch);
    otherwise, e.g. in a batch job's log, it is printed as plain lines.
    """
    from mapcvd.dashboard import collect, plain_lines, render, snapshot_json  # noqa: PLC0415
    from mapcvd.dashboard import watch as watch_store  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    if watch:
        return watch_store(store_path, interval, _console(), keep_watching=keep_watching, as_json=as_json)
    snapshot = collect(open_campaign(store_path, mode="r"), path=store_path)
    if as_json:
        click.echo(snapshot_json(snapshot))
    elif sys.stdout.isatty():
        _console().print(render(snapshot))
    else:
        for line in plain_lines(snapshot):
            click.echo(line)


@campaign.command("report")
@click.argument("store_path", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of index.html and its PNG figures (default: STORE.report next to the store).")
def campaign_report(store_path, out_dir):
    """One HTML page of a campaign store: figures and a summary table (read-only; safe while it runs)."""
    from mapcvd.report import write_campaign_report  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    root = open_campaign(store_path, mode="r")
    out = out_dir or store_path.parent / (store_path.name.removesuffix(".zarr") + ".report")
    result = write_campaign_report(root, out, store_path=store_path)
    for note in result["notes"]:
        _log(f"note: {note}")
    _log(f"wrote {result['html']} with {len(result['figures'])} figure(s)")


register(cli)


# --------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every user-caused error into one line."""
    debug = os.environ.get("MAPCVD_DEBUG") == "1"
    try:
        code = cli.main(args=argv, prog_name="mapcvd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # a group called bare: show its help
        click.echo(exc.format_message(), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MapcvdError as exc:
        if debug:
            raise
        _fail(str(exc), 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    one_line = " ".join(str(message).split())
    click.echo(f"mapcvd: error: {one_line}", err=True)
    sys.exit(code or 1)


if __name__ == "__main__":  # pragma: no cover
    main()
