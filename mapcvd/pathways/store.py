"""Refined MAP pathways in the campaign store (written by the pathways driver alone).

Layout (arrays, never pickles; attributes are JSON)::

    map/pathways/                 attrs: kind="mapcvd-pathways", settings, ranking (list of rows), baseline
      baseline_log/               episode log of the straight drag (+goal axis only)
      <label>/                    one pathway, e.g. greedy_e0001, actor_000_e0012, baseline
                                  attrs (last, the commit): kind="mapcvd-pathway", complete=True, source,
                                  episode, length_A, raw_barriers_eV, barriers_eV, converged, status,
                                  converged_segments, time_s, time_scaled_s, temperature_K, distance_A
        raw_energy       (F,)     frame energies, eV (frame 0 single point, then after each action)
        raw_coordinate   (F,)     guided atom along the goal axis, A
        segments         (S, 3)   int64 frames of each segment's minimum, maximum, minimum
        segment_000/              energies (I,), coordinate (I,), positions (I, n_atoms, 3);
                                  attrs (last): barrier_forward_eV, barrier_backward_eV, converged,
                                  steps, fmax_eV_A, seconds, driver, ts_index, climbed
        refined_energy   (M,)     stitched NEB profile, eV
        refined_coordinate (M,)   guided atom along the goal axis, A
        refined_segment  (M,)     int64 segment of each point
        refined_ts       (S,)     int64 index of each transition state in the refined arrays

A pathway is rewritten: its group is first marked incomplete, then the arrays are
written, then its attributes with ``complete=True`` (commit after data); readers use
only complete pathways. A rerun from the same source (episode, segments, NEB settings)
keeps the segments already refined; any other source starts the pathway from scratch.

The ranking's rows are ordered by class, then TST time (:func:`rank_key`): a pathway
with no barrier above the prominence first, converged ones next, those with an
unconverged band apart at the end (:func:`pathway_status`, :func:`row_status`).
"""

from __future__ import annotations

import json
import math

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.layout import PATHWAY_KIND, PATHWAYS_KIND, PATHWAYS_PATH

#: Episode log of the straight-drag baseline (written by the pathways driver).
BASELINE_LOG = f"{PATHWAYS_PATH}/baseline_log"

_SEGMENT_ARRAYS = ("energies", "coordinate", "positions")


def _array(group: zarr.Group, name: str, data) -> None:
    data = np.asarray(data)
    group.create_array(name, data=data, chunks=tuple(max(int(n), 1) for n in data.shape), overwrite=True)


def pathway_path(label: str) -> str:
    """Store path of the pathway ``label``."""
    return f"{PATHWAYS_PATH}/{label}"


def begin_pathway(root: zarr.Group, label: str, raw_energy, raw_coordinate, segments,
                  *, source: dict | None = None) -> dict[int, dict]:
    """Start (or restart) pathway ``label``: write its raw profile and segments.

    With ``source`` (JSON-able: the episode, its segments and the NEB settings), a
    pathway stored before from the same source keeps its refined segments, and they
    are returned (index -> the result :func:`write_segment` stored), so that a run
    stopped midway does not refine them again. Otherwise what was there is dropped and
    nothing is returned.
    """
    path = pathway_path(label)
    parent = root.require_group(PATHWAYS_PATH)
    source = None if source is None else json.loads(json.dumps(source))
    kept: dict[int, dict] = {}
    if label in parent:
        if source is not None and parent[label].attrs.get("source_key") == source:
            kept = _stored_segments(parent[label], len(np.asarray(segments).reshape(-1, 3)))
        else:
            del parent[label]
    group = root.require_group(path)
    group.update_attributes({"kind": PATHWAY_KIND, "complete": False, "source_key": source})
    _array(group, "raw_energy", np.asarray(raw_energy, dtype=np.float64))
    _array(group, "raw_coordinate", np.asarray(raw_coordinate, dtype=np.float64))
    _array(group, "segments", np.asarray(segments, dtype=np.int64).reshape(-1, 3))
    return kept


def _stored_segments(group: zarr.Group, n_segments: int) -> dict[int, dict]:
    """The committed segments of a pathway group (attributes present), as :func:`write_segment` got them."""
    kept = {}
    for k in range(n_segments):
        seg = group.get(f"segment_{k:03d}")
        if seg is None or "barrier_forward_eV" not in seg.attrs:  # absent, or cut before its commit
            continue
        kept[k] = {**dict(seg.attrs), **{name: np.asarray(seg[name][...]) for name in _SEGMENT_ARRAYS}}
    return kept


