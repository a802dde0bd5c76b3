"""Piecewise NEB of MAP pathways as a Parsl app graph, and their TST times.

MAP (Chen et al., seed 000) refines a learned pathway by cutting its energy profile
into minimum -> maximum -> minimum segments and running a climbing-image NEB on every
segment in parallel (piecewise NEB); the refined barriers give the pathway's time by
transition-state theory. Here:

1. (optional) one app plays the straight-drag baseline (the tether moved along +goal
   only, a policy that always picks action 0) from the stored structure; the driver
   stores it as an episode log;
2. one app per episode log computes the energy of each candidate episode's frame 0
   (the step energies are stored already), so the driver can build each profile,
   segment it (:func:`mapcvd.pathways.segments.segment_profile`) and preselect the ``top``
   episodes by their raw-profile time;
3. one app per segment of those episodes (and of the baseline) runs the NEB, all at
   once on the ``"cpu"`` executor (with LAMMPS's ``neb``, one rank per image, on the
   ``"mpi"`` executor where the site has one); the driver stores each result as it arrives, then
   each pathway's stitched profile and times, then the ranking
   (:mod:`mapcvd.pathways.store`).

Apps only read the store and return arrays; the driver is the only writer. App
functions live in this installed module and import LAMMPS inside.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import as_completed

import numpy as np

from mapcvd.errors import InputError
from mapcvd.config import config_values
from mapcvd.pathways.neb import NebSettings, band_state, neb_from_map
from mapcvd.pathways.segments import pathway_time, profile_of, segment_profile, stitch
from mapcvd.pathways.sources import EpisodeRef, candidate_episodes, episode_label
from mapcvd.pathways.store import (
    BASELINE_LOG,
    begin_pathway,
    candidate_key,
    finish_pathway,
    pathway_status,
    rank_key,
    write_ranking,
    write_segment,
)
from mapcvd.timing import timed_app


# ----------------------------------------------------------------- the apps
def _system(root, table: dict):
    from mapcvd.workflows.map_training import stored_system  # noqa: PLC0415

    return stored_system(root, table)


@timed_app
def baseline_task(store_path: str, table: dict, seed: int) -> tuple:
    """Parsl app body: the straight drag (action 0 every time) from the stored structure; its log rows."""
    from mapcvd.map.episode import log_rows, play_episode, straight_drag  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415

    system = _system(open_campaign(store_path, "r"), table)
    env = system.environment(seed=seed)
    try:
        result = play_episode(env, straight_drag)
        return log_rows(env, result, episode=0, epsilon=0.0, weights_version=-1)
    finally:
        env.close()


@timed_app
def frame0_energy_task(store_path: str, table: dict, log_path: str, episodes: list[int]) -> list[float]:
    """Parsl app body: the potential energy (eV) of frame 0 of each episode of one log."""
    from mapcvd.md.engine import Engine  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415
    from mapcvd.store.episodes import EpisodeLog  # noqa: PLC0415

    root = open_campaign(store_path, "r")
    system = _system(root, table)
    log = EpisodeLog(root, log_path)
    energies = []
    with Engine(system.atoms, system.potential) as engine:
        for episode in episodes:
            engine.set_positions(log.frames(episode)[0])
            energies.append(engine.potential_energy())
    return energies


@timed_app
def segment_task(store_path: str, table: dict, log_path: str, episode: int, start: int, end: int,
                 settings: dict, parsl_resource_specification: dict | None = None) -> dict:
    """Parsl app body: CI-NEB between frames ``start`` and ``end`` of one episode, guided by the frames between.

    ``parsl_resource_specification`` is Parsl's: the ranks of a band of LAMMPS's ``neb``
    on the ``"mpi"`` executor (:func:`~mapcvd.workflows.sites.rank_placement`).

    Returns
    -------
    dict
        ``energies``, ``positions``, ``coordinate`` (guided atom along the goal axis),
        and the figures of :meth:`mapcvd.pathways.neb.NebResult.summary`.
    """
    from mapcvd.pathways.neb import NebSettings, run_neb  # noqa: PLC0415
    from mapcvd.store import open_campaign  # noqa: PLC0415
    from mapcvd.store.episodes import EpisodeLog  # noqa: PLC0415

    root = open_campaign(store_path, "r")
    system = _system(root, table)
    frames = EpisodeLog(root, log_path).frames(episode)
    initial, final = system.atoms.copy(), system.atoms.copy()
    initial.positions, final.positions = frames[start], frames[end]
    result = run_neb(initial, final, potential=system.potential, settings=NebSettings(**settings),
                     guide=frames[start + 1 : end])
    axis = "xyz".index(table["goal_axis"])
    return {**result.summary(), "energies": result.energies, "positions": result.positions,
            "coordinate": result.positions[:, int(system.guided[0]), axis]}


# ------------------------------------------------------------------ driver
def pathway_settings(table: dict) -> dict:
    """Keyword arguments of :func:`run_pathways` from a ``[map]`` table (``map paths`` defaults).

    Returns
    -------
    dict
        ``top``, ``temperature_K``, ``distance_A``, ``prominence`` and ``neb_settings``
        (the config fields of :func:`~mapcvd.pathways.neb.neb_from_map`, checked).
    """
    return {"top": table["paths_top"], "temperature_K": table["tst_temperature_K"],
            "distance_A": 10.0 * table["tst_distance_nm"], "prominence": table["segment_prominence_eV"],
            "neb_settings": config_values(neb_from_map(table))}


def _finite(value):
    """JSON-safe number: NaN and inf become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def _store_baseline(group, store_path: str, table: dict, seed: int, app, log) -> None:
    from mapcvd.map.episode import STEP_FIELDS, SUMMARY_FIELDS  # noqa: PLC0415
    from mapcvd.store.episodes import EpisodeWriter  # noqa: PLC0415

    n_atoms = int(group["map/structure"].attrs["natoms"])
    writer = EpisodeWriter(group, BASELINE_LOG, n_atoms=n_atoms, summary_fields=SUMMARY_FIELDS,
                           step_fields=STEP_FIELDS, frames=True)
    if writer.count:
        return
    start = time.perf_counter()
    summary, steps, frames = app(store_path, table, seed).result()
    writer.append(summary, steps, frames)
    log(f"baseline: straight drag along +{table['goal_axis']}, {int(summary['actions'])} actions, "
        f"{summary['progress_A']:+.2f} A in {time.perf_counter() - start:.0f} s")


