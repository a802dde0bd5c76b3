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

from mapcvd.commands.common import console, log
from mapcvd.commands.groups import cvd
from mapcvd.errors import ConfigError, InputError, StoreError

NADE_WEIGHTS, NADE_RESULTS = "cvd/nade/weights", "cvd/nade/results"
AGENT_POLICY, AGENT_RESULTS = "cvd/agent/policy", "cvd/agent/results"
POLICY_HIDDEN = (72, 24)
#: Largest dataset 2H fraction below which agent returns are reported as meaningless.
NO_2H = 0.01

_store_option = click.option("--store", "store_path", required=True, type=click.Path(path_type=Path),
                             help="Campaign store (Zarr folder).")
_config_option = click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
                              help="TOML configuration (default: the one stored in the campaign, else the demo).")
_out_option = click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                           help="Folder of the figures (default: <store>.figures).")


# ----------------------------------------------------------------------- helpers
def _config(config_file: Path | None, store_path: Path) -> dict:
    """``--config``, else the store's configuration, else the packaged demo; validated."""
    from mapcvd.config import load_config, validate
    from mapcvd.store import open_campaign

    if config_file is not None:
        return load_config(config_file)
    if store_path.is_dir() and any(store_path.iterdir()):
        stored = open_campaign(store_path, "r").attrs.get("config", {})
        try:
            return validate(stored)
        except ConfigError as exc:
            raise ConfigError(f"the configuration stored in {store_path} does not fit this mapcvd ({exc}); "
                              "pass --config") from None
    return load_config(None)


def _ints(text: str, key: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"config key '{key}' must list positive integer widths such as '24 48 72', got {text!r}")
    return values


