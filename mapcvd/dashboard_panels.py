"""Rich panels of the campaign dashboard (see :mod:`mapcvd.dashboard`).

Everything here draws a snapshot from :func:`mapcvd.dashboard.collect` (a plain dict)
and reads nothing else, so it can be tested headless with
``rich.console.Console(record=True)``.
"""

from __future__ import annotations

import math
import time

from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from mapcvd.cvd.learning import no_2h

__all__ = ["fmt_duration", "fmt_num", "plain_lines", "render", "sparkline"]

_STATUS_STYLE = {"pending": ("○", "dim"), "running": ("▶", "bold yellow"), "done": ("✓", "green"),
                 "failed": ("✗", "bold red")}
_BLOCKS = "▁▂▃▄▅▆▇█"
_GROUPS = (("MAP pathfinder", "map_"), ("CVD synthesis", "cvd_"))
MAX_ACTOR_ROWS = 16


# ------------------------------------------------------------------- formatting
def fmt_duration(seconds: float | None) -> str:
    """``"42 s"``, ``"3:05"`` (min:s) or ``"2:03:05"`` (h:min:s); ``"–"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def fmt_num(value, *, signed: bool = False, digits: int = 4) -> str:
    """A number in at most ``digits`` significant digits (integers whole); ``"–"`` when unknown."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e9):
        return f"{int(value):+d}" if signed else f"{int(value)}"
    return f"{value:+.{digits}g}" if signed else f"{value:.{digits}g}"


def sparkline(values, width: int = 24) -> str:
    """A one-line block chart of the last ``width`` finite values (empty when none)."""
    points = [float(v) for v in (values or []) if v is not None and math.isfinite(v)][-width:]
    if not points:
        return ""
    lo, hi = min(points), max(points)
    span = hi - lo
    return "".join(_BLOCKS[int((v - lo) / span * (len(_BLOCKS) - 1)) if span else 0] for v in points)


def _age(snapshot: dict, t: float | None) -> str:
    return "–" if t is None else f"{fmt_duration(snapshot['time'] - t)} ago"


# ---------------------------------------------------------------------- stages
def _stage_row(stage: str, status: str, progress: dict | None) -> Table:
    icon, style = _STATUS_STYLE.get(status, ("?", "magenta"))
    row = Table.grid(padding=(0, 1))
    row.add_column(width=22, no_wrap=True)
    row.add_column(width=9, no_wrap=True)
    row.add_column(width=26, no_wrap=True)
    row.add_column(no_wrap=True)
    bar, text = Text(""), Text("")
    if progress is not None and progress.get("total"):
        finished_style = "red" if status == "failed" else "green"
        bar = ProgressBar(total=float(progress["total"]), completed=float(progress["done"]), width=24,
                          complete_style="yellow" if status == "running" else finished_style,
                          finished_style=finished_style)
        if progress["unit"] == "s":
            text = Text(f"{fmt_duration(progress['done'])} of {fmt_duration(progress['total'])}")
        else:
            text = Text(f"{progress['done']}/{progress['total']} {progress['unit']}")
            if progress.get("failed"):
                text.append(f", {progress['failed']} failed", style="red")
        if progress.get("eta_s") is not None and status == "running":
            bound = "<= " if progress.get("eta_kind") == "serial" else ""
            text.append(f"  ETA {bound}{fmt_duration(progress['eta_s'])}", style="cyan")
    row.add_row(Text(f"{icon} {stage}", style=style), Text(status, style=style), bar, text)
    return row


def _stage_tree(snapshot: dict) -> Tree:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot["time"]))
    title = Text.assemble(("campaign ", "bold"), (snapshot.get("name") or "?", "bold cyan"),
                          f"  {snapshot.get('path') or ''}  ", (f"at {stamp}", "dim"))
    tree = Tree(title, guide_style="dim")
    stages = snapshot["stages"]
    if not stages:
        tree.add(Text("no stages recorded yet: waiting for a driver to start", style="dim"))
        return tree
    placed = set()
    for label, prefix in _GROUPS:
        names = [s for s in stages if s.startswith(prefix)]
        if names:
            branch = tree.add(Text(label, style="bold"))
            for name in names:
                branch.add(_stage_row(name, stages[name], snapshot["progress"].get(name)))
            placed.update(names)
    rest = [s for s in stages if s not in placed]
    if rest:
        branch = tree.add(Text("other", style="bold"))
        for name in rest:
            branch.add(_stage_row(name, stages[name], snapshot["progress"].get(name)))
    return tree