def _profiles(group, store_path, table, refs, app) -> dict:
    """label -> raw profile, coordinate along the goal axis, segments (after the frame-0 apps)."""
    from mapcvd.store.episodes import EpisodeLog  # noqa: PLC0415

    by_log: dict[str, list] = {}
    for ref in refs:
        by_log.setdefault(ref.log, []).append(ref)
    futures = {path: app(store_path, table, path, [r.episode for r in items]) for path, items in by_log.items()}
    guided = int(group["map/structure"].attrs["guided"][0])
    axis = "xyz".index(table["goal_axis"])
    out = {}
    for path, items in by_log.items():
        log = EpisodeLog(group, path)
        for ref, e0 in zip(items, futures[path].result()):
            frames = log.frames(ref.episode)
            out[ref.label] = {"ref": ref, "e0": e0, "steps": log.steps(ref.episode)["energy"],
                              "coordinate": frames[:, guided, axis]}
    return out


def run_pathways(config: dict, group, store_path: str, parsl_config, *, top: int, temperature_K: float,
                 distance_A: float, prominence: float, neb_settings: dict, baseline: bool = True,
                 min_length_A: float = 1.0, log: Callable[[str], None] = print) -> dict:
    """Refine the ``top`` pathways of a MAP store (and the baseline) by piecewise NEB; rank them by TST time.

    Parameters
    ----------
    config
        Validated configuration (``[campaign]`` seed, ``[map]`` table).
    group
        The campaign root, read-write (this driver writes ``map/pathways``).
    store_path
        Path of the store (the apps open it read-only).
    parsl_config
        A fresh Parsl config with a ``"cpu"`` executor, or None to run inside the
        Parsl configuration already loaded.
    top
        Episodes refined, chosen by the TST time of their raw profiles.
    temperature_K, distance_A
        TST temperature, and the distance each time is scaled to.
    prominence
        Smallest prominence (eV) of a profile maximum that makes a segment.
    neb_settings
        Keyword arguments of :class:`mapcvd.pathways.neb.NebSettings`.
    baseline
        Also refine the straight drag along the goal axis.
    min_length_A
        Episodes that advance less are not candidates.

    Returns
    -------
    dict
        ``ranking`` (rows, fastest first), ``baseline`` (its row or None), ``candidates``,
        ``seconds``.
    """
    import parsl  # noqa: PLC0415
    from mapcvd.workflows.parsl_runtime import parsl_block  # noqa: PLC0415
    from mapcvd.workflows.sites import rank_placement  # noqa: PLC0415

    from mapcvd.store.episodes import EpisodeLog  # noqa: PLC0415

    if top < 1:
        raise InputError(f"--top must be >= 1, got {top}")
    band = NebSettings(**neb_settings)  # refuse bad settings before any work
    table = config["map"]
    seed = config["campaign"]["seed"]
    refs = candidate_episodes(group, min_length_A)
    if not refs and not baseline:
        raise InputError(f"the store holds no episode with frames that advances {min_length_A:g} A or more: "
                         "run 'mapcvd map train' or 'mapcvd map evaluate' first")
    settings = {"temperature_K": temperature_K, "distance_A": distance_A, "prominence_eV": prominence,
                "top": top, "neb": dict(neb_settings), "min_length_A": min_length_A}
    start = time.perf_counter()
    with parsl_block(parsl_config, record=group) as dfk:
        cpu = ["cpu"]
        if baseline:
            _store_baseline(group, store_path, table, seed, parsl.python_app(baseline_task, executors=cpu), log)
            summary = EpisodeLog(group, BASELINE_LOG).summary()
            base_ref = EpisodeRef(BASELINE_LOG, 0, episode_label(BASELINE_LOG, 0),
                                  float(summary["progress_A"][0]), int(summary["actions"][0]))
        profiles = _profiles(group, store_path, table, refs + ([base_ref] if baseline else []),
                             parsl.python_app(frame0_energy_task, executors=cpu))
        rows = {}
        for label, p in profiles.items():
            energy = profile_of(p["e0"], p["steps"])
            segments = segment_profile(energy, prominence)
            raw = [s.raw_barriers(energy)[0] for s in segments]
            length = float(p["coordinate"][-1] - p["coordinate"][0])
            _, raw_scaled = pathway_time(raw, length, temperature_K, distance_A)
            rows[label] = {"label": label, "ref": p["ref"], "energy": energy, "segments": segments,
                           "raw_barriers": raw, "length": length, "coordinate": p["coordinate"],
                           "raw_scaled": raw_scaled}
        learned = sorted((r for r in rows.values() if r["ref"].log != BASELINE_LOG),
                         key=lambda r: candidate_key(r["raw_scaled"], len(r["segments"]), r["label"]))
        chosen = learned[:top] + ([rows["baseline"]] if baseline else [])
        log(f"pathways: {len(refs)} candidate episode(s); refining {len(chosen)} "
            f"({sum(len(r['segments']) for r in chosen)} segments) by piecewise NEB")
        segment_executors, placement = rank_placement(dfk.config, band.ranks)
        segment_app = parsl.python_app(segment_task, executors=segment_executors)
        futures = {}
        for row in chosen:
            bounds = [(s.start, s.peak, s.end) for s in row["segments"]]
            source = {"log": row["ref"].log, "episode": int(row["ref"].episode), "segments": bounds,
                      "neb": dict(neb_settings)}
            kept = begin_pathway(group, row["label"], row["energy"], row["coordinate"], bounds, source=source)
            row["results"] = [kept.get(k) for k in range(len(bounds))]
            if kept:
                log(f"{row['label']}: {len(kept)} of {len(bounds)} segment(s) refined before, kept")
            for k, s in enumerate(row["segments"]):
                if k in kept:
                    continue
                future = segment_app(store_path, table, row["ref"].log, row["ref"].episode, s.start, s.end,
                                     dict(neb_settings), **placement)
                futures[future] = (row, k)
        for future in as_completed(futures):
            row, k = futures[future]
            result = future.result()
            write_segment(group, row["label"], k, result)
            row["results"][k] = result
            state = band_state(result["converged"], result["climbed"], band.climb)
            log(f"{row['label']} segment {k}: {result['barrier_forward_eV']:.3f} eV forward "
                f"(raw {row['raw_barriers'][k]:.3f} eV), {state}, {result['seconds']:.0f} s")
        ranking = [_finish(group, row, temperature_K, distance_A) for row in chosen]
    base_row = ranking.pop() if baseline else None
    ranking.sort(key=rank_key)
    write_ranking(group, ranking, settings, base_row)
    return {"ranking": ranking, "baseline": base_row, "candidates": len(refs),
            "seconds": time.perf_counter() - start}