def _figures(out_dir: Path | None, store_path: Path) -> Path:
    out = out_dir if out_dir is not None else store_path.parent / (store_path.name + ".figures")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finite(value):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_finite(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def _next_version(group, name: str) -> int:
    try:
        latest = group[name].attrs.get("latest")
    except KeyError:
        latest = None
    return 1 if latest is None else int(latest) + 1


def _dataset(group):
    from mapcvd.store.cvd_dataset import DATASET_PATH, RunTable

    if DATASET_PATH not in group:
        raise StoreError(f"no CVD dataset in {group.store}; run 'mapcvd cvd dataset' first")
    return RunTable.open(group, DATASET_PATH)


def _read_checkpoint(group, name: str, what: str, command: str, version: int | None = None):
    from mapcvd.store import read_array_checkpoint

    if name not in group:
        raise StoreError(f"no {what} in {group.store}; run 'mapcvd cvd {command}' first")
    return read_array_checkpoint(group, name, version=version)


def _load_nade(group, version: int | None = None):
    from mapcvd.cvd.nade import from_arrays
    from mapcvd.cvd.validation import ranges_from_dict

    arrays, version, meta = _read_checkpoint(group, NADE_WEIGHTS, "trained NADE-CVD", "nade", version)
    return from_arrays(arrays, meta["model"]), version, meta, ranges_from_dict(meta["ranges"])


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
    import dataclasses

    from mapcvd.cvd.rmd import SPECIES, RmdSettings

    settings = RmdSettings.from_config(config["cvd"])
    return _finite(dataclasses.asdict(settings)), tuple(SPECIES)


def _site(site: str | None, config: dict, store_path: Path):
    from mapcvd.workflows.sites import load_site

    name = site or config["campaign"]["site"]
    run_dir = store_path.parent / (store_path.name + ".runinfo")
    return name, load_site(name, run_dir=str(run_dir))


# ----------------------------------------------------------------------- dataset
@cvd.command("dataset")
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
    from mapcvd.store import open_or_create_campaign
    from mapcvd.workflows.cvd_dataset import run_dataset

    config = _config(config_file, store_path)
    runs = runs or config["cvd_learning"]["runs"]
    rmd, species = _rmd_settings(config)
    site_name, parsl_config = _site(site, config, store_path)  # a bad site fails before any work
    group, created = open_or_create_campaign(store_path, config=config,
                                             seeds={"campaign": config["campaign"]["seed"]})
    log(f"{'created' if created else 'continuing'} campaign store {store_path}; site '{site_name}', "
        f"{rmd['n_mo']}-Mo slab, {rmd['n_stages']} stages per run")
    start = time.perf_counter()
    with _Bar("reactive-MD runs", 0) as bar:
        summary = run_dataset(group, parsl_config, config=config, runs=runs, rmd=rmd,
                              species=species, progress=_run_events(bar), log=log)
    c = summary["counts"]
    log(f"dataset: {c['done']} done, {c['failed']} failed, {c['pending']} pending of {sum(c.values())} rows; "
        f"{summary['attempts']} runs in {time.perf_counter() - start:.1f} s")
    if not summary["complete"]:
        raise InputError(f"{len(summary['failed'])} run(s) failed twice or more; their messages are in "
                         f"{store_path}/cvd/dataset/message; re-run to try them again")


# -------------------------------------------------------------------------- nade
@cvd.command("nade")
@_store_option
@_config_option
@_out_option
def nade_command(store_path, config_file, out_dir):
    """Train NADE-CVD on the done runs; report held-out errors; save weights and figures."""
    import torch

    from mapcvd.cvd import plots
    from mapcvd.cvd.nade import PHASES, evaluate_nade, to_arrays, train_nade
    from mapcvd.cvd.validation import free_run, phase_mae, ranges_from_dict
    from mapcvd.store import open_campaign, set_stage_status, write_array_checkpoint

    config = _config(config_file, store_path)
    L = config["cvd_learning"]
    model_config = {"encoder": _ints(L["nade_encoder"], "cvd_learning.nade_encoder"), "lstm": L["nade_lstm"],
                    "decoder": _ints(L["nade_decoder"], "cvd_learning.nade_decoder")}
    group = open_campaign(store_path, "r+")
    table = _dataset(group)
    data = table.done()
    n = len(data["rows"])
    if n < 2:
        raise InputError(f"the dataset in {store_path} has {n} done run(s); NADE-CVD needs at least 2 "
                         "(one to train, one to validate): run 'mapcvd cvd dataset' first")
    attrs = table.attrs
    ranges = ranges_from_dict(attrs["ranges"])
    X, Z = data["X"], data["Z"]
    torch.set_num_threads(L["threads"])
    log(f"NADE-CVD {model_config} on {n} runs x {table.n_stages} stages "
        f"({L['nade_val_fraction']:.0%} held out), up to {L['nade_epochs']} epochs")
    set_stage_status(group, "cvd_nade", "running")
    try:
        start = time.perf_counter()
        with _Bar("NADE epochs", L["nade_epochs"], every=max(1, L["nade_epochs"] // 10)) as bar:
            model, hist = train_nade(
                X, Z, epochs=L["nade_epochs"], batch_size=L["nade_batch"], lr=L["nade_lr"],
                validation_fraction=L["nade_val_fraction"], patience=L["nade_patience"] or None,
                seed=attrs["seed"], ranges=ranges, config=model_config,
                progress=lambda e, tr, va: bar.update(e + 1, f"train {tr:.3f} val {va:.3f}"),
            )
        seconds = time.perf_counter() - start
        val, train = np.asarray(hist["val_runs"]), np.asarray(hist["train_runs"])
        mae_step = evaluate_nade(model, X[val], Z[val], ranges=ranges)
        mean, var = free_run(model, X[val], ranges)
        mae_free = phase_mae(mean, Z[val])
        version = _next_version(group, NADE_WEIGHTS)
        meta = _finite({
            "model": model.config, "ranges": attrs["ranges"], "n_stages": table.n_stages,
            "dataset_rows": data["rows"], "train_rows": data["rows"][train], "val_rows": data["rows"][val],
            "best_epoch": hist["best_epoch"], "best_val_nll": hist["best_val"], "epochs_run": hist["epochs_run"],
            "mae_one_step": mae_step, "mae_free_run": mae_free, "seconds": seconds,
            "settings": {k: v for k, v in L.items() if k.startswith("nade_")},
        })
        write_array_checkpoint(group, NADE_WEIGHTS, to_arrays(model), version=version, meta=meta)
        write_array_checkpoint(
            group, NADE_RESULTS,
            {"train_nll": np.asarray(hist["train"]), "val_nll": np.asarray(hist["val"]),
             "val_rows": data["rows"][val], "val_mean": mean, "val_var": var},
            version=_next_version(group, NADE_RESULTS), meta={"nade_version": version, **meta})
    except BaseException:
        set_stage_status(group, "cvd_nade", "failed")
        raise
    set_stage_status(group, "cvd_nade", "done")
    out = _figures(out_dir, store_path)
    show = val[:6]
    paths = [
        plots.plot_nade_loss(hist, out / "nade_loss.png"),
        plots.plot_trajectories(Z[show], mean[: len(show)], np.sqrt(var[: len(show)]), out / "nade_trajectories.png",
                                titles=[f"held-out run {r}" for r in data["rows"][show]],
                                temperature=X[show, :, 0]),
    ]
    log(f"trained in {seconds:.1f} s: {hist['epochs_run']} epochs, best epoch {hist['best_epoch']} "
        f"(validation NLL {hist['best_val']:.3f}); saved {NADE_WEIGHTS} v{version}")
    click.echo(f"held-out runs: {len(val)} of {n}; mean absolute error per phase")
    click.echo("  phase    one-stage-ahead   free-running")
    for p in PHASES:
        click.echo(f"  {p:7s}  {mae_step[p]:15.4f}   {mae_free[p]:12.4f}")
    for path in paths:
        click.echo(f"figure: {path}")


# ------------------------------------------------------------------------- agent
@cvd.command("agent")
@_store_option
@click.option("--updates", type=click.IntRange(min=1), default=None,
              help="REINFORCE updates (default: cvd_learning.agent_updates; paper 15000).")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Episodes per update (default: cvd_learning.agent_batch; paper 32).")
@_config_option
@_out_option
def agent_command(store_path, updates, batch, config_file, out_dir):
    """Train the REINFORCE agent on the trained NADE-CVD; compare it with random schedules."""
    import torch

    from mapcvd.cvd import plots
    from mapcvd.cvd.agent import PolicyValue, train_agent
    from mapcvd.cvd.validation import (
        best_schedules,
        compare_agent_random,
        policy_arrays,
    )
    from mapcvd.store import open_campaign, set_stage_status, write_array_checkpoint

    config = _config(config_file, store_path)
    L = config["cvd_learning"]
    updates, batch = updates or L["agent_updates"], batch or L["agent_batch"]
    group = open_campaign(store_path, "r+")
    model, nade_version, nade_meta, ranges = _load_nade(group)
    n_stages = int(nade_meta["n_stages"])
    dataset = _dataset(group)
    seed = int(dataset.attrs["seed"])
    max_2h = float(np.nanmax(dataset.done()["Z"][..., 0], initial=0.0))
    torch.set_num_threads(L["threads"])
    action_scale = tuple(2.0 * s for s in ranges.step_std)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        policy = PolicyValue(input_size=model.hidden_size, hidden=POLICY_HIDDEN, action_scale=action_scale)
    log(f"agent on NADE-CVD v{nade_version}: {updates} updates x {batch} episodes of {n_stages} stages")
    set_stage_status(group, "cvd_agent", "running")
    try:
        start = time.perf_counter()
        with _Bar("REINFORCE updates", updates, every=max(1, updates // 10)) as bar:
            policy, hist = train_agent(
                model, updates=updates, batch=batch, n_stages=n_stages, seed=seed + 1, ranges=ranges,
                lr=L["agent_lr"], gamma=L["agent_gamma"], policy=policy,
                progress=lambda i, s: bar.update(i + 1, f"return {s['mean_return']:.3f}"),
            )
        seconds = time.perf_counter() - start
        ev = {"ranges": ranges, "n_stages": n_stages, "n_episodes": L["agent_eval_episodes"],
              "seed": seed + 2, "gamma": L["agent_gamma"]}
        comparison = compare_agent_random(model, policy, **ev)
        best = best_schedules(model, policy, k=L["agent_best"], **ev)
        meta = _finite({
            "input_size": model.hidden_size, "hidden": list(POLICY_HIDDEN), "action_scale": list(action_scale),
            "sigma": list(ranges.step_std), "ranges": nade_meta["ranges"], "n_stages": n_stages,
            "nade_version": nade_version, "updates": updates, "batch": batch, "lr": L["agent_lr"],
            "gamma": L["agent_gamma"], "seed": seed + 1, "seconds": seconds, "expected_return": comparison,
        })
        policy_version = _next_version(group, AGENT_POLICY)
        write_array_checkpoint(group, AGENT_POLICY, policy_arrays(policy), version=policy_version, meta=meta)
        results = {
            "mean_return": np.asarray(hist["mean_return"]), "loss": np.asarray(hist["loss"]),
            "value_loss": np.asarray(hist["value_loss"]),
            "best_schedules": best["schedules"], "best_returns": best["returns"], "best_z": best["z"],
            "proposal_x0": best["all_x0"], "proposal_returns": best["all_returns"],
            "proposal_final_2h": best["all_final_2h"],
        }
        write_array_checkpoint(group, AGENT_RESULTS, results, version=_next_version(group, AGENT_RESULTS),
                               meta={"policy_version": policy_version, **meta})
    except BaseException:
        set_stage_status(group, "cvd_agent", "failed")
        raise
    set_stage_status(group, "cvd_agent", "done")
    out = _figures(out_dir, store_path)
    paths = [
        plots.plot_learning_curve(hist["mean_return"], comparison["random"], out / "agent_learning_curve.png",
                                  agent_return=comparison["agent"]),
        plots.plot_schedules(best["schedules"][:3], out / "agent_best_schedules.png", ranges=ranges,
                             labels=[f"#{i + 1}: return {r:.3f}" for i, r in enumerate(best["returns"][:3])]),
    ]
    log(f"trained in {seconds:.1f} s; saved {AGENT_POLICY} v{policy_version} and {AGENT_RESULTS}")
    click.echo(f"expected return over {L['agent_eval_episodes']} episodes from the same uniform starts "
               f"(gamma {L['agent_gamma']}):")
    click.echo(f"  agent (Gaussian policy)  {comparison['agent']:.4f}")
    click.echo(f"  agent (mean action)      {comparison['agent_greedy']:.4f}")
    click.echo(f"  random schedules         {comparison['random']:.4f}")
    ratio = comparison["ratio"]
    click.echo(f"  agent / random           {ratio:.3f}  (paper: > 1.5)" if math.isfinite(ratio)
               else "  agent / random           n/a (random schedules make no 2H under this NADE-CVD)")
    click.echo(f"best schedule (predicted return {best['returns'][0]:.4f}):")
    click.echo("  stage      T (K)     S2     H2    H2S    2H(pred) 1T(pred)")
    for t, (x, z) in enumerate(zip(best["schedules"][0], best["z"][0])):
        click.echo(f"  {t + 1:5d} {x[0]:10.0f} {x[1]:6.1f} {x[2]:6.1f} {x[3]:6.1f}    {z[0]:7.3f}  {z[1]:7.3f}")
    if max_2h < NO_2H:
        click.echo(f"note: no reactive-MD run of the dataset formed 2H (largest 2H fraction {max_2h:.3g}); the "
                   "returns above are the surrogate's noise around 0 and say nothing about synthesis "
                   "(longer stages or a larger slab are needed for 2H to form)")
    for path in paths:
        click.echo(f"figure: {path}")


# ---------------------------------------------------------------------- validate
@cvd.command("validate")
@_store_option
@click.option("--top", type=click.IntRange(min=1), default=None,
              help="Best agent schedules to run with reactive MD (default: cvd_learning.validate_top).")
@click.option("--site", default=None, help="Parsl site: threads, local, slurm, pbs or PATH.py (default: config).")
@_config_option
@_out_option
def validate_command(store_path, top, site, config_file, out_dir):
    """Reactive MD on the agent's best schedules; NADE vs MD per stage; the Fig. 3c plot."""
    from mapcvd.cvd import plots
    from mapcvd.cvd.nade import PHASES
    from mapcvd.cvd.validation import free_run, md_returns, phase_mae, split_initial_s2
    from mapcvd.store import open_campaign
    from mapcvd.workflows.cvd_validate import run_validation

    config = _config(config_file, store_path)
    L = config["cvd_learning"]
    top = top or L["validate_top"]
    group = open_campaign(store_path, "r+")
    dataset = _dataset(group)
    results, agent_version, agent_meta = _read_checkpoint(group, AGENT_RESULTS, "agent results", "agent")
    schedules = results["best_schedules"]
    if top > len(schedules):
        raise InputError(f"--top {top} asks for more than the {len(schedules)} best schedules stored "
                         "(cvd_learning.agent_best)")
    try:
        model, _, _, ranges = _load_nade(group, agent_meta["nade_version"])
    except StoreError:
        raise StoreError(f"the NADE-CVD v{agent_meta['nade_version']} the agent was trained on is no longer "
                         "stored; run 'mapcvd cvd agent' again") from None
    mean, var = free_run(model, schedules, ranges)
    species = dataset.attrs["species"]
    site_name, parsl_config = _site(site, config, store_path)
    log(f"validating the {top} best schedules of agent results v{agent_version} on site '{site_name}'")
    with _Bar("validation runs", top) as bar:
        table, summary = run_validation(
            group, parsl_config, schedules=schedules, top=top, nade_mean=mean, nade_std=np.sqrt(var),
            agent_version=agent_version, dataset_attrs=dataset.attrs, species=species,
            retries=L["retries"], progress=_run_events(bar), log=log)
    done = table.done()
    rows = done["rows"][done["rows"] < top]
    gamma = float(agent_meta["gamma"])
    ds = dataset.done()
    report = {"agent_version": agent_version, "rows_done": rows, "gamma": gamma,
              "md_return_dataset": float(md_returns(ds["Z"], gamma).mean()) if len(ds["rows"]) else None}
    out = _figures(out_dir, store_path)
    paths = []
    if len(rows):
        z_md = table.read("Z", rows)
        report["mae"] = phase_mae(mean[rows], z_md)
        report["md_return_agent"] = float(md_returns(z_md, gamma).mean())
        report["nade_return_agent"] = float(results["best_returns"][rows].mean())
        paths.append(plots.plot_trajectories(
            z_md, mean[rows], np.sqrt(var[rows]), out / "validation_trajectories.png",
            titles=[f"agent schedule #{r + 1}" for r in rows], temperature=schedules[rows, :, 0]))
    panels = []
    if len(ds["rows"]):
        s = split_initial_s2(ds["X"], ds["Z"][:, -1, 0], ranges)
        panels.append(("dataset, reactive MD", s["low"], s["high"]))
    s = split_initial_s2(results["proposal_x0"][:, None, :], results["proposal_final_2h"], ranges)
    panels.append(("agent's schedules, NADE-CVD", s["low"], s["high"]))
    paths.append(plots.plot_initial_s2(panels, out / "initial_s2_2h.png", threshold=s["threshold"]))
    table.set_attrs(report=_finite(report))
    log(f"validation: {len(rows)} of {top} schedules run with reactive MD "
        f"({summary['attempts']} runs in {summary['seconds']:.1f} s)")
    if len(rows):
        click.echo("NADE-CVD vs reactive MD on the agent's schedules, mean absolute error per phase: "
                   + ", ".join(f"{p} {report['mae'][p]:.4f}" for p in PHASES))
        click.echo(f"discounted 2H return: agent schedules {report['md_return_agent']:.4f} (reactive MD), "
                   f"{report['nade_return_agent']:.4f} (NADE); random dataset schedules "
                   f"{report['md_return_dataset']:.4f} (reactive MD)")
    for path in paths:
        click.echo(f"figure: {path}")
    if not summary["complete"]:
        raise InputError(f"{len(summary['failed'])} validation run(s) failed; messages in "
                         f"{store_path}/cvd/validation/message; re-run to try them again")
