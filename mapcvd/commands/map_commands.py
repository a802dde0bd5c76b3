"""``mapcvd map train|evaluate|scaling|ablation``: the MAP pathfinder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mapcvd.commands.common import config_for, log, open_for_run, refuse_changed_map_config
from mapcvd.errors import InputError


def _map_config(config_file: Path | None, store: Path | None, overrides: dict) -> dict:
    """The config of a MAP command (:func:`~mapcvd.commands.common.config_for` of its sections)."""
    return config_for(config_file, store, overrides, sections=("campaign", "map"))


def _open_store(path: Path, config: dict, *, must_exist: bool = False):
    if must_exist:
        return open_for_run(path)[0]
    group, created = open_for_run(path, config)
    log(f"{'created' if created else 'continuing'} campaign store {path}")
    return group


@click.command("train")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path),
              help="Campaign store; an existing one is continued.")
@click.option("--structure", default=None, help="Host + guided molecule file (any format ASE reads).")
@click.option("--site", default=None, help="Parsl site: local, threads, slurm, pbs or PATH.py.")
@click.option("--actors", type=int, default=None, help="Actor apps (default: map.actors).")
@click.option("--minutes", type=float, default=None, help="Training wall time (default: map.minutes).")
@click.option("--seed", type=int, default=None, help="Campaign seed (default: campaign.seed).")
def map_train(config_file, store_path, structure, site, actors, minutes, seed):
    """Train the MAP pathfinder: N actor apps (ReaxFF) and one learner app over the store."""
    from mapcvd.map.system import check_map_table  # noqa: PLC0415
    from mapcvd.md.structures import read_structure  # noqa: PLC0415
    from mapcvd.store import run_stage  # noqa: PLC0415
    from mapcvd.workflows.map_training import map_site, run_map_training  # noqa: PLC0415

    config = _map_config(config_file, store_path, {
        "campaign": {"site": site, "seed": seed}, "map": {"actors": actors, "minutes": minutes}})
    refuse_changed_map_config(store_path, config)  # a store stays with the settings it was trained with
    table = config["map"]
    atoms = None
    if not store_path.exists():  # a new store: check the structure and guided atoms too
        atoms = read_structure(structure or table["structure"])
    elif structure is not None:
        read_structure(structure)
    check_map_table(table, atoms)  # bad potential, grid, replay size or guided atoms: before any work
    run_dir = store_path.parent / (store_path.name + ".runinfo")
    parsl_config = map_site(config["campaign"]["site"], str(run_dir), table["actors"],
                            ranks_per_actor=table["ranks_per_actor"])
    group = _open_store(store_path, config)
    result = run_stage(group, "map_train", lambda: run_map_training(config, group, str(store_path), parsl_config,
                                                                     structure=structure, log=log))
    learner = result["learner"]
    for a in result["actors"]:
        log(f"actor {a['actor']} (eps {a['epsilon']:.3g}): {a['episodes']} episodes, {a['actions']} actions, "
            f"{a['transitions']} transitions, mean progress {a['mean_progress_A']:+.2f} A, "
            f"{a['failures']} LAMMPS failures")
    log(f"learner on {learner['device']}: {learner['updates']} updates in total ({learner['new_updates']} now), "
        f"replay {learner['replay_size']}, weights v{learner['weights_version']}, lost {learner['lost']}")
    log(f"done in {result['seconds']:.0f} s; continue with the same command, evaluate with "
        f"'mapcvd map evaluate {store_path} --episodes 5 --policy greedy'")


#: Keys of ``map evaluate --json``.
EVALUATION_KEYS = ("policy", "episodes", "mean_progress_A", "mean_return", "crossed_fraction", "mean_raw_barrier_eV",
                   "mean_actions")


@click.command("evaluate")
@click.argument("store_path", type=click.Path(path_type=Path))
@click.option("--episodes", type=int, default=None, help="Episodes (default: map.eval_episodes).")
@click.option("--policy", type=click.Choice(["greedy", "random", "straight"]), default="greedy", show_default=True,
              help="greedy: the trained network (epsilon 0); random: uniform actions; straight: +goal every time.")
@click.option("--site", default=None, help="Parsl site (default: the store's config).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def map_evaluate(store_path, episodes, policy, site, as_json):
    """Run episodes of the greedy policy, random actions or the straight drag; store their pathways.

    Every policy starts from the same structure with the same MD seeds per episode, so
    their crossed share, progress and raw barrier compare on equal terms.
    """
    from mapcvd.store import run_stage  # noqa: PLC0415
    from mapcvd.store.layout import evaluation_stage  # noqa: PLC0415
    from mapcvd.workflows.map_training import map_site, run_map_evaluation  # noqa: PLC0415

    if episodes is not None and episodes < 1:
        raise InputError(f"--episodes must be >= 1, got {episodes}")
    group = _open_store(store_path, {}, must_exist=True)
    config = _map_config(None, store_path, {"campaign": {"site": site}})
    episodes = episodes or config["map"]["eval_episodes"]
    run_dir = store_path.parent / (store_path.name + ".runinfo")
    quiet = (lambda _line: None) if as_json else log
    parsl_config = map_site(config["campaign"]["site"], str(run_dir), actors=1, gpu=False)
    result = run_stage(group, evaluation_stage(policy), lambda: run_map_evaluation(
        config, group, str(store_path), parsl_config, policy=policy, episodes=episodes, log=quiet))
    if as_json:
        click.echo(json.dumps({k: result[k] for k in EVALUATION_KEYS}))
    else:
        log(f"{policy}: crossed {result['crossed_fraction']:.0%}, mean progress {result['mean_progress_A']:+.2f} A, "
            f"mean raw barrier {result['mean_raw_barrier_eV']:.3f} eV, {result['mean_actions']:.1f} actions, "
            f"mean return {result['mean_return']:+.2f} over {result['episodes']} episodes (stored in {result['log']})")


def _experiment(config: dict, out_dir, variants: dict, title: str, png: str) -> None:
    from mapcvd.map.plots import plot_training_curves  # noqa: PLC0415
    from mapcvd.map.system import check_map_table  # noqa: PLC0415
    from mapcvd.md.structures import read_structure  # noqa: PLC0415
    from mapcvd.workflows.map_training import experiment_curves, map_site, run_map_experiment  # noqa: PLC0415

    atoms = read_structure(config["map"]["structure"])
    for overrides in variants.values():
        check_map_table({**config["map"], **overrides}, atoms)
    stores = run_map_experiment(
        config, variants, out_dir, log=log,
        site_factory=lambda run_dir, actors: map_site(config["campaign"]["site"], run_dir, actors))
    curves = experiment_curves(stores)
    path = plot_training_curves(curves, Path(out_dir) / png, title)
    for label, c in curves.items():
        epochs, mean, _ = c["progress_A"]
        _, ret, _ = c["return"]
        last = f"epoch {int(epochs[-1])}: final x {mean[-1]:+.2f} A, reward {ret[-1]:+.2f}" if len(epochs) else "no episodes"
        log(f"{label:18s} {last}")
    log(f"wrote {path}")


def load_experiment_config(config_file, minutes, site) -> dict:
    """The experiment's base config (CONFIG or the packaged demo) with the command-line overrides."""
    from mapcvd.config import load_config  # noqa: PLC0415

    return load_config(config_file, overrides={"campaign": {"site": site}, "map": {"minutes": minutes}})