# ------------------------------------------------------------------------- MAP
def _actor_table(snapshot: dict) -> Table:
    actors = snapshot["map"]["actors"]
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    for name in ("actor", "episodes", "actions", "ε", "last progress Å", "best Å", "last return", "actions/s",
                 "weights", "LAMMPS failures", "updated"):
        table.add_column(name, justify="left" if name == "actor" else "right", no_wrap=True)
    for a in actors[:MAX_ACTOR_ROWS]:
        table.add_row(
            str(a["id"]), str(a["episodes"]), fmt_num(a["actions"]), fmt_num(a["epsilon"], digits=3),
            fmt_num(a["last_progress_A"], signed=True, digits=3), fmt_num(a["best_progress_A"], signed=True, digits=3),
            fmt_num(a["last_return"], signed=True, digits=3), fmt_num(a["actions_per_s"], digits=3),
            "–" if a["weights_version"] is None else f"v{a['weights_version']}",
            Text(str(a["failures"]), style="red" if a["failures"] else ""), _age(snapshot, a["updated"]))
    t = snapshot["map"]["training"]
    if len(actors) > MAX_ACTOR_ROWS:
        table.add_row(f"+{len(actors) - MAX_ACTOR_ROWS} more", "", "", "", "", "", "", "", "", "", "", style="dim")
    table.add_row("all", str(t["episodes"]), fmt_num(t["actions"]), "", "", fmt_num(t["best_progress_A"], signed=True,
                  digits=3), "", fmt_num(t["actions_per_s"], digits=3), "", "", "", style="bold")
    return table


def _learner_panel(snapshot: dict) -> Panel:
    learner = snapshot["map"].get("learner")
    if not learner:
        return Panel(Text("waiting for transitions", style="dim"), title="MAP learner", title_align="left")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column(style="cyan")
    grid.add_row("updates", fmt_num(learner["updates"]), "")
    grid.add_row("loss", fmt_num(learner.get("loss")), sparkline(learner.get("loss_history")))
    grid.add_row("replay size", fmt_num(learner.get("replay_size")), "")
    grid.add_row("samples/s", fmt_num(learner.get("samples_per_s")), "")
    grid.add_row("weights", f"v{fmt_num(learner.get('weights_version'))}", "")
    grid.add_row("ingested", fmt_num(learner.get("ingested")), "")
    lost = learner.get("lost") or 0
    grid.add_row("lost", Text(fmt_num(learner.get("lost")), style="red" if lost else ""), "")
    grid.add_row("beta", fmt_num(learner.get("beta"), digits=3), "")
    return Panel(grid, title="MAP learner", title_align="left")


def _evaluation_panel(snapshot: dict) -> Panel:
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    for name in ("policy", "episodes", "mean progress Å", "best Å", "crossed", "mean return"):
        table.add_column(name, justify="left" if name == "policy" else "right", no_wrap=True)
    for policy, e in snapshot["map"]["evaluation"].items():
        table.add_row(policy, str(e["episodes"]), fmt_num(e["mean_progress_A"], signed=True, digits=3),
                      fmt_num(e["best_progress_A"], signed=True, digits=3), str(e["crossed"]),
                      fmt_num(e["mean_return"], signed=True, digits=3))
    return Panel(table, title="MAP evaluation", title_align="left")


def _side_by_side(left, right=None) -> Table:
    """``left`` in a fixed-width column, ``right`` (when given) in the rest of the line."""
    grid = Table.grid(expand=True, padding=(0, 1))
    if right is None:
        grid.add_column(ratio=1)
        grid.add_row(left)
        return grid
    grid.add_column(width=46)
    grid.add_column(ratio=1)
    grid.add_row(left, right)
    return grid


# ------------------------------------------------------------------ NEB and CVD
def _neb_panel(snapshot: dict) -> Panel:
    neb = snapshot["neb"]
    head = Text.assemble(("NEB segments ", "bold"), f"{neb['segments_done']} done, ",
                         (f"{neb['segments_running']} running", "yellow" if neb["segments_running"] else ""),
                         f", {neb['segments_total']} in all; {neb['complete']} of {neb['pathways']} pathways complete")
    parts = [head]
    if neb["ranking"]:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for name in ("pathway", "segments", "max barrier eV", "time (days)", "converged"):
            table.add_column(name, justify="left" if name == "pathway" else "right")
        for r in neb["ranking"]:
            table.add_row(str(r["label"]), fmt_num(r["n_segments"]), fmt_num(r["max_barrier_eV"], digits=3),
                          fmt_num(r["time_scaled_days"], digits=3),
                          {True: "yes", False: "no"}.get(r["converged"], "–"))
        parts.append(table)
    return Panel(Group(*parts), title="NEB pathways", title_align="left")


