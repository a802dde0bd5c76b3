"""``mapcvd cvd predict|optimise``: a frozen CVD surrogate on given or optimised schedules.

Both work on any surrogate of :func:`mapcvd.cvd.surrogates.resolve_surrogate`: the
campaign's own NADE-CVD (``--surrogate store --store STORE``), the trained NADE-CVD of
Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, shipped
with mapcvd (``--surrogate paper``), or a checkpoint of that format (``PATH.pt``).

``predict``   predicted mean 2H/1T/defect fractions after each stage of a schedule CSV,
              fed back autoregressively, and the schedule's return
``optimise``  gradient ascent on the schedule through the surrogate
              (:mod:`mapcvd.cvd.optimise`); best schedules as CSV and a figure, and with
              an existing ``--store`` the results in ``cvd/optimise_<kind>/results``

The return of a schedule is the sum over its stages of the predicted mean 2H fraction
(undiscounted). Schedule files hold ``T,n_S2,n_H2,n_H2S`` per stage in the units of the
surrogate's slab (for ``paper``: molecules for the 288-Mo slab).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from mapcvd.commands.common import config_for, log
from mapcvd.config import default
from mapcvd.cvd.learning_settings import LearningSettings

_surrogate_option = click.option(
    "--surrogate", "spec", default=None, metavar="store|paper|PATH.pt",
    help="'store' (the campaign's NADE-CVD, needs --store), 'paper' (the CVD paper's trained NADE-CVD) "
         "or a .pt checkpoint of the paper model's format (default: cvd_learning.surrogate of the store's "
         "config, else 'store').")
_store_option = click.option("--store", "store_path", default=None, type=click.Path(path_type=Path),
                             help="Campaign store (Zarr folder); needed for --surrogate store.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print only a JSON object on stdout.")


def _choose(spec: str, store_path: Path | None, mode: str = "r", *, any_existing: bool = False):
    """The resolved surrogate and the campaign group (or None).

    The group is opened when the surrogate is ``store``, and with ``any_existing`` also
    for the other surrogates when ``store_path`` exists (a bad store fails before any work).
    """
    from mapcvd.commands.common import open_for_run
    from mapcvd.cvd.surrogates import resolve_surrogate, surrogate_kind
    from mapcvd.store import open_campaign

    group = None
    if store_path is not None and (surrogate_kind(spec) == "store" or (any_existing and store_path.exists())):
        group = open_for_run(store_path)[0] if mode == "r+" else open_campaign(store_path, mode)
    return resolve_surrogate(spec, group), group


def _describe(choice) -> str:
    where = choice.meta.get("file") or f"NADE-CVD v{choice.meta.get('nade_version')}"
    return f"surrogate {choice.label} ({where}), {choice.n_mo}-Mo slab, trained on {choice.n_stages}-stage runs"


def _table(schedule: np.ndarray, z: np.ndarray) -> list[str]:
    lines = ["  stage      T (K)      S2      H2     H2S     f_2H     f_1T  f_defect"]
    for t, (x, f) in enumerate(zip(schedule, z)):
        lines.append(f"  {t + 1:5d} {x[0]:10.1f} {x[1]:7.1f} {x[2]:7.1f} {x[3]:7.1f}   "
                     f"{f[0]:6.4f}   {f[1]:6.4f}    {f[2]:6.4f}")
    return lines


# ----------------------------------------------------------------------- predict
@click.command("predict")
@_surrogate_option
@_store_option
@click.option("--schedule", "schedule_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Schedule CSV: header T,n_S2,n_H2,n_H2S, one row per stage (units of the surrogate's slab).")
@_json_option
def predict_command(spec, store_path, schedule_file, as_json):
    """Predicted mean 2H/1T/defect fractions after each stage of a schedule, fed back autoregressively."""
    from mapcvd.commands.cvd_learning import plausibility_line
    from mapcvd.cvd.schedule import read_schedule
    from mapcvd.cvd.validation import free_run, schedule_return

    choice, _ = _choose(spec or LearningSettings.from_config(config_for(None, store_path)).surrogate, store_path)
    schedule = read_schedule(schedule_file, choice.ranges)
    z = free_run(choice.model, schedule, choice.ranges)[0][0]
    if as_json:
        click.echo(json.dumps({"stages": len(schedule), "fractions": z.tolist()}))
        return
    click.echo(f"{_describe(choice)}; schedule {schedule_file}, {len(schedule)} stages")
    if len(schedule) > choice.n_stages:
        click.echo(f"note: stages after {choice.n_stages} extrapolate beyond the runs the surrogate was trained on")
    for line in _table(schedule, z):
        click.echo(line)
    click.echo(f"return (sum of predicted f_2H over the stages, undiscounted): {schedule_return(z):.4f}")
    click.echo(plausibility_line(z, "this schedule"))


# ---------------------------------------------------------------------- optimise
@click.command("optimise")
@_surrogate_option
@_store_option
@click.option("--starts", type=click.IntRange(min=1), default=None,
              help="Random starting schedules optimised together (default: cvd_learning.optimise_starts, 64).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Adam steps (default: cvd_learning.optimise_steps, 1500).")
@click.option("--first-stage", type=click.Choice(["free", "random"]), default="free", show_default=True,
              help="'random': first stage drawn uniformly in range and held (as the agent starts); "
                   "'free': optimised too.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the starting schedules.")
@_json_option
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the CSV files and the figure (default: <store>.figures, else ./cvd_optimise).")
def optimise_command(spec, store_path, starts, steps, first_stage, seed, as_json, out_dir):
    """Optimise schedules by gradient ascent through the frozen surrogate; write the best as CSV.

    The objective is the return: the sum over the stages of the predicted mean 2H
    fraction. With an existing --store the results are kept in cvd/optimise_<kind>/results.
    """
    from mapcvd.commands.cvd_learning import plausibility_line
    from mapcvd.cvd import plots
    from mapcvd.cvd.optimise import optimise_schedules, save_optimum
    from mapcvd.store.layout import optimum_path
    from mapcvd.cvd.schedule import write_schedule
    from mapcvd.cvd.validation import SUM_TOLERANCE, fraction_sum_error

    learning = LearningSettings.from_config(config_for(None, store_path))
    choice, group = _choose(spec or learning.surrogate, store_path, "r+", any_existing=True)
    # optimise_steps 0 only tells 'cvd agent' and the campaign to skip the optimum: here it means the default
    starts = starts or learning.optimise_starts
    steps = steps or learning.optimise_steps or default("cvd_learning", "optimise_steps")
    if not as_json:
        log(f"{_describe(choice)}; {starts} starts x {steps} Adam steps, first stage {first_stage}")
    every = max(1, steps // 10)

    def progress(i, stats):
        if not as_json and ((i + 1) % every == 0 or i + 1 == steps):
            log(f"step {i + 1}/{steps}: best return {stats['best_return']:.4f}, mean {stats['mean_return']:.4f}")

    result = optimise_schedules(choice.model, choice.ranges, choice.n_stages, starts=starts, steps=steps,
                                first_stage=first_stage, seed=seed, progress=progress)
    order = result["order"]
    best, best_z = result["schedules"][order[0]], result["z"][order[0]]
    if out_dir is None:
        out_dir = store_path.parent / (store_path.name + ".figures") if store_path is not None else Path("cvd_optimise")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_schedule(out_dir / "optimised_best.csv", best)]
    paths += [write_schedule(out_dir / f"optimised_{k + 1}.csv", result["schedules"][j])
              for k, j in enumerate(order[1:3], start=1)]
    paths.append(plots.plot_optimum(best, best_z, out_dir / "optimised_best.png", ranges=choice.ranges,
                              title=f"best of {starts} optimised schedules ({choice.label}): "
                                    f"return {result['best_return']:.3f}"))
    stored = (None if group is None
              else f"{optimum_path(choice.kind, first_stage)} v{save_optimum(group, choice, result)}")
    if as_json:
        click.echo(json.dumps({"best_return": result["best_return"], "median_return": result["median_return"],
                               "best_schedule": best.tolist(), "starts": int(starts)}))
        return
    log(f"optimised in {result['seconds']:.1f} s" + (f"; saved {stored}" if stored else ""))
    click.echo(f"return over {starts} starts (sum of predicted f_2H, undiscounted): best {result['best_return']:.4f}, "
               f"median {result['median_return']:.4f}, mean {result['mean_return']:.4f} "
               f"(starting schedules: mean {float(np.mean(result['initial_returns'])):.4f})")
    click.echo("best schedule:")
    for line in _table(best, best_z):
        click.echo(line)
    ok = fraction_sum_error(result["z"]) <= SUM_TOLERANCE
    click.echo(plausibility_line(best_z, "best schedule"))
    click.echo(f"schedules whose predicted fractions sum to 1 within {SUM_TOLERANCE} at every stage: {int(ok.sum())} "
               f"of {len(ok)}" + (f"; the best of them returns {float(result['returns'][ok].max()):.4f}" if ok.any()
                                  else ""))
    for path in paths:
        click.echo(f"{'figure' if path.suffix == '.png' else 'schedule'}: {path}")