def _default_actor_counts(site: str) -> str:
    import os  # noqa: PLC0415

    if site in ("local", "threads"):
        cores = os.cpu_count() or 1
        return ",".join(str(n) for n in sorted({1, min(4, cores), min(16, cores)}))
    return "1,4,16"


@click.command("scaling")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the stores and the figure.")
@click.option("--actors", "counts", default=None,
              help="Actor counts, e.g. 1,4,16 (default: the paper's 1,4,16, capped at the cores on local).")
@click.option("--minutes", type=float, default=None, help="Training time of each run (default: map.minutes).")
@click.option("--site", default=None, help="Parsl site (default: the config's).")
def map_scaling(config_file, out_dir, counts, minutes, site):
    """The paper's Fig. 2 (a, b): one training per actor count; final x and total reward per epoch."""
    config = load_experiment_config(config_file, minutes, site)
    text = counts or _default_actor_counts(config["campaign"]["site"])
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise InputError(f"--actors must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise InputError(f"--actors must be positive integers, got {text!r}")
    variants = {f"actors_{n}": {"actors": n} for n in values}
    _experiment(config, out_dir, variants, "MAP training with N actors", "scaling.png")


@click.command("ablation")
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the stores and the figure.")
@click.option("--terms", default=None, help="Reward terms to switch off one at a time (default: all five).")
@click.option("--actors", type=int, default=None, help="Actors of each run (default: map.actors).")
@click.option("--minutes", type=float, default=None, help="Training time of each run (default: map.minutes).")
@click.option("--site", default=None, help="Parsl site (default: the config's).")
def map_ablation(config_file, out_dir, terms, actors, minutes, site):
    """The paper's reward ablation: all terms, then each term switched off in turn."""
    from mapcvd.map.environment import REWARD_TERMS  # noqa: PLC0415

    names = [t.strip() for t in (terms or ",".join(REWARD_TERMS)).split(",") if t.strip()]
    unknown = [t for t in names if t not in REWARD_TERMS]
    if unknown or not names:
        raise InputError(f"unknown reward term(s) {', '.join(unknown) or '(none given)'}; known: "
                         f"{', '.join(REWARD_TERMS)}")
    if actors is not None and actors < 1:
        raise InputError(f"--actors must be >= 1, got {actors}")
    base = {} if actors is None else {"actors": actors}
    variants = {"all_terms": base} | {f"no_{t}": {**base, f"reward_{t}": 0.0} for t in names}
    _experiment(load_experiment_config(config_file, minutes, site), out_dir, variants, "MAP reward ablation",
                "ablation.png")