def _runs_line(name: str, t: dict) -> Text:
    return Text.assemble((f"{name} ", "bold"), (f"{t['done']} done", "green"), ", ",
                         (f"{t['failed']} failed", "red" if t["failed"] else ""), ", ",
                         f"{t['pending']} pending of {t['total']} runs; mean run {fmt_duration(t['mean_run_s'])}")


def agent_comparison(a: dict) -> str:
    """An agent's expected return against random schedules and the paper's strategy, in words.

    When the campaign's own dataset formed no 2H the ratio is not printed: it would be a
    ratio of two noises around 0.
    """
    text = (f"expected return {fmt_num(a['expected_return'])} vs random {fmt_num(a['random_return'])}"
            + (f", paper's strategy {fmt_num(a['strategy_return'])}" if a.get("strategy_return") is not None else ""))
    max_2h = a.get("dataset_max_2h")
    if no_2h(max_2h):
        return text + f" (no 2H in the dataset: largest fraction {fmt_num(max_2h)}; not a result)"
    return text + f" (x{fmt_num(a['ratio'], digits=3)})"


def _cvd_panel(snapshot: dict) -> Panel:
    cvd = snapshot["cvd"]
    parts = []
    for key, name in (("dataset", "dataset"), ("validation", "validation")):
        if cvd.get(key):
            parts.append(_runs_line(name, cvd[key]))
    n = cvd.get("nade")
    if n:
        parts.append(Text.assemble(("NADE-CVD ", "bold"), f"v{fmt_num(n['version'])}: {fmt_num(n['epochs_run'])} epochs, "
                                   f"best {fmt_num(n['best_epoch'])} (val NLL {fmt_num(n['best_val_nll'])}); "
                                   f"last train {fmt_num(n['last_train_nll'])}, val {fmt_num(n['last_val_nll'])} ",
                                   (sparkline(n["val_history"]), "cyan")))
    for key in ("agent", "agent_paper"):
        a = cvd.get(key)
        if a:
            parts.append(Text.assemble((f"agent ({a.get('surrogate', 'store')}) ", "bold"),
                                       f"{fmt_num(a['updates'])} updates, last mean return "
                                       f"{fmt_num(a['last_mean_return'])} ", (sparkline(a["return_history"]), "cyan"),
                                       f"; {agent_comparison(a)}"))
    return Panel(Group(*parts), title="CVD synthesis", title_align="left")


def _warnings_panel(snapshot: dict) -> Panel:
    warnings = snapshot["warnings"]
    if not warnings:
        return Panel(Text("none", style="green"), title="Warnings and errors", title_align="left", border_style="green")
    lines = [Text.assemble((f"{w['level'].upper():8s}", "bold red" if w["level"] == "error" else "yellow"),
                           (f"{w['source']}: ", "bold"), w["message"]) for w in warnings]
    border = "red" if any(w["level"] == "error" for w in warnings) else "yellow"
    return Panel(Group(*lines), title="Warnings and errors", title_align="left", border_style=border)


# ---------------------------------------------------------------- plain lines
def _progress_text(p: dict, status: str) -> str:
    if p["unit"] == "s":
        text = f"{fmt_duration(p['done'])} of {fmt_duration(p['total'])}"
    else:
        text = f"{p['done']}/{p['total']} {p['unit']}"
    if p["total"]:
        text += f" ({100.0 * p['done'] / p['total']:.0f}%)"
    if p.get("eta_s") is not None and status == "running":
        text += f", ETA {'<= ' if p.get('eta_kind') == 'serial' else ''}{fmt_duration(p['eta_s'])}"
    return text


