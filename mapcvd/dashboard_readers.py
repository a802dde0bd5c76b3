"""Store readers of the live dashboard: each builds one part of a snapshot, never writes.

Every reader has the signature ``reader(root, snap, now, history) -> dict`` and returns
keys to merge into one section of the snapshot (``map``, ``neb`` or ``cvd``); it may add
stage progress (``snap["progress"]``, with an ETA from :func:`_eta`) and warnings
(:func:`_warn`). :mod:`mapcvd.dashboard` runs them in turn (its ``_READERS`` registry)
and catches what one of them raises, so a group caught half-written is a warning.

Store paths read here (each written by one process, see :mod:`mapcvd.store.campaign`):
``map/episodes/actor_*`` and ``map/learner/metrics`` (:mod:`mapcvd.map.progress`),
``map/evaluation/*`` (episode logs), ``map/pathways`` (NEB segments,
:mod:`mapcvd.pathways.store`), ``cvd/dataset`` and ``cvd/validation``
(:class:`~mapcvd.store.cvd_dataset.RunTable`), ``cvd/nade/results`` and
``cvd/agent/results`` (array checkpoints of ``mapcvd cvd nade|agent``).
"""

from __future__ import annotations

import math

import numpy as np

from mapcvd.dashboard_panels import fmt_duration
from mapcvd.map.progress import actor_logs
from mapcvd.store import read_array_checkpoint
from mapcvd.store.cvd_dataset import RunTable
from mapcvd.store.episodes import EpisodeLog, episode_logs
from mapcvd.store.layout import (
    DATASET_PATH,
    EVALUATION_PARENT,
    NADE_RESULTS,
    PATHWAY_KIND,
    PATHWAYS_PATH,
    VALIDATION_PATH,
    agent_paths,
)
from mapcvd.store.metrics import read_metrics
from mapcvd.store.replay import fresh_group

#: The agents' results: on the campaign's own NADE-CVD, and on the reference surrogate.
AGENT_RESULTS = {"agent": agent_paths("store")[1], "agent_paper": agent_paths("paper")[1]}
#: Failed CVD runs listed one by one per table.
MAX_FAILED_RUNS = 8
#: Points kept of a history (loss, return) for sparklines.
HISTORY_POINTS = 40
_RATE_WINDOW_S = 600.0


