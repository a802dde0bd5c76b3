"""``mapcvd cvd dataset|nade|agent|validate``: the CVD learning campaign.

The pipeline of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, on one campaign store:

``dataset``   reactive-MD runs of random schedules, one Parsl app each (``cvd/dataset``)
``nade``      NADE-CVD trained on the done runs (``cvd/nade/weights``, ``cvd/nade/results``)
``agent``     REINFORCE agent on the trained NADE (``cvd/agent/policy``, ``cvd/agent/results``)
``validate``  reactive MD of the agent's best schedules (``cvd/validation``)

Settings come from ``--config`` when given, else from the configuration stored in the
campaign store, else from the packaged demo configuration. Figures (PNG) go to
``--out`` (default: ``<store>.figures`` next to the store).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import click
import numpy as np

from mapcvd.commands.common import config_for, console, log, open_for_run
from mapcvd.cvd.learning_settings import LearningSettings
from mapcvd.cvd.learning import no_2h
from mapcvd.store.layout import NADE_WEIGHTS
from mapcvd.errors import InputError

_store_option = click.option("--store", "store_path", required=True, type=click.Path(path_type=Path),
                             help="Campaign store (Zarr folder).")
_config_option = click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
                              help="TOML configuration (default: the one stored in the campaign, else the demo).")
_out_option = click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                           help="Folder of the figures (default: <store>.figures).")


# ----------------------------------------------------------------------- helpers
def _figures(out_dir: Path | None, store_path: Path) -> Path:
    out = out_dir if out_dir is not None else store_path.parent / (store_path.name + ".figures")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _progress_columns():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())


class _Bar:
    """Rich progress bar on a terminal; plain log lines (every ``every`` steps) otherwise."""

    def __init__(self, description: str, total: int, every: int = 1) -> None:
        self.description, self.total, self.every = description, int(total), max(1, int(every))
        self.tty = sys.stdout.isatty()
        self.start = time.perf_counter()
        self.bar = None

    def __enter__(self):
        if self.tty:
            from rich.progress import Progress

            self.bar = Progress(*_progress_columns(), console=console(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=self.total, info="")
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def eta(self, completed: int) -> str:
        if completed <= 0:
            return "?"
        left = (time.perf_counter() - self.start) / completed * (self.total - completed)
        return time.strftime("%H:%M:%S", time.gmtime(left))

    def update(self, completed: int, info: str = "", line: str | None = None) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, info=info)
            if line:
                self.bar.console.print(line, markup=False)
        elif line or completed % self.every == 0 or completed == self.total:
            log(f"{line or self.description}: {completed}/{self.total} {info} (ETA {self.eta(completed)})")


def _run_events(bar: _Bar):
    """A ``progress`` callback for :func:`mapcvd.workflows.cvd_dataset.run_rows`."""

    def on_event(e: dict) -> None:
        finished = e["done"] + e["failed"]
        info = f"done {e['done']} failed {e['failed']}"
        if e["event"] == "start":
            bar.start, bar.total = time.perf_counter(), e["total"]
            if bar.bar is not None:
                bar.bar.reset(bar.task, total=e["total"], info=info)
            else:
                log(f"{bar.description}: {e['total']} submitted")
        elif e["event"] == "done":
            bar.update(finished, info, None if bar.tty else f"run {e['row']} done")
        else:
            verb = "failed, retrying" if e["event"] == "retry" else "failed"
            bar.update(finished, info, f"run {e['row']} {verb}: {e['message']}")

    return on_event


def _rmd_settings(config: dict) -> tuple[dict, tuple[str, ...]]:
    """The ``[cvd]`` reactive-MD settings as a plain dict (checked), and the species names."""
    from mapcvd.cvd.learning import rmd_settings

    return rmd_settings(config)


def _site(site: str | None, config: dict, store_path: Path):
    """The site of a CVD reactive-MD command: on ``local``, one worker per ``cvd.ranks_per_run`` cores."""
    from mapcvd.workflows.site_common import cores
    from mapcvd.workflows.sites import check_ranks, load_site, local_mpi_slots

    name = site or config["campaign"]["site"]
    run_dir = store_path.parent / (store_path.name + ".runinfo")
    ranks = config["cvd"]["ranks_per_run"]
    options = {"max_workers": max(1, cores() // ranks), "mpi": local_mpi_slots(ranks)} if name == "local" else {}
    parsl_config = load_site(name, run_dir=str(run_dir), **options)
    check_ranks(parsl_config, ranks)
    return name, parsl_config


# ----------------------------------------------------------------------- dataset
@click.command("dataset")
@click.option("--runs", type=click.IntRange(min=1), default=None,
              help="Runs wanted in the dataset (default: cvd_learning.runs); more than stored extends it.")
@_store_option
@click.option("--site", default=None, help="Parsl site: threads, local, slurm, pbs or PATH.py (default: config).")
@_config_option
def dataset_command(runs, store_path, site, config_file):
    """Reactive-MD runs of random schedules (one Parsl app per run) into the store.

    Re-running continues: done runs are kept, pending and failed ones are run; a failed
    run is retried (cvd_learning.retries) and recorded with its message, never as data.
    """
    from mapcvd.store import run_stage
    from mapcvd.workflows.cvd_dataset import run_dataset

    config = config_for(config_file, store_path)
    runs = runs or config["cvd_learning"]["runs"]
    rmd, species = _rmd_settings(config)
    site_name, parsl_config = _site(site, config, store_path)  # a bad site fails before any work
    group, created = open_for_run(store_path, config)
    log(f"{'created' if created else 'continuing'} campaign store {store_path}; site '{site_name}', "
        f"{rmd['n_mo']}-Mo slab, {rmd['n_stages']} stages per run")
    start = time.perf_counter()
    with _Bar("reactive-MD runs", 0) as bar:
        summary = run_stage(group, "cvd_dataset", lambda: run_dataset(
            group, parsl_config, config=config, runs=runs, rmd=rmd, species=species, progress=_run_events(bar),
            log=log))
    c = summary["counts"]
    log(f"dataset: {c['done']} done, {c['failed']} failed, {c['pending']} pending of {sum(c.values())} rows; "
        f"{summary['attempts']} runs in {time.perf_counter() - start:.1f} s")
    if not summary["complete"]:
        raise InputError(f"{len(summary['failed'])} run(s) failed twice or more; their messages are in "
                         f"{store_path}/cvd/dataset/message; re-run to try them again")


# -------------------------------------------------------------------------- nade
@click.command("nade")
@_store_option
@_config_option
@_out_option
def nade_command(store_path, config_file, out_dir):
    """Train NADE-CVD on the done runs; report held-out errors; save weights and figures."""
    from mapcvd.cvd import plots
    from mapcvd.cvd.learning import fit_nade
    from mapcvd.cvd.nade import PHASES
    from mapcvd.store import run_stage

    config = config_for(config_file, store_path)
    learning = LearningSettings.from_config(config)
    group, _ = open_for_run(store_path)
    with _Bar("NADE epochs", learning.nade_epochs, every=max(1, learning.nade_epochs // 10)) as bar:
        fit = run_stage(group, "cvd_nade", lambda: fit_nade(
            group, config, log=log, progress=lambda e, tr, va: bar.update(e + 1, f"train {tr:.3f} val {va:.3f}")))
    hist, val, X, Z = fit["hist"], fit["val"], fit["X"], fit["Z"]
    out = _figures(out_dir, store_path)
    show = val[:6]
    paths = [
        plots.plot_nade_loss(hist, out / "nade_loss.png"),
        plots.plot_trajectories(Z[show], fit["mean"][: len(show)], np.sqrt(fit["var"][: len(show)]),
                                out / "nade_trajectories.png",
                                titles=[f"held-out run {r}" for r in fit["rows"][show]],
                                temperature=X[show, :, 0]),
    ]
    log(f"trained in {fit['seconds']:.1f} s: {hist['epochs_run']} epochs, best epoch {hist['best_epoch']} "
        f"(validation NLL {hist['best_val']:.3f}); saved {NADE_WEIGHTS} v{fit['version']}")
    click.echo(f"held-out runs: {len(val)} of {fit['n']}; mean absolute error per phase")
    click.echo("  phase    one-stage-ahead   free-running")
    for p in PHASES:
        click.echo(f"  {p:7s}  {fit['mae_one_step'][p]:15.4f}   {fit['mae_free_run'][p]:12.4f}")
    for path in paths:
        click.echo(f"figure: {path}")


# ------------------------------------------------------------------------- agent
def _surrogate_option(verb: str):
    return click.option("--surrogate", default=None, metavar="store|paper|PATH.pt",
                        help=f"Surrogate to {verb}: 'store' (this campaign's NADE-CVD), 'paper' (the CVD paper's "
                             "trained NADE-CVD, shipped) or a .pt checkpoint of that format "
                             "(default: cvd_learning.surrogate).")


def _agent_figures(group, results_path: str, out: Path, kind: str, optimum: dict | None) -> list[Path]:
    """The learning curve, best schedules and Fig. 3 of the agent results just stored."""
    from mapcvd.cvd import plots
    from mapcvd.store import read_array_checkpoint

    arrays, _, meta = read_array_checkpoint(group, results_path)
    return plots.agent_figures(arrays, meta, out, tag="" if kind == "store" else f"_{kind}",
                               optimum=None if optimum is None else optimum["mean_return"])


def plausibility_line(z, what: str) -> str:
    """Whether predicted fractions ``z`` (S, 3) sum to 1 within the tolerance, in words."""
    from mapcvd.cvd.validation import SUM_TOLERANCE, fraction_sum_error

    z = np.asarray(z)
    error = float(fraction_sum_error(z))
    if error <= SUM_TOLERANCE:
        return f"{what}: the predicted fractions sum to 1 within {error:.3f} at every stage"
    stage = int(np.abs(z.sum(-1) - 1.0).argmax()) + 1
    return (f"warning: {what}: the predicted fractions sum to {z[stage - 1].sum():.3f} at stage {stage} "
            f"(tolerance {SUM_TOLERANCE}): the surrogate is extrapolating there, so this return is partly an "
            "artefact of the model, not a synthesis result")


def _print_agent(fit: dict, episodes: int, optimum: dict | None) -> None:
    from mapcvd.cvd.validation import SUM_TOLERANCE, fraction_sum_error

    comparison, best = fit["comparison"], fit["best"]
    click.echo(f"expected return (sum over the stages of the predicted 2H fraction) over {episodes} episodes "
               f"from the same uniform starts, {fit['surrogate'].label} surrogate:")
    click.echo(f"  agent (Gaussian policy)  {comparison['agent']:.4f}")
    click.echo(f"  agent (mean action)      {comparison['agent_greedy']:.4f}")
    click.echo(f"  random schedules         {comparison['random']:.4f}")
    click.echo(f"  paper's strategy         {comparison['strategy']:.4f}  (3500 K stages 2-8, then 2000 K)")
    if optimum is not None:
        click.echo(f"  optimised schedules      {optimum['mean_return']:.4f}  (gradient ascent through the surrogate "
                   f"from {optimum['starts']} uniform first stages; best {optimum['best_return']:.4f})")
    if no_2h(fit["max_2h"]):
        click.echo(f"  agent / random           n/a: no reactive-MD run of this campaign's dataset formed 2H "
                   f"(largest 2H fraction {fit['max_2h']:.3g}); these returns are the surrogate's noise around 0 "
                   "and say nothing about synthesis (try --surrogate paper)")
    else:
        for key, name, note in (("ratio", "random", "  (paper: > 1.5)"), ("ratio_strategy", "strategy", "")):
            ratio = comparison[key]
            click.echo(f"  agent / {name:16s} {ratio:.3f}{note}" if math.isfinite(ratio)
                       else f"  agent / {name:16s} n/a (it makes no 2H under this surrogate)")
        if optimum is not None and optimum["mean_return"] > 0:
            click.echo(f"  agent / optimised        {comparison['agent'] / optimum['mean_return']:.3f}  "
                       "(the agent's share of what direct optimisation reaches from the same kind of start)")
    click.echo(f"best schedule (predicted return {best['returns'][0]:.4f}):")
    click.echo("  stage      T (K)     S2     H2    H2S    2H(pred) 1T(pred)")
    for t, (x, z) in enumerate(zip(best["schedules"][0], best["z"][0])):
        click.echo(f"  {t + 1:5d} {x[0]:10.0f} {x[1]:6.1f} {x[2]:6.1f} {x[3]:6.1f}    {z[0]:7.3f}  {z[1]:7.3f}")
    click.echo(plausibility_line(best["z"][0], "best schedule"))
    if optimum is not None:
        ok = fraction_sum_error(optimum["z"]) <= SUM_TOLERANCE
        click.echo(f"optimised schedules whose fractions sum to 1 within {SUM_TOLERANCE}: {int(ok.sum())} of "
                   f"{len(ok)}" + (f" (their mean return {float(optimum['returns'][ok].mean()):.4f})" if ok.any()
                                   else ""))


@click.command("agent")
@_store_option
@_surrogate_option("train the agent on")
@click.option("--updates", type=click.IntRange(min=1), default=None,
              help="REINFORCE updates (default: cvd_learning.agent_updates; paper 15000).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Episodes per update (default: cvd_learning.agent_batch; paper 32).")
@click.option("--json", "as_json", is_flag=True,
              help="Print only a JSON object: updates, agent_return, random_return, strategy_return, best_return, "
                   "best_schedule.")
@_config_option
@_out_option
def agent_command(store_path, surrogate, updates, batch, as_json, config_file, out_dir):
    """Train the REINFORCE agent on a surrogate; compare it with random schedules and the paper's strategy.

    Also optimises schedules directly through the surrogate from the same kind of start
    (cvd_learning.optimise_steps; 0 skips it), the agent's upper reference. Writes the
    paper's Fig. 3 for this surrogate (cvd_fig3*.png), the learning curve and the best
    schedules. With --surrogate paper the store is created when missing.
    """
    import contextlib
    import json

    from mapcvd.cvd.learning import fit_agent
    from mapcvd.cvd.optimise import fit_optimum
    from mapcvd.cvd.surrogates import resolve_surrogate, surrogate_kind
    from mapcvd.store import run_stage

    config = config_for(config_file, store_path)
    learning = LearningSettings.from_config(config)
    surrogate = surrogate or learning.surrogate
    total = updates or learning.agent_updates
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        group, _ = open_for_run(store_path, None if surrogate_kind(surrogate) == "store" else config)
        with _Bar("REINFORCE updates", total, every=max(1, total // 10)) as bar:
            choice = resolve_surrogate(surrogate, group)
            fit = run_stage(group, choice.stage, lambda: fit_agent(
                group, config, surrogate=choice, updates=updates, batch=batch, log=log,
                progress=lambda i, s: bar.update(i + 1, f"return {s['total_return']:.3f}")))
        optimum = fit_optimum(group, config, fit["surrogate"], log=log)
        paths = _agent_figures(group, fit["paths"][1], _figures(out_dir, store_path), fit["surrogate"].kind, optimum)
        if not as_json:
            _print_agent(fit, learning.agent_eval_episodes, optimum)
            for path in paths:
                click.echo(f"figure: {path}")
    if as_json:
        c, best = fit["comparison"], fit["best"]
        click.echo(json.dumps({
            "updates": int(fit["updates"]), "agent_return": float(c["agent"]), "random_return": float(c["random"]),
            "strategy_return": float(c["strategy"]), "best_return": float(best["returns"][0]),
            "best_schedule": [[float(v) for v in row] for row in best["schedules"][0]],
        }))


# ---------------------------------------------------------------------- validate
@click.command("validate")
@_store_option
@_surrogate_option("validate the agent of")
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Best agent schedules to run with reactive MD (default: cvd_learning.validate_top).")
@click.option("--site", default=None, help="Parsl site: threads, local, slurm, pbs or PATH.py (default: config).")
@_config_option
@_out_option
def validate_command(store_path, surrogate, top, site, config_file, out_dir):
    """Reactive MD on the agent's best schedules; NADE vs MD per stage; the Fig. 3c plot.

    With --surrogate paper the agent trained on the paper's NADE-CVD is validated: its
    schedules run on this campaign's slab with gas counts scaled by n_mo/288.
    """
    from mapcvd.cvd import plots
    from mapcvd.cvd.learning import validation_plan
    from mapcvd.cvd.nade import PHASES
    from mapcvd.cvd.validation import ranges_from_dict, split_initial_s2
    from mapcvd.store import run_stage
    from mapcvd.workflows.cvd_validate import validate_agent

    config = config_for(config_file, store_path)
    group, _ = open_for_run(store_path)
    plan = validation_plan(group, config, top, surrogate)  # bad --top or a missing agent fail before Parsl
    top = plan["top"]
    site_name, parsl_config = _site(site, config, store_path)
    log(f"validating the {top} best schedules of the agent's results on site '{site_name}'")
    with _Bar("validation runs", top) as bar:
        done = run_stage(group, plan["stage"], lambda: validate_agent(
            group, parsl_config, config=config, top=top, surrogate=surrogate, progress=_run_events(bar), log=log))
    plan, table, summary, report = done["plan"], done["table"], done["summary"], done["report"]
    rows, schedules, ranges = report["rows_done"], plan["schedules"], plan["ranges"]
    out = _figures(out_dir, store_path)
    tag = "" if plan["kind"] == "store" else f"_{plan['kind']}"
    paths = []
    if len(rows):
        paths.append(plots.plot_trajectories(
            table.read("Z", rows), plan["mean"][rows], plan["std"][rows], out / f"validation_trajectories{tag}.png",
            titles=[f"agent schedule #{r + 1}" for r in rows], temperature=schedules[rows, :, 0]))
    panels = []
    ds = plan["dataset"].done()
    if len(ds["rows"]):
        s = split_initial_s2(ds["X"], ds["Z"][:, -1, 0], ranges_from_dict(plan["dataset"].attrs["ranges"]))
        panels.append(("dataset, reactive MD", s["low"], s["high"]))
    results = plan["results"]
    s = split_initial_s2(results["proposal_x0"][:, None, :], results["proposal_final_2h"], ranges)
    panels.append(("agent's schedules, NADE-CVD", s["low"], s["high"]))
    paths.append(plots.plot_initial_s2(panels, out / f"initial_s2_2h{tag}.png", threshold=s["threshold"]))
    log(f"validation: {len(rows)} of {top} schedules run with reactive MD "
        f"({summary['attempts']} runs in {summary['seconds']:.1f} s)")
    if plan["caveat"]:
        click.echo(f"caveat: {plan['caveat']}")
    if len(rows):
        click.echo("NADE-CVD vs reactive MD on the agent's schedules, mean absolute error per phase: "
                   + ", ".join(f"{p} {report['mae'][p]:.4f}" for p in PHASES))
        click.echo(f"2H return (sum over stages): agent schedules {report['md_return_agent']:.4f} (reactive MD), "
                   f"{report['nade_return_agent']:.4f} (NADE); random dataset schedules "
                   f"{report['md_return_dataset']:.4f} (reactive MD)")
    for path in paths:
        click.echo(f"figure: {path}")
    if not summary["complete"]:
        raise InputError(f"{len(summary['failed'])} validation run(s) failed; messages in "
                         f"{store_path}/{plan['table_path']}/message; re-run to try them again")