def plain_lines(snapshot: dict) -> list[str]:
    """Plain log lines of a snapshot (no colour, no layout), for batch jobs and pipes."""
    stamp = time.strftime("%H:%M:%S", time.localtime(snapshot["time"]))
    lines = [f"campaign {snapshot.get('name') or '?'} ({snapshot.get('path') or 'store'}) at {stamp}"]
    if not snapshot["stages"]:
        lines.append("stages: none recorded yet")
    for stage, status in snapshot["stages"].items():
        p = snapshot["progress"].get(stage)
        lines.append(f"stage {stage}: {status}" + (f", {_progress_text(p, status)}" if p else ""))
    m = snapshot.get("map", {})
    actors = m.get("actors", [])
    for a in actors[:MAX_ACTOR_ROWS]:
        lines.append(
            f"MAP actor {a['id']}: {a['episodes']} episodes, {fmt_num(a['actions'])} actions, "
            f"eps {fmt_num(a['epsilon'])}, last progress {fmt_num(a['last_progress_A'], signed=True)} A, "
            f"last return {fmt_num(a['last_return'], signed=True)}, {fmt_num(a['actions_per_s'])} actions/s, "
            f"weights v{fmt_num(a['weights_version'])}, {a['failures']} LAMMPS failures")
    if len(actors) > MAX_ACTOR_ROWS:
        lines.append(f"MAP actors: {len(actors) - MAX_ACTOR_ROWS} more not listed")
    if actors:
        t = m["training"]
        lines.append(f"MAP training: {len(actors)} actors, {t['episodes']} episodes, {fmt_num(t['actions'])} actions, "
                     f"{fmt_num(t['actions_per_s'])} actions/s, best progress "
                     f"{fmt_num(t['best_progress_A'], signed=True)} A")
    learner = m.get("learner")
    if learner:
        lines.append(
            f"MAP learner: {learner['updates']} updates, loss {fmt_num(learner.get('loss'))}, "
            f"replay {fmt_num(learner.get('replay_size'))}, {fmt_num(learner.get('samples_per_s'))} samples/s, "
            f"weights v{fmt_num(learner.get('weights_version'))}, lost {fmt_num(learner.get('lost'))}")
    elif actors:
        lines.append("MAP learner: waiting for transitions")
    for policy, e in m.get("evaluation", {}).items():
        lines.append(f"MAP evaluation {policy}: {e['episodes']} episodes, mean progress "
                     f"{fmt_num(e['mean_progress_A'], signed=True)} A (best {fmt_num(e['best_progress_A'], signed=True)}"
                     f" A), mean return {fmt_num(e['mean_return'], signed=True)}, {e['crossed']} crossed")
    neb = snapshot.get("neb")
    if neb:
        lines.append(f"NEB segments: {neb['segments_done']} of {neb['segments_total']} done, "
                     f"{neb['segments_running']} running; {neb['complete']} of {neb['pathways']} pathways complete")
        for r in neb["ranking"][:3]:
            lines.append(f"NEB pathway {r['label']}: {fmt_num(r['n_segments'])} segments, max barrier "
                         f"{fmt_num(r['max_barrier_eV'])} eV, time {fmt_num(r['time_scaled_days'])} days")
    cvd = snapshot.get("cvd", {})
    for key in ("dataset", "validation"):
        t = cvd.get(key)
        if t:
            lines.append(f"CVD {key}: {t['done']} done, {t['failed']} failed, {t['pending']} pending of {t['total']} "
                         f"runs (mean run {fmt_duration(t['mean_run_s'])})")
    if cvd.get("nade"):
        n = cvd["nade"]
        lines.append(f"CVD NADE v{fmt_num(n['version'])}: {fmt_num(n['epochs_run'])} epochs, best epoch "
                     f"{fmt_num(n['best_epoch'])}, validation NLL {fmt_num(n['best_val_nll'])} "
                     f"(last train {fmt_num(n['last_train_nll'])}, val {fmt_num(n['last_val_nll'])})")
    for key in ("agent", "agent_paper"):
        a = cvd.get(key)
        if a:
            lines.append(f"CVD agent ({a.get('surrogate', 'store')}): {fmt_num(a['updates'])} updates, last mean "
                         f"return {fmt_num(a['last_mean_return'])}; {agent_comparison(a)}")
    for w in snapshot["warnings"]:
        lines.append(f"{w['level'].upper()}: {w['source']}: {w['message']}")
    return lines


# ----------------------------------------------------------------------- render
def render(snapshot: dict) -> Group:
    """The whole dashboard of a snapshot as one rich renderable.

    Parameters
    ----------
    snapshot : dict
        From :func:`mapcvd.dashboard.collect`.

    Returns
    -------
    rich.console.Group
        Panels "Stages", "MAP actors", "MAP learner", "MAP evaluation", "NEB pathways",
        "CVD synthesis" (those with data) and "Warnings and errors" (always).
    """
    parts = [Panel(_stage_tree(snapshot), title="Stages", title_align="left")]
    m = snapshot.get("map") or {}
    if m.get("actors"):
        parts.append(Panel(_actor_table(snapshot), title="MAP actors", title_align="left"))
    side = []
    if m.get("actors") or m.get("learner"):
        side.append(_learner_panel(snapshot))
    if m.get("evaluation"):
        side.append(_evaluation_panel(snapshot))
    if side:
        parts.append(_side_by_side(*side))
    if snapshot.get("neb"):
        parts.append(_neb_panel(snapshot))
    if snapshot.get("cvd"):
        parts.append(_cvd_panel(snapshot))
    parts.append(_warnings_panel(snapshot))
    return Group(*parts)
