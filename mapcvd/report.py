"""``mapcvd campaign report``: one HTML page of a campaign store, its figures and a summary.

Reads the store only (DESIGN.md, layer 6), so it works on a finished campaign or one
still running. What the store holds decides what the page shows:

* MAP: training curves of the actors (:func:`mapcvd.map.plots.plot_training_curves`),
  greedy vs random evaluation, the refined pathways and their TST times with their
  profiles (:func:`mapcvd.pathways.report.write_report`);
* CVD: NADE-CVD loss and held-out predictions, the agent's learning curve and best
  schedules, and the reactive-MD validation (:mod:`mapcvd.cvd.plots`).

Figures are PNG files beside ``index.html``; a figure that cannot be drawn is named on
the page with its error, never a crash.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["report_summary", "write_campaign_report"]


def _fmt(value, spec: str = ".4g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _checkpoint(root, name: str):
    from mapcvd.store import read_array_checkpoint  # noqa: PLC0415

    if name not in root:
        return None
    try:
        return read_array_checkpoint(root, name)
    except Exception:  # noqa: BLE001 - a checkpoint caught mid-write counts as absent
        return None


def _table(root, path: str):
    from mapcvd.store.cvd_dataset import RunTable  # noqa: PLC0415

    return RunTable.open(root, path) if path in root else None


def report_summary(root) -> dict:
    """The headline figures of a campaign store, as a JSON-safe dict.

    Returns
    -------
    dict
        ``name``, ``stages``; when stored: ``evaluation`` (policy -> episodes, mean
        progress and return), ``pathways`` (ranked rows and ``baseline``), ``nade``
        (held-out MAE per phase), ``agent`` (expected returns of agent and random
        schedules) and ``validation`` (its report).
    """
    from mapcvd.cvd.optimise import read_optimum  # noqa: PLC0415
    from mapcvd.cvd.stored import jsonable  # noqa: PLC0415
    from mapcvd.pathways.store import read_ranking  # noqa: PLC0415
    from mapcvd.store import stage_statuses  # noqa: PLC0415
    from mapcvd.store.episodes import EpisodeLog  # noqa: PLC0415
    from mapcvd.store.layout import (  # noqa: PLC0415
        DATASET_PATH,
        NADE_WEIGHTS,
        VALIDATION_PATH,
        agent_paths,
        evaluation_path,
    )

    config = dict(root.attrs.get("config") or {})
    out: dict = {"name": (config.get("campaign") or {}).get("name"), "stages": stage_statuses(root)}
    evaluation = {}
    for policy in ("greedy", "random"):
        path = evaluation_path(policy)
        if path in root:
            s = EpisodeLog(root, path).summary()
            if len(s["progress_A"]):
                evaluation[policy] = {"episodes": len(s["progress_A"]),
                                      "mean_progress_A": float(np.mean(s["progress_A"])),
                                      "mean_return": float(np.mean(s["return"]))}
    if evaluation:
        out["evaluation"] = evaluation
    ranking = read_ranking(root)
    if ranking["ranking"] or ranking["baseline"]:
        out["pathways"] = {"ranking": ranking["ranking"], "baseline": ranking["baseline"],
                           "settings": ranking["settings"]}
    nade = _checkpoint(root, NADE_WEIGHTS)
    if nade is not None:
        meta = nade[2]
        out["nade"] = {"version": nade[1], "mae_one_step": meta.get("mae_one_step"),
                       "mae_free_run": meta.get("mae_free_run"), "runs": len(meta.get("dataset_rows", []))}
    for key, kind in (("agent", "store"), ("agent_paper", "paper")):
        agent = _checkpoint(root, agent_paths(kind)[1])
        if agent is not None:
            meta = agent[2]
            optimum = read_optimum(root, kind)
            out[key] = {"version": agent[1], "surrogate": (meta.get("surrogate") or {}).get("label", "store"),
                        "dataset_max_2h": meta.get("dataset_max_2h"), **(meta.get("expected_return") or {}),
                        "optimised": None if optimum is None else optimum["mean_return"]}
    dataset = _table(root, DATASET_PATH)
    if dataset is not None:
        out["dataset"] = dataset.counts()
    validation = _table(root, VALIDATION_PATH)
    if validation is not None and validation.attrs.get("report"):
        out["validation"] = validation.attrs["report"]
    return jsonable(out)


def _figures(root, out: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Draw every figure the store supports; ``(caption, file name)`` pairs and error notes."""
    from mapcvd.cvd import plots as cvd_plots  # noqa: PLC0415
    from mapcvd.cvd.optimise import read_optimum  # noqa: PLC0415
    from mapcvd.map.plots import PANELS, plot_training_curves  # noqa: PLC0415
    from mapcvd.map.progress import actor_logs, episodes_by_epoch  # noqa: PLC0415
    from mapcvd.pathways.report import write_report  # noqa: PLC0415
    from mapcvd.store.layout import DATASET_PATH, NADE_RESULTS, PATHWAYS_PATH, VALIDATION_PATH, agent_paths  # noqa: PLC0415

    figures: list[tuple[str, str]] = []
    notes: list[str] = []

    def draw(caption: str, make: Callable[[], list]) -> None:
        try:
            for path in make():
                figures.append((caption, Path(path).relative_to(out).as_posix()))
        except Exception as exc:  # noqa: BLE001 - the page names what could not be drawn
            notes.append(f"{caption}: not drawn ({' '.join(str(exc).split()) or type(exc).__name__})")

    def training() -> list:
        logs = actor_logs(root)
        curves = {field: episodes_by_epoch(logs, field) for field in PANELS}
        if not logs or not len(curves["return"][0]):
            return []
        return [plot_training_curves({f"{len(logs)} actor(s)": curves}, out / "map_training.png",
                                     "MAP training: per-episode mean +- std over actors")]

    def pathways() -> list:
        if PATHWAYS_PATH not in root:
            return []
        files = write_report(root, out / "paths")
        return files["plots"][-1:] + files["plots"][:-1]  # the comparison first

    def nade() -> list:
        found = _checkpoint(root, NADE_RESULTS)
        if found is None:
            return []
        arrays, _, meta = found
        paths = [cvd_plots.plot_nade_loss({"train": arrays["train_nll"], "val": arrays["val_nll"],
                                           "best_epoch": meta.get("best_epoch")}, out / "nade_loss.png")]
        dataset = _table(root, DATASET_PATH)
        rows = np.asarray(arrays["val_rows"], dtype=int)[:6]
        if dataset is not None and len(rows):
            paths.append(cvd_plots.plot_trajectories(
                dataset.read("Z", rows), arrays["val_mean"][: len(rows)], np.sqrt(arrays["val_var"][: len(rows)]),
                out / "nade_trajectories.png", titles=[f"held-out run {r}" for r in rows],
                temperature=dataset.read("X", rows)[:, :, 0]))
        return paths

    def agent(kind: str) -> list:
        found = _checkpoint(root, agent_paths(kind)[1])
        if found is None:
            return []
        optimum = read_optimum(root, kind)
        return cvd_plots.agent_figures(found[0], found[2], out, tag="" if kind == "store" else f"_{kind}",
                                       optimum=None if optimum is None else optimum["mean_return"])

    def validation() -> list:
        table = _table(root, VALIDATION_PATH)
        if table is None or "nade_mean" not in table.group:
            return []
        rows = table.rows_with("done")
        if not len(rows):
            return []
        return [cvd_plots.plot_trajectories(
            table.read("Z", rows), table.group["nade_mean"][:][rows], table.group["nade_std"][:][rows],
            out / "validation_trajectories.png", titles=[f"agent schedule #{r + 1}" for r in rows],
            temperature=table.read("schedule", rows)[:, :, 0])]

    draw("MAP training", training)
    draw("MAP pathways after piecewise NEB", pathways)
    draw("NADE-CVD", nade)
    draw("REINFORCE agent on the campaign's NADE-CVD", lambda: agent("store"))
    draw("REINFORCE agent on the CVD paper's trained NADE-CVD (Fig. 3)", lambda: agent("paper"))
    draw("validation with reactive MD", validation)
    return figures, notes