def write_segment(root: zarr.Group, label: str, index: int, result: dict) -> None:
    """Store one refined segment (arrays first, its attributes last)."""
    group = root.require_group(f"{pathway_path(label)}/segment_{index:03d}")
    for name in _SEGMENT_ARRAYS:
        _array(group, name, np.asarray(result[name], dtype=np.float64))
    group.update_attributes({k: result[k] for k in ("barrier_forward_eV", "barrier_backward_eV", "converged", "steps",
                                                    "fmax_eV_A", "seconds", "driver", "ts_index",
                                                    "climbed")})


def finish_pathway(root: zarr.Group, label: str, stitched: dict, attrs: dict) -> None:
    """Write the stitched profile, then the pathway's attributes with ``complete=True`` (the commit)."""
    group = root[pathway_path(label)]
    _array(group, "refined_energy", np.asarray(stitched["energy"], dtype=np.float64))
    _array(group, "refined_coordinate", np.asarray(stitched["coordinate"], dtype=np.float64))
    _array(group, "refined_segment", np.asarray(stitched["segment"], dtype=np.int64))
    _array(group, "refined_ts", np.asarray(stitched["ts"], dtype=np.int64))
    group.update_attributes({**attrs, "kind": PATHWAY_KIND, "complete": True})


def write_ranking(root: zarr.Group, ranking: list[dict], settings: dict, baseline: dict | None) -> None:
    """The ranking table and the settings of the run, in the attributes of ``map/pathways``."""
    group = root.require_group(PATHWAYS_PATH)
    group.update_attributes({"kind": PATHWAYS_KIND, "ranking": ranking, "settings": settings,
                             "baseline": baseline})


#: Order of the ranking's classes: a pathway with no barrier above the prominence is the
#: fastest there is; a band that stopped unconverged has no trustworthy barrier, so its
#: pathway ranks after every converged one, never among them.
STATUS_ORDER = ("no barrier", "converged", "unconverged")


def pathway_status(results: list[dict]) -> str:
    """``"no barrier"`` (no segment), ``"converged"`` (every band) or ``"unconverged"``."""
    if not results:
        return "no barrier"
    return "converged" if all(r["converged"] for r in results) else "unconverged"


def rank_key(row: dict) -> tuple:
    """Sort key of a ranking row: its class (:data:`STATUS_ORDER`), then its TST time, then its label."""
    seconds = row["time_scaled_s"]
    return (STATUS_ORDER.index(row["status"]), math.inf if seconds is None else seconds, row["label"])


def candidate_key(raw_scaled_s: float, n_segments: int, label: str) -> tuple:
    """Sort key of a candidate episode before NEB: its raw TST time (0 with no barrier), then its label.

    A candidate with no barrier above the prominence is the fastest (nothing slows it)
    and costs no band, so it is chosen first, as :func:`rank_key` ranks it first.
    """
    return (0.0 if n_segments == 0 else raw_scaled_s, label)


def row_status(row: dict) -> str:
    """The class of a stored ranking row; rows written before ``status`` existed derive it."""
    if row.get("status"):
        return row["status"]
    if not row.get("n_segments"):
        return "no barrier"
    return "converged" if row.get("converged") else "unconverged"


def converged_share(rows: list[dict]) -> tuple[int, int]:
    """(converged segments, segments) over ranking rows (the straight drag's included when passed)."""
    total = sum(int(r.get("n_segments", 0)) for r in rows)
    done = sum(int(r.get("converged_segments", r.get("n_segments", 0) if r.get("converged") else 0)) for r in rows)
    return done, total


def read_pathway(root: zarr.Group, label: str) -> dict:
    """A complete pathway: its attributes, arrays and segments (``segments_data``: list of dicts)."""
    try:
        group = root[pathway_path(label)]
    except KeyError:
        raise StoreError(f"no pathway {label!r} in the store") from None
    attrs = dict(group.attrs)
    if not attrs.get("complete"):
        raise StoreError(f"pathway {label!r} in the store is incomplete")
    out = {"attrs": attrs}
    for name in ("raw_energy", "raw_coordinate", "segments", "refined_energy", "refined_coordinate",
                 "refined_segment", "refined_ts"):
        out[name] = np.asarray(group[name][...])
    out["segments_data"] = []
    for k in range(len(out["segments"])):
        seg = group[f"segment_{k:03d}"]
        out["segments_data"].append({"attrs": dict(seg.attrs), "energies": np.asarray(seg["energies"][...]),
                                     "coordinate": np.asarray(seg["coordinate"][...]),
                                     "positions": np.asarray(seg["positions"][...])})
    return out


def read_ranking(root: zarr.Group) -> dict:
    """``ranking``, ``settings`` and ``baseline`` of the last ``map paths`` run (empty when none)."""
    try:
        group = root[PATHWAYS_PATH]
    except KeyError:
        return {"ranking": [], "settings": {}, "baseline": None}
    attrs = dict(group.attrs)
    return {"ranking": attrs.get("ranking", []), "settings": attrs.get("settings", {}),
            "baseline": attrs.get("baseline")}
