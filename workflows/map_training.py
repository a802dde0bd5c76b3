"""MAP as a Parsl app graph: N actor apps and one learner app over the Zarr store.

Chen et al.'s MAP (seed 000) trains like Ape-X (Horgan et al., arXiv:1803.00933):
actors, each with its own LAMMPS ReaxFF instance and epsilon, stream prioritized
n-step transitions into the store; one learner, on the site's ``"gpu"`` executor when
it has one (CUDA when torch sees a GPU there), samples them and publishes weights the
actors pull. Every app opens the store itself and writes only its own groups
(``map/replay/actor_i`` and ``map/episodes/actor_i``; ``map/learner``); this driver
writes the campaign attributes and ``map/structure``. Evaluation episodes run as
independent apps whose results the driver appends to ``map/evaluation/<policy>``.

The app functions live here, in an installed module, and import torch and LAMMPS
inside, so that worker processes import them lazily.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import as_completed

from mapcvd.errors import InputError
from mapcvd.store.layout import ATOMS_KIND, MAP_STRUCTURE_PATH, evaluation_path
from mapcvd.timing import timed_app



# ----------------------------------------------------------------- the apps
@timed_app
def actor_task(store_path: str, table: dict, training, actor: int, deadline: float, seed: int,
               max_episodes: int | None = None, token: int | None = None,
               parsl_resource_specification: dict | None = None) -> dict:
    """Parsl app body: one actor until ``deadline`` (see :func:`mapcvd.map.actor.run_actor`).

    ``table`` is the ``[map]`` table of the system (structure, potential, environment),
    checked by the driver; ``training`` the :class:`~mapcvd.map.training_settings.TrainingSettings`;
    ``token`` the run token of the driver's run: once a newer run holds the store,
    the actor's next write raises :class:`~mapcvd.store.fence.FencedError`.
    """
    from mapcvd.map.actor import run_actor  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    ranks = int(table.get("ranks_per_actor", 1))
    if ranks > 1:  # one LAMMPS over R MPI ranks (mapcvd.workflows.actor_ranks)
        from mapcvd.workflows.actor_ranks import run_actor_on_ranks  # noqa: PLC0415

        return run_actor_on_ranks(store_path, table, actor, deadline, seed, max_episodes, token, ranks)
    root = open_campaign(store_path, "r+", token=token)
    return run_actor(root, stored_system(root, table), training, actor=actor, deadline=deadline, seed=seed,
                     max_episodes=max_episodes)


@timed_app
def learner_task(store_path: str, training, deadline: float, seed: int, channels: int,
                 max_updates: int | None = None, token: int | None = None) -> dict:
    """Parsl app body: the learner until ``deadline`` (see :func:`mapcvd.map.learner.run_learner`), fenced by ``token``."""
    from mapcvd.map.learner import run_learner  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    root = open_campaign(store_path, "r+", token=token)
    return run_learner(root, training, deadline=deadline, seed=seed, channels=channels, max_updates=max_updates)


@timed_app
def evaluation_task(store_path: str, table: dict, training, policy: str, weights: dict | None, seed: int,
                    episode: int) -> tuple:
    """Parsl app body: one evaluation episode; returns its log rows (the driver stores them)."""
    from mapcvd.map.evaluate import evaluate_episode  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    root = open_campaign(store_path, "r")
    return evaluate_episode(stored_system(root, table), training, policy=policy, weights=weights, seed=seed,
                            episode=episode)


def stored_system(root, table: dict):
    """The MAP system of the table on the structure stored in the campaign."""
    from mapcvd.map.system import build_system  # noqa: PLC0415
    from mapcvd.store.atoms import read_atoms  # noqa: PLC0415

    atoms, _ = read_atoms(root, MAP_STRUCTURE_PATH)
    return build_system(table, atoms)


# ------------------------------------------------------------------ driver
def map_site(site: str, run_dir: str, actors: int, *, gpu: bool = True, ranks_per_actor: int = 1,
             band_ranks: int = 1, workers: int | None = None):
    """A fresh Parsl config for MAP on ``site``: a ``"cpu"`` worker per actor, at least one per core
    unless ``workers`` says (:func:`~mapcvd.workflows.sites.workload_site`); ``ranks_per_actor``
    above the cores of a node of the site is refused in one line. ``band_ranks``: the
    ranks of one NEB band (:attr:`~mapcvd.pathways.neb.NebSettings.ranks`)."""
    from mapcvd.workflows.sites import check_ranks, workload_site  # noqa: PLC0415

    workers = max(actors, os.cpu_count() or 1) if workers is None else workers
    config = workload_site(site, run_dir, actors=actors, workers=workers, gpu=gpu, actors_hint="--actors 1",
                           mpi_ranks=max(ranks_per_actor, band_ranks))
    check_ranks(config, ranks_per_actor, key="map.ranks_per_actor")
    return config


def prepare_map(group, table: dict, structure: str | None = None):
    """Store the MAP structure (once) and create the replay; return the system.

    Raises
    ------
    InputError
        When ``structure`` is given for a store that already trains on another one.
    """
    from mapcvd.map.system import build_system, replay_spec  # noqa: PLC0415
    from mapcvd.map.training_settings import TrainingSettings  # noqa: PLC0415
    from mapcvd.md.structures import read_structure  # noqa: PLC0415
    from mapcvd.store.atoms import read_atoms, write_atoms  # noqa: PLC0415
    from mapcvd.store.replay import create_replay  # noqa: PLC0415

    if MAP_STRUCTURE_PATH in group and group[MAP_STRUCTURE_PATH].attrs.get("kind") == ATOMS_KIND:
        atoms, attrs = read_atoms(group, MAP_STRUCTURE_PATH)
        if structure is not None:
            given = read_structure(structure)
            same = len(given) == len(atoms) and (given.numbers == atoms.numbers).all() and \
                abs(given.positions - atoms.positions).max() < 1e-6
            if not same:
                raise InputError(
                    f"this store already trains on {attrs.get('source')}; --structure {structure} differs "
                    "(use a new --store)"
                )
        system = build_system(table, atoms)
    else:
        source = structure or table["structure"]
        atoms = read_structure(source)
        system = build_system(table, atoms)
        write_atoms(group, MAP_STRUCTURE_PATH, atoms, attrs={"source": str(source), "guided": system.guided.tolist()})
    create_replay(group, replay_spec(TrainingSettings.from_table(table), system.channels))
    return system


def run_map_training(config: dict, group, store_path: str, parsl_config, *, structure: str | None = None,
                     log: Callable[[str], None] = print, report_seconds: float = 30.0,
                     on_progress: Callable[[dict], None] | None = None, max_episodes: int | None = None,
                     max_updates: int | None = None, on_submitted: Callable[[], None] | None = None) -> dict:
    """Train MAP for ``config["map"]["minutes"]`` on the site of ``parsl_config``.

    Parameters
    ----------
    config
        Validated configuration (``[campaign]`` seed, ``[map]`` table).
    group
        The campaign root, read-write (this driver writes its attributes). Opened
        with a run token (:func:`~mapcvd.workflows.run_guard.claim_store`), the
        actor and learner apps carry it and stop writing once a newer run holds
        the store.
    store_path
        Path of the store (each app opens it itself).
    parsl_config
        A fresh Parsl config (:func:`map_site`), or None to run inside the Parsl
        configuration already loaded (it needs a ``"cpu"`` executor, and ``"gpu"``
        for the learner when it has one).
    structure
        Structure file overriding ``map.structure`` (a new store only).
    log, report_seconds, on_progress
        A log line (from :func:`~mapcvd.map.progress.describe_snapshot`) every
        ``report_seconds``; ``on_progress`` gets the snapshot itself.
    max_episodes, max_updates
        Per-actor episode and learner update limits (tests).
    on_submitted
        Called once the learner and actor apps are submitted (the campaign submits
        other apps only then, so that the actors get their workers first).

    Returns
    -------
    dict
        ``actors`` (each actor's summary), ``learner`` (its summary), ``seconds``.
    """
    import parsl  # noqa: PLC0415
    from mapcvd.workflows.parsl_runtime import parsl_block  # noqa: PLC0415
    from mapcvd.workflows.sites import has_gpu_executor, rank_placement  # noqa: PLC0415

    from mapcvd.map.progress import describe_snapshot, training_snapshot  # noqa: PLC0415
    from mapcvd.map.training_settings import TrainingSettings  # noqa: PLC0415
    from mapcvd.store import set_stage_info  # noqa: PLC0415
    from mapcvd.store.fence import run_token  # noqa: PLC0415

    table = config["map"]
    training = TrainingSettings.from_table(table)
    seed = config["campaign"]["seed"]
    token = run_token(group)
    system = prepare_map(group, table, structure)
    start = time.perf_counter()
    with parsl_block(parsl_config, record=group) as dfk:
        learner_label = "gpu" if has_gpu_executor(dfk.config) else "cpu"
        deadline = time.time() + 60.0 * training.minutes
        set_stage_info(group, "map_train", {"started": time.time(), "deadline": deadline,
                                            "minutes": training.minutes, "actors": training.actors})
        learner = parsl.python_app(learner_task, executors=[learner_label])(
            str(store_path), training, deadline, seed, system.channels, max_updates, token)
        executors, placement = rank_placement(dfk.config, table.get("ranks_per_actor", 1))
        actor_app = parsl.python_app(actor_task, executors=executors)
        actors = [actor_app(str(store_path), table, training, i, deadline, seed, max_episodes, token, **placement)
                  for i in range(training.actors)]
        if on_submitted is not None:
            on_submitted()
        log(f"MAP: {training.actors} actor(s) on 'cpu', learner on '{learner_label}', "
            f"{training.minutes:g} min, {len(system.atoms)} atoms")
        futures = [learner, *actors]
        last = time.perf_counter()
        while not all(f.done() for f in futures):
            time.sleep(0.5)
            if time.perf_counter() - last >= report_seconds:
                snapshot = training_snapshot(group)
                log(describe_snapshot(snapshot))
                if on_progress is not None:
                    on_progress(snapshot)
                last = time.perf_counter()
        results = {"actors": [f.result() for f in actors], "learner": learner.result()}
    results["seconds"] = time.perf_counter() - start
    return results


def run_map_evaluation(config: dict, group, store_path: str, parsl_config, *, policy: str, episodes: int,
                       log: Callable[[str], None] = print) -> dict:
    """Play ``episodes`` evaluation episodes of ``policy`` in parallel apps; store and summarise them.

    ``parsl_config`` is a fresh Parsl config, or None to run inside the one loaded.

    Returns
    -------
    dict
        The figures of :func:`mapcvd.map.evaluate.summarise` over these episodes, with
        ``progress_A`` and ``raw_barrier_eV`` (each) and ``log`` (the store path of
        the episodes).
    """
    import parsl  # noqa: PLC0415
    from mapcvd.workflows.parsl_runtime import parsl_block  # noqa: PLC0415

    from mapcvd.map.episode import STEP_FIELDS, SUMMARY_FIELDS  # noqa: PLC0415
    from mapcvd.map.evaluate import POLICIES, summarise  # noqa: PLC0415
    from mapcvd.map.training_settings import TrainingSettings  # noqa: PLC0415
    from mapcvd.store.episodes import EpisodeWriter  # noqa: PLC0415
    from mapcvd.store.weights import read_weights  # noqa: PLC0415

    if policy not in POLICIES:
        raise InputError(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    table = config["map"]
    seed = config["campaign"]["seed"]
    system = prepare_map(group, table)
    weights = None
    if policy == "greedy":
        loaded = read_weights(group)
        if loaded is None:
            raise InputError("the store holds no trained weights: run 'mapcvd map train' first")
        weights = loaded[0]
    writer = EpisodeWriter(group, evaluation_path(policy), n_atoms=len(system.atoms),
                           summary_fields=SUMMARY_FIELDS, step_fields=STEP_FIELDS, frames=True)
    first = writer.count
    rows, barriers = [], []
    with parsl_block(parsl_config, record=group):
        app = parsl.python_app(evaluation_task, executors=["cpu"])
        training = TrainingSettings.from_table(table)
        futures = [app(str(store_path), table, training, policy, weights, seed, first + k)
                   for k in range(episodes)]
        for future in as_completed(futures):
            summary, steps, frames, barrier = future.result()
            writer.append(summary, steps, frames)
            rows.append(summary)
            barriers.append(barrier)
            ending = "crossed" if summary["crossed"] else "did not cross"
            log(f"{policy} episode {int(summary['episode'])}: {int(summary['actions'])} actions, {ending}, "
                f"progress {summary['progress_A']:+.2f} A, raw barrier {barrier:.3f} eV, "
                f"return {summary['return']:+.2f}")
    return {**summarise(policy, rows, barriers), "progress_A": [r["progress_A"] for r in rows],
            "raw_barrier_eV": barriers, "log": evaluation_path(policy)}


def run_map_experiment(config: dict, variants: dict[str, dict], out_dir, *, log: Callable[[str], None] = print,
                       site_factory: Callable[[str, int], object]) -> dict[str, str]:
    """Train one store per variant (the paper's scaling and ablation runs); return label -> store path.

    Parameters
    ----------
    config
        Base configuration.
    variants
        Label -> ``[map]`` overrides (e.g. ``{"actors": 4}`` or ``{"reward_energy": 0.0}``).
    out_dir
        Folder of the stores (``<out_dir>/<label>.zarr``).
    site_factory
        ``(run_dir, actors) -> fresh Parsl config`` (a loaded config cannot be reused).

    A variant whose store already finished training is not trained again, so an
    interrupted experiment resumes where it stopped.
    """
    from pathlib import Path  # noqa: PLC0415

    from mapcvd.store import open_or_create_campaign, run_stage, stage_statuses  # noqa: PLC0415
    from mapcvd.workflows.run_guard import claim_store  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stores = {}
    for label, overrides in variants.items():
        variant = {**config, "map": {**config["map"], **overrides}}
        path = out / f"{label}.zarr"
        open_or_create_campaign(path, config=variant, seeds={"campaign": config["campaign"]["seed"]})
        group = claim_store(path)
        stores[label] = str(path)
        if stage_statuses(group).get("map_train") == "done":
            log(f"{label}: already trained ({path})")
            continue
        log(f"{label}: training {variant['map']['actors']} actor(s) for {variant['map']['minutes']:g} min -> {path}")
        site = site_factory(str(out / f"{label}.runinfo"), variant["map"]["actors"])
        run_stage(group, "map_train", lambda: run_map_training(variant, group, str(path), site, log=log))
    return stores


def experiment_curves(stores: dict[str, str], epoch_episodes: int = 1) -> dict:
    """Per-epoch mean +- std over actors of final x and total reward, per store (for the plots)."""
    from mapcvd.map.plots import PANELS  # noqa: PLC0415
    from mapcvd.map.progress import actor_logs, episodes_by_epoch  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    curves = {}
    for label, path in stores.items():
        logs = actor_logs(open_campaign(path, "r"))
        curves[label] = {field: episodes_by_epoch(logs, field, epoch_episodes) for field in PANELS}
    return curves