def _rows_html(header: tuple[str, ...], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_html(s: dict) -> str:
    parts = ["<h2>Stages</h2>", _rows_html(("stage", "status"), sorted(s["stages"].items()))]
    if "evaluation" in s:
        parts += ["<h2>MAP: learned (greedy) vs random policy</h2>", _rows_html(
            ("policy", "episodes", "mean progress (A)", "mean return"),
            [(p, e["episodes"], _fmt(e["mean_progress_A"], ".2f"), _fmt(e["mean_return"], ".2f"))
             for p, e in s["evaluation"].items()])]
    if "pathways" in s:
        from mapcvd.pathways.store import converged_share, row_status  # noqa: PLC0415

        p = s["pathways"]
        settings = p.get("settings") or {}
        rows = [(str(k + 1), r) for k, r in enumerate(p["ranking"])] + ([("baseline", p["baseline"])]
                                                                        if p["baseline"] else [])
        parts += [f"<h2>Best pathways: TST time over {_fmt((settings.get('distance_A') or math.nan) / 10, '.3g')} nm "
                  f"at {_fmt(settings.get('temperature_K'), '.2f')} K</h2>", _rows_html(
                      ("rank", "pathway", "length (A)", "barriers raw -> NEB (eV)", "bands", "time (s)",
                       "time (days)"),
                      [(rank, r["label"], _fmt(r.get("length_A"), ".1f"),
                        ", ".join(f"{a:.2f}->{b:.2f}" for a, b in zip(r.get("raw_barriers_eV") or [],
                                                                      r.get("barriers_eV") or [])) or "none",
                        row_status(r),
                        _fmt(r.get("time_scaled_s"), ".3g"), _fmt(r.get("time_scaled_days"), ".3g"))
                       for rank, r in rows])]
        done, total = converged_share([r for _, r in rows])
        parts.append(f"<p>NEB bands converged: {done} of {total} segments"
                     + (f" ({done / total:.0%})" if total else "") + "; unconverged pathways rank after the "
                     "converged ones, their barriers are estimates.</p>")
    if "dataset" in s:
        d = s["dataset"]
        parts += ["<h2>CVD dataset</h2>", _rows_html(("done", "failed", "pending"),
                                                     [(d.get("done"), d.get("failed"), d.get("pending"))])]
    if "nade" in s:
        n = s["nade"]
        phases = sorted(set(n.get("mae_free_run") or {}) | set(n.get("mae_one_step") or {}))
        parts += [f"<h2>NADE-CVD held-out error (v{n['version']}, {n['runs']} runs)</h2>", _rows_html(
            ("phase", "MAE one stage ahead", "MAE free-running"),
            [(ph, _fmt((n.get("mae_one_step") or {}).get(ph)), _fmt((n.get("mae_free_run") or {}).get(ph)))
             for ph in phases])]
    agents = [s[k] for k in ("agent", "agent_paper") if k in s]
    if agents:
        parts += ["<h2>REINFORCE agent vs random schedules and the paper's strategy "
                  "(expected return: sum over the stages of the predicted 2H fraction)</h2>",
                  _rows_html(("surrogate", "agent", "agent (mean action)", "random", "paper's strategy",
                              "optimised schedules", "agent / random", "agent / strategy", "agent / optimised"),
                             [(a.get("surrogate"), _fmt(a.get("agent")), _fmt(a.get("agent_greedy")),
                               _fmt(a.get("random")), _fmt(a.get("strategy")), _fmt(a.get("optimised")), *_ratios(a))
                              for a in agents])]
    if "validation" in s:
        v = s["validation"]
        parts += ["<h2>Validation of the agent's schedules with reactive MD</h2>", _rows_html(
            ("schedules run", "MAE per phase", "MD return: agent", "NADE return: agent", "MD return: dataset"),
            [(len(v.get("rows_done") or []), ", ".join(f"{k} {_fmt(x)}" for k, x in (v.get("mae") or {}).items())
              or "n/a", _fmt(v.get("md_return_agent")), _fmt(v.get("nade_return_agent")),
              _fmt(v.get("md_return_dataset")))])]
    return "\n".join(parts)


def _ratios(a: dict) -> tuple[str, str, str]:
    """Agent/random, agent/strategy and agent/optimised, or why they mean nothing (no 2H in the dataset)."""
    from mapcvd.cvd.learning import no_2h  # noqa: PLC0415

    max_2h = a.get("dataset_max_2h")
    if no_2h(max_2h):
        note = f"n/a: no 2H in the campaign's dataset (largest fraction {max_2h:.3g})"
        return note, note, note
    optimised = a.get("optimised")
    share = a["agent"] / optimised if optimised and a.get("agent") is not None else None
    return _fmt(a.get("ratio"), ".3g"), _fmt(a.get("ratio_strategy"), ".3g"), _fmt(share, ".3g")


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.25em .6em}"
          "th{background:#eee}img{max-width:100%;border:1px solid #ddd;margin:.3em 0}figcaption{color:#555}")


