"""Files of ``mapcvd map paths``: the ranking table, Fig. 3-like profiles, transition states.

For each refined pathway (MAP, Chen et al., seed 000, Fig. 3): the energy profile of
the learned pathway as played (MD frames under the tether) and after piecewise NEB
(Henkelman et al. 2000 climbing image on each segment), against the guided atom's
coordinate along the goal axis, the transition states marked; and, for each
transition state, a structure file carrying per-atom displacements from its segment's
start and the guided atom's nearest Si (:func:`mapcvd.pathways.neb_output.annotate_transition_state`).
Everything is read from the store (:mod:`mapcvd.pathways.store`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from mapcvd.pathways.neb_output import _agg, annotate_transition_state
from mapcvd.pathways.store import converged_share, read_pathway, read_ranking
from mapcvd.store.atoms import read_atoms
from mapcvd.store.layout import MAP_STRUCTURE_PATH

_COLUMNS = ("rank", "label", "source", "episode", "length_A", "n_segments", "raw_barriers_eV", "barriers_eV",
            "status", "converged", "converged_segments", "time_s", "time_scaled_s", "time_scaled_days")


def _row(rank: str, attrs: dict) -> dict:
    row = {"rank": rank, **{k: attrs.get(k) for k in _COLUMNS if k != "rank"}}
    for key in ("raw_barriers_eV", "barriers_eV"):
        row[key] = " ".join(f"{b:.4f}" for b in attrs.get(key, []))
    return row


def plot_pathway(data: dict, path: Path, title: str) -> Path:
    """Two panels: the raw profile with its segments, and the stitched NEB profile with transition states."""
    plt = _agg()
    raw_x, raw_e = data["raw_coordinate"], data["raw_energy"]
    x0, e0 = raw_x[0], raw_e[0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    top.plot(raw_x - x0, raw_e - e0, "o-", color="tab:gray", markersize=3, label="MAP pathway (MD frames)")
    for start, peak, end in data["segments"]:
        top.axvspan(raw_x[start] - x0, raw_x[end] - x0, color="tab:orange", alpha=0.12)
        top.plot([raw_x[peak] - x0], [raw_e[peak] - e0], "^", color="tab:orange")
    top.set_ylabel("E - E(frame 0) (eV)")
    top.set_title(f"{title}: before piecewise NEB ({len(data['segments'])} segments)")
    top.legend(loc="best")
    ref_x, ref_e = data["refined_coordinate"], data["refined_energy"]
    if len(ref_e):
        base = ref_e[0]
        bottom.plot(ref_x - x0, ref_e - base, "o-", color="tab:blue", markersize=3, label="after piecewise NEB")
        ts = data["refined_ts"]
        bottom.plot(ref_x[ts] - x0, ref_e[ts] - base, "*", color="tab:red", markersize=13, label="transition states")
        for k, seg in enumerate(data["segments_data"]):
            i = ts[k]
            bottom.annotate(f"{seg['attrs']['barrier_forward_eV']:.2f} eV", (ref_x[i] - x0, ref_e[i] - base),
                            textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
        bottom.legend(loc="best")
    else:
        bottom.text(0.5, 0.5, "no segment above the prominence", ha="center", transform=bottom.transAxes)
    attrs = data["attrs"]
    days = attrs.get("time_scaled_days")
    when = "n/a" if days is None else f"{days:.3g} days"
    bottom.set_title(f"after piecewise NEB: {when} over {attrs['distance_A'] / 10:g} nm at "
                     f"{attrs['temperature_K']:.0f} K")
    bottom.set_xlabel("guided atom along the goal axis (A from the start)")
    bottom.set_ylabel("E - E(first minimum) (eV)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_comparison(curves: dict[str, dict], path: Path) -> Path:
    """Stitched NEB profiles of several pathways (the best learned ones and the baseline) on one axis."""
    plt = _agg()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, data in curves.items():
        e, x = data["refined_energy"], data["refined_coordinate"]
        if len(e):
            style = "--" if label == "baseline" else "-"
            ax.plot(x - data["raw_coordinate"][0], e - e[0], style, marker="o", markersize=3, label=label)
            ts = data["refined_ts"]
            ax.plot(x[ts] - data["raw_coordinate"][0], e[ts] - e[0], "*", color="tab:red", markersize=10)
    ax.set_xlabel("guided atom along the goal axis (A from the start)")
    ax.set_ylabel("E - E(first minimum) (eV)")
    ax.set_title("pathways after piecewise NEB (transition states: stars)")
    if ax.get_legend_handles_labels()[0]:  # pathways without a refined segment draw nothing
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(root, out_dir: str | Path) -> dict:
    """Write the table (CSV, JSON), the plots and the transition states of the last ``map paths`` run.

    Returns
    -------
    dict
        ``table`` (CSV path), ``json``, ``plots`` (paths), ``transition_states`` (paths).
    """
    import ase.io  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stored = read_ranking(root)
    entries = [(str(k + 1), r) for k, r in enumerate(stored["ranking"])]
    if stored["baseline"]:
        entries.append(("baseline", stored["baseline"]))
    template, attrs = read_atoms(root, MAP_STRUCTURE_PATH)
    guided = int(attrs["guided"][0]) if attrs.get("guided") else None
    rows, plots, structures, curves = [], [], [], {}
    for rank, row in entries:
        rows.append(_row(rank, row))
        data = read_pathway(root, row["label"])
        plots.append(str(plot_pathway(data, out / f"profile_{row['label']}.png", row["label"])))
        if rank in ("1", "2", "3", "baseline"):
            curves[row["label"]] = data
        for k, seg in enumerate(data["segments_data"]):
            positions, ts = seg["positions"], int(seg["attrs"]["ts_index"])
            atoms = annotate_transition_state(template, positions[ts], positions[0], guided,
                                              energy=float(seg["energies"][ts]))
            atoms.info.update({"pathway": row["label"], "segment": k,
                               "barrier_forward_eV": float(seg["attrs"]["barrier_forward_eV"]),
                               "converged": bool(seg["attrs"]["converged"])})
            path = out / f"ts_{row['label']}_seg{k:02d}.extxyz"
            ase.io.write(path, atoms, format="extxyz")
            structures.append(str(path))
    plots.append(str(plot_comparison(curves, out / "comparison.png")))
    table = out / "paths.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    summary = out / "paths.json"
    done, total = converged_share([row for _, row in entries])
    summary.write_text(json.dumps({"ranking": stored["ranking"], "baseline": stored["baseline"],
                                   "settings": stored["settings"],
                                   "converged_segments": done, "segments": total}, indent=2) + "\n")
    return {"table": str(table), "json": str(summary), "plots": plots, "transition_states": structures}