# ----------------------------------------------------------------------- helpers
def _mean(values) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _tail(values, n: int = HISTORY_POINTS) -> list[float]:
    """The last ``n`` points of a history, or ``n`` bin means of a longer one."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size > 4 * n:
        values = np.array([chunk.mean() for chunk in np.array_split(values, n)])
    return values[-n:].tolist()


def _eta(history: dict | None, key: str, now: float, finished: float, remaining: float,
         item_s: float | None) -> tuple[float | None, str | None]:
    """Seconds left for ``remaining`` items, and how they were estimated.

    ``"rate"``: at the rate ``finished`` grew over the samples kept in ``history``
    (last 10 minutes); ``"serial"``: before there is a rate, ``remaining`` times the
    mean seconds per item ``item_s`` (an upper bound when items run in parallel).
    """
    if remaining <= 0:
        return 0.0, "rate"
    if history is not None:
        samples = [s for s in history.get(key, []) if now - s[0] <= _RATE_WINDOW_S and s[1] <= finished]
        samples.append((now, finished))
        history[key] = samples[-64:]
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        if t1 > t0 and c1 > c0:
            return remaining * (t1 - t0) / (c1 - c0), "rate"
    if item_s is not None:
        return remaining * item_s, "serial"
    return None, None


def _warn(snap: dict, level: str, source: str, message: str) -> None:
    snap["warnings"].append({"level": level, "source": source, "message": message})


def _group(root, path: str):
    """The group at ``path`` if it exists and its writer has finished creating it."""
    node = fresh_group(root, path)
    return node if node is not None and node.attrs.get("kind") is not None else None


# -------------------------------------------------------------------------- MAP
def _training_start(actors: list[dict]) -> float | None:
    """When the current ``map train`` run started, from the actors' statuses (None: unknown).

    Each actor's status holds its actions and actions per second since its app started,
    and the time it was written, so ``time - actions / actions_per_s`` is when the app
    started. Statuses written before the newest start belong to an earlier run (a
    resumed store) and are left out.
    """
    starts = [(a["updated"] - a["actions"] / a["actions_per_s"], a["updated"]) for a in actors
              if a.get("updated") and a.get("actions") and a.get("actions_per_s")]
    if not starts:
        return None
    newest = max(s for s, _ in starts)
    return min(s for s, t in starts if t >= newest)


def _episode_totals(log: EpisodeLog, history: dict | None) -> dict:
    """Best progress, failed episodes and summed episode seconds of an actor's log.

    Only the three summary columns needed are read, and with ``history`` only the
    episodes committed since the previous snapshot (logs only grow).
    """
    cache = {} if history is None else history.setdefault("episode_totals", {})
    n = len(log)
    totals = cache.get(log.path)
    if totals is None or totals["n"] > n:
        totals = {"n": 0, "best": None, "failed": 0, "seconds": 0.0, "timed": 0}
    start = totals["n"]
    if n > start:
        fields = set(log.group.attrs.get("summary_fields", []))
        cols = {k: np.asarray(log.group[f"summary/{k}"][start:n], dtype=np.float64)
                for k in ("progress_A", "failed", "seconds") if k in fields}
        progress = cols.get("progress_A", np.zeros(0))
        progress = progress[np.isfinite(progress)]
        if progress.size:
            best = float(progress.max())
            totals["best"] = best if totals["best"] is None else max(totals["best"], best)
        totals["failed"] += int(np.nansum(cols.get("failed", np.zeros(0))))
        secs = cols.get("seconds", np.zeros(0))
        secs = secs[np.isfinite(secs)]
        totals["seconds"] += float(secs.sum())
        totals["timed"] += int(secs.size)
        totals["n"] = n
    cache[log.path] = totals
    return dict(totals)


def _map_actors(root, snap: dict, now: float, history: dict | None) -> dict:
    out: dict = {}
    cfg = snap["config"].get("map", {}) if isinstance(snap["config"].get("map"), dict) else {}
    running = snap["stages"].get("map_train") == "running"
    actors = []
    for actor, log in sorted(actor_logs(root).items()):
        s = log.status
        totals = _episode_totals(log, history)
        seconds = totals["seconds"] / totals["timed"] if totals["timed"] else None
        row = {
            "id": actor, "episodes": len(log), "actions": s.get("actions"), "epsilon": s.get("epsilon"),
            "last_progress_A": s.get("last_progress_A"), "last_return": s.get("last_return"),
            "actions_per_s": s.get("actions_per_s"), "weights_version": s.get("weights_version"),
            "failures": s.get("failures", 0), "updated": s.get("time"),
            "best_progress_A": totals["best"], "failed_episodes": totals["failed"],
        }
        actors.append(row)
        if row["failures"]:
            _warn(snap, "warning", f"actor {actor}",
                  f"{row['failures']} LAMMPS failure(s) in its current run "
                  f"({row['failed_episodes']} episode(s) ended by one in all)")
        if running and row["updated"]:
            silent = now - row["updated"]
            if silent > max(300.0, 5.0 * (seconds or 0.0)):
                _warn(snap, "warning", f"actor {actor}", f"no finished episode for {fmt_duration(silent)}")
    if actors:
        out["actors"] = actors
        out["training"] = {
            "minutes": cfg.get("minutes"), "actors_configured": cfg.get("actors"),
            "episodes": sum(a["episodes"] for a in actors),
            "actions": sum(a["actions"] or 0 for a in actors),
            "actions_per_s": sum(a["actions_per_s"] or 0.0 for a in actors),
            "best_progress_A": max((a["best_progress_A"] for a in actors if a["best_progress_A"] is not None),
                                   default=None),
            "started": _training_start(actors),
        }
    status = snap["stages"].get("map_train")
    recorded = snap.get("stage_info", {}).get("map_train", {})
    if status is not None and (cfg.get("minutes") or recorded):
        if recorded.get("deadline") and recorded.get("started"):  # what this run of the driver set
            wall = float(recorded["deadline"]) - float(recorded["started"])
            start = float(recorded["started"])
        else:
            wall = 60.0 * float(cfg["minutes"])
            start = out.get("training", {}).get("started")
        if status == "done":
            elapsed, eta = wall, 0.0
        elif start is not None:
            elapsed = min(max(now - start, 0.0), wall)
            eta = min(max(start + wall - now, 0.0), wall) if status == "running" else None  # clocks may differ
        else:
            elapsed, eta = 0.0, None
        snap["progress"]["map_train"] = {"done": elapsed, "total": wall, "unit": "s", "eta_s": eta}
    return out


def _map_learner(root, snap: dict, now: float, history: dict | None) -> dict:
    metrics = read_metrics(root)
    if metrics and len(metrics["step"]):
        learner = {k: float(v[-1]) for k, v in metrics.items() if k != "step"}
        learner["updates"] = int(metrics["step"][-1])
        if "loss" in metrics:
            learner["loss_history"] = _tail(metrics["loss"])
        if learner.get("lost", 0) > 0:
            _warn(snap, "warning", "learner",
                  f"{int(learner['lost'])} transition(s) lost: actors overran the replay ring "
                  "before the learner read them (raise map.replay_capacity)")
        return {"learner": learner}
    return {}


def _map_evaluation(root, snap: dict, now: float, history: dict | None) -> dict:
    evaluation = {}
    for path in episode_logs(root, EVALUATION_PARENT):
        log = EpisodeLog(root, path)
        summary = log.summary()
        progress = summary.get("progress_A", np.zeros(0))
        evaluation[path.rsplit("/", 1)[1]] = {
            "episodes": len(log), "mean_progress_A": _mean(progress),
            "best_progress_A": float(np.max(progress)) if len(progress) else None,
            "mean_return": _mean(summary.get("return", np.zeros(0))),
            "crossed": int(np.nansum(summary.get("crossed", np.zeros(0)))),
        }
    return {"evaluation": evaluation} if evaluation else {}


# -------------------------------------------------------------------------- NEB
def _neb(root, snap: dict, now: float, history: dict | None) -> dict:
    parent = fresh_group(root, PATHWAYS_PATH)
    if parent is None:
        return {}
    pathways, seconds = [], []
    for label, group in sorted(parent.groups()):
        if group.attrs.get("kind") != PATHWAY_KIND:
            continue  # e.g. the baseline episode log
        try:
            total = int(group["segments"].shape[0]) if "segments" in group else 0
            done, unconverged = 0, []
            for name, seg in sorted(group.groups()):
                if name.startswith("segment_") and "barrier_forward_eV" in seg.attrs:  # attrs are the commit
                    done += 1
                    seconds.append(seg.attrs.get("seconds"))
                    if seg.attrs.get("converged") is False:
                        unconverged.append(name)
        except (KeyError, FileNotFoundError):
            continue  # being rewritten by the pathways driver right now
        attrs = group.attrs
        pathways.append({"label": label, "segments": total, "done": done, "complete": bool(attrs.get("complete")),
                         "unconverged": unconverged})
        for name in unconverged:
            _warn(snap, "warning", f"pathway {label}", f"NEB of {name} did not converge")
    running = snap["stages"].get("map_paths") == "running"
    total = sum(p["segments"] for p in pathways)
    done = sum(p["done"] for p in pathways)
    ranking = [{"label": r.get("label"), "n_segments": r.get("n_segments"),
                "max_barrier_eV": max(r.get("barriers_eV") or [math.nan]),
                "time_scaled_days": r.get("time_scaled_days"), "converged": r.get("converged")}
               for r in (parent.attrs.get("ranking") or [])[:5] if isinstance(r, dict)]
    if not pathways and not ranking:
        return {}
    mean_segment = _mean([v for v in seconds if isinstance(v, (int, float))])
    if "map_paths" in snap["stages"] and total:
        eta, kind = _eta(history, "map_paths", now, done, total - done, mean_segment) if running else (None, None)
        snap["progress"]["map_paths"] = {"done": done, "total": total, "unit": "segments", "eta_s": eta,
                                         "eta_kind": kind}
    return {"pathways": len(pathways), "complete": sum(p["complete"] for p in pathways),
            "segments_total": total, "segments_done": done, "mean_segment_s": mean_segment,
            "segments_running": total - done if running else 0,
            "segments_waiting": 0 if running else total - done,
            "per_pathway": pathways, "ranking": ranking}


# -------------------------------------------------------------------------- CVD
def _run_table(root, snap: dict, path: str, stage: str, now: float, history: dict | None) -> dict | None:
    node = _group(root, path)
    if node is None:
        return None
    table = RunTable.open(root, path)
    counts = table.counts()
    total = table.n_runs
    failed_rows = table.rows_with("failed")
    done_rows = table.rows_with("done")
    wall = table.read("wall_seconds", done_rows) if len(done_rows) else np.zeros(0)
    failed = []
    if len(failed_rows):
        messages = table.read("message", failed_rows)
        attempts = table.read("attempts", failed_rows)
        for row, message, tries in zip(failed_rows.tolist(), messages.tolist(), attempts.tolist()):
            failed.append({"row": row, "attempts": int(tries), "message": str(message)})
    for f in failed[-MAX_FAILED_RUNS:]:
        _warn(snap, "error", f"{path} run {f['row']}",
              f"failed after {f['attempts']} attempt(s): {f['message'] or '(no message)'}")
    if len(failed) > MAX_FAILED_RUNS:
        _warn(snap, "error", path, f"{len(failed) - MAX_FAILED_RUNS} more failed run(s) not listed")
    mean_run = _mean(wall)
    out = {**counts, "total": total, "mean_run_s": mean_run, "failed_runs": failed[-MAX_FAILED_RUNS:]}
    status = snap["stages"].get(stage)
    if status is not None and total:
        finished = counts["done"] + counts["failed"]
        eta, kind = (_eta(history, stage, now, finished, counts["pending"], mean_run) if status == "running"
                     else (None, None))
        snap["progress"][stage] = {"done": counts["done"], "total": total, "unit": "runs", "eta_s": eta,
                                   "eta_kind": kind, "failed": counts["failed"]}
    return out


def _checkpoint(root, name: str):
    node = fresh_group(root, name)
    if node is None or node.attrs.get("latest") is None:
        return None
    return read_array_checkpoint(root, name)


def _cvd_tables(root, snap: dict, now: float, history: dict | None) -> dict:
    out = {}
    for key, path, stage in (("dataset", DATASET_PATH, "cvd_dataset"), ("validation", VALIDATION_PATH, "cvd_validate")):
        table = _run_table(root, snap, path, stage, now, history)
        if table is not None:
            out[key] = table
    return out


def _cvd_nade(root, snap: dict, now: float, history: dict | None) -> dict:
    nade = _checkpoint(root, NADE_RESULTS)
    if nade is None:
        return {}
    arrays, version, meta = nade
    val = np.asarray(arrays.get("val_nll", np.zeros(0)), dtype=np.float64)
    train = np.asarray(arrays.get("train_nll", np.zeros(0)), dtype=np.float64)
    return {"nade": {
        "results_version": version, "version": meta.get("nade_version"), "epochs_run": meta.get("epochs_run"),
        "best_epoch": meta.get("best_epoch"), "best_val_nll": meta.get("best_val_nll"),
        "last_train_nll": float(train[-1]) if train.size else None,
        "last_val_nll": float(val[-1]) if val.size else None,
        "mae_free_run": meta.get("mae_free_run"), "val_history": _tail(val),
    }}


def _cvd_agent(root, snap: dict, now: float, history: dict | None) -> dict:
    out = {}
    for key, path in AGENT_RESULTS.items():
        agent = _checkpoint(root, path)
        if agent is None:
            continue
        arrays, version, meta = agent
        returns = np.asarray(arrays.get("total_return", arrays.get("mean_return", np.zeros(0))), dtype=np.float64)
        expected = meta.get("expected_return") if isinstance(meta.get("expected_return"), dict) else {}
        surrogate = meta.get("surrogate") if isinstance(meta.get("surrogate"), dict) else {}
        out[key] = {
            "results_version": version, "policy_version": meta.get("policy_version"), "updates": meta.get("updates"),
            "surrogate": surrogate.get("label", "store"), "last_mean_return": float(returns[-1]) if returns.size else None,
            "expected_return": expected.get("agent"), "random_return": expected.get("random"),
            "strategy_return": expected.get("strategy"), "ratio": expected.get("ratio"),
            "dataset_max_2h": meta.get("dataset_max_2h"), "return_history": _tail(returns),
        }
    return out