def write_campaign_report(root, out_dir: str | Path, *, store_path: str | Path | None = None) -> dict:
    """Write ``index.html`` and the PNG figures of a campaign store into ``out_dir``.

    Parameters
    ----------
    root : zarr.Group
        Campaign root (read-only is enough).
    out_dir : str or Path
        Folder of the page and its figures (created).
    store_path : str or Path, optional
        Shown in the page's header.

    Returns
    -------
    dict
        ``html`` (the page), ``figures`` (PNG paths), ``notes`` (figures not drawn) and
        ``summary`` (:func:`report_summary`).
    """
    import time  # noqa: PLC0415

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = report_summary(root)
    figures, notes = _figures(root, out)
    title = f"mapcvd campaign {summary.get('name') or ''}".strip()
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>store {html.escape(str(store_path or root.store))}; report written "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p>", _summary_html(summary), "<h2>Figures</h2>"]
    body += [f"<figure><img src=\"{html.escape(name)}\" alt=\"{html.escape(caption)}\">"
             f"<figcaption>{html.escape(caption)}: {html.escape(name)}</figcaption></figure>"
             for caption, name in figures]
    if not figures:
        body.append("<p>no figures yet: the store holds no finished stage with results to draw</p>")
    if notes:
        body += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"]
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                    f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return {"html": str(page), "figures": [str(out / name) for _, name in figures], "notes": notes,
            "summary": summary}