def _finish(group, row: dict, temperature_K: float, distance_A: float) -> dict:
    """Stitch one pathway, compute its times, commit it; return its ranking row."""
    results = row["results"]
    stitched = stitch(results)
    barriers = [r["barrier_forward_eV"] for r in results]
    time_s, scaled = pathway_time(barriers, row["length"], temperature_K, distance_A)
    if not results:  # no barrier above the prominence: no time
        time_s, scaled = math.nan, math.nan
    ref = row["ref"]
    attrs = {
        "label": row["label"], "source": ref.log, "episode": int(ref.episode), "length_A": row["length"],
        "raw_barriers_eV": [float(b) for b in row["raw_barriers"]], "barriers_eV": [float(b) for b in barriers],
        "converged": bool(all(r["converged"] for r in results)), "n_segments": len(results),
        "status": pathway_status(results), "converged_segments": sum(bool(r["converged"]) for r in results),
        "time_s": _finite(time_s), "time_scaled_s": _finite(scaled),
        "time_scaled_days": _finite(scaled / 86_400.0), "temperature_K": temperature_K, "distance_A": distance_A,
        "raw_max_eV": [float(row["energy"][s.start : s.end + 1].max()) for s in row["segments"]],
        "refined_max_eV": [float(np.max(r["energies"])) for r in results],
    }
    finish_pathway(group, row["label"], stitched, attrs)
    return attrs
