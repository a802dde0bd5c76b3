"""Figures of the CVD learning campaign (PNG, matplotlib's Agg canvas, no pyplot).

The figures follow Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3: NADE-CVD predictions against reactive MD per stage
(their Fig. 2b and 3b), the agent's learning curve and schedules (Fig. 3a) and the
distribution of the 2H fraction for low and high initial S2 (Fig. 3c).

Every function writes one PNG and returns its path. Figures are built on
:class:`matplotlib.figure.Figure` with the Agg canvas, so no global backend or GUI
is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "agent_figures",
    "plot_fig3",
    "plot_initial_s2",
    "plot_learning_curve",
    "plot_nade_loss",
    "plot_optimum",
    "plot_schedules",
    "plot_trajectories",
]

PHASE_NAMES = ("2H", "1T", "defect")
PHASE_COLOURS = ("tab:blue", "tab:orange", "tab:grey")
VARIABLE_LABELS = ("T (K)", "S2 molecules", "H2 molecules", "H2S molecules")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path


def _grid(n: int, cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return -(-n // cols), cols


def plot_nade_loss(history: dict, path) -> Path:
    """Training and validation NLL per epoch, with the restored best epoch marked."""
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot()
    ax.plot(history["train"], label="train")
    ax.plot(history["val"], label="validation")
    best = history.get("best_epoch", -1)
    if best is not None and best >= 0:
        ax.axvline(best, color="k", lw=0.8, ls=":", label=f"best epoch {best}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Gaussian NLL per entry")
    ax.set_title("NADE-CVD training")
    ax.legend()
    return _save(fig, path)


def plot_trajectories(Z_md, mean, std, path, *, titles: Sequence[str] | None = None,
                      temperature=None, md_label: str = "reactive MD",
                      model_label: str = "NADE-CVD") -> Path:
    """Phase fractions per stage: reactive MD (markers) against the NADE prediction (lines,
    mean +- one standard deviation), one panel per run.

    Parameters
    ----------
    Z_md : array (N, S, 3)
        Reactive-MD fractions after each stage.
    mean, std : arrays (N, S, 3)
        Predicted mean and standard deviation.
    titles : N strings, optional
    temperature : array (N, S), optional
        The schedule's temperature, drawn on a second axis.
    """
    Z_md, mean, std = (np.asarray(a) for a in (Z_md, mean, std))
    n, S = Z_md.shape[:2]
    rows, cols = _grid(n)
    fig = _figure(4.2 * cols, 3.2 * rows)
    stages = np.arange(1, S + 1)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        for p, (name, colour) in enumerate(zip(PHASE_NAMES, PHASE_COLOURS)):
            ax.plot(stages, mean[i, :, p], color=colour, label=f"{name} {model_label}")
            ax.fill_between(stages, mean[i, :, p] - std[i, :, p], mean[i, :, p] + std[i, :, p],
                            color=colour, alpha=0.2, lw=0)
            ax.plot(stages, Z_md[i, :, p], "o", ms=3.5, color=colour, label=f"{name} {md_label}")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("stage")
        ax.set_ylabel("fraction of Mo")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        if temperature is not None:
            tx = ax.twinx()
            tx.plot(stages, np.asarray(temperature)[i], color="tab:red", lw=0.8, ls="--")
            tx.set_ylabel("T (K)", color="tab:red", fontsize=8)
            tx.tick_params(axis="y", labelsize=7, colors="tab:red")
        if i == 0:
            ax.legend(fontsize=6, ncol=2, loc="center left")
    return _save(fig, path)


def plot_learning_curve(mean_return, random_return: float, path, *, window: int = 100,
                        agent_return: float | None = None) -> Path:
    """The agent's mean episode return per update (raw and running mean) against the
    expected return of random schedules."""
    r = np.asarray(mean_return, dtype=np.float64)
    fig = _figure(6.0, 3.6)
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(r) + 1), r, color="tab:blue", alpha=0.3, lw=0.6, label="batch mean")
    w = max(1, min(int(window), len(r)))
    if len(r):
        smooth = np.convolve(r, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(r) + 1), smooth, color="tab:blue", label=f"running mean ({w})")
    ax.axhline(random_return, color="k", ls="--", lw=1, label=f"random schedules ({random_return:.3g})")
    if agent_return is not None:
        ax.axhline(agent_return, color="tab:green", ls=":", lw=1, label=f"agent, evaluated ({agent_return:.3g})")
    ax.set_xlabel("REINFORCE update")
    ax.set_ylabel("2H return per episode")
    ax.set_title("Agent on the surrogate")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_schedules(schedules, path, *, labels: Sequence[str] | None = None, ranges=None) -> Path:
    """The four conditions per stage of a few schedules (Fig. 3a of the paper)."""
    x = np.asarray(schedules)
    fig = _figure(9.0, 5.4)
    stages = np.arange(1, x.shape[1] + 1)
    for v in range(4):
        ax = fig.add_subplot(2, 2, v + 1)
        for i in range(x.shape[0]):
            ax.step(stages, x[i, :, v], where="mid", label=None if labels is None else labels[i])
        if ranges is not None:
            ax.set_ylim(ranges.low[v] - 0.05 * ranges.span[v], ranges.high[v] + 0.05 * ranges.span[v])
        ax.set_xlabel("stage")
        ax.set_ylabel(VARIABLE_LABELS[v])
        if v == 0 and labels is not None:
            ax.legend(fontsize=7)
    fig.suptitle("Agent's best schedules")
    return _save(fig, path)


def plot_initial_s2(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path, *,
                    threshold: float | None = None, xlabel: str = "2H fraction at the last stage") -> Path:
    """Distributions of the 2H fraction for low and high initial S2 (Fig. 3c).

    ``panels``: ``(title, low_values, high_values)`` per panel.
    """
    fig = _figure(5.0 * len(panels), 3.6)
    top = max([1.0] + [float(np.max(v)) for _, lo, hi in panels for v in (lo, hi) if np.size(v)])
    bins = np.linspace(0.0, top, 21)
    cut = "" if threshold is None else f" (S2 < {threshold:.3g})"
    for j, (title, low, high) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        for values, name, colour in ((low, f"low initial S2{cut}", "tab:blue"),
                                     (high, "high initial S2", "tab:red")):
            values = np.asarray(values, dtype=np.float64)
            if values.size:
                ax.hist(values, bins=bins, density=True, alpha=0.45, color=colour,
                        label=f"{name}: n={values.size}, mean {values.mean():.3f}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("probability density")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_fig3(schedule, z, late_low, late_high, returns: dict[str, float], total_return, path, *,
              threshold: float, title: str, window: int = 100) -> Path:
    """The paper's Fig. 3 for one surrogate, with the learning curve and the returns.

    Panels: (a) the agent's best schedule, temperature and gas counts per stage, over
    (b) its predicted 2H, 1T and defect fractions; (c) the mean 2H fraction over the last
    10 stages of the agent's schedules that start with low against high S2; (d) the
    learning curve (undiscounted return per update) against the references; (e) the
    returns side by side (Rajak et al., npj Comput. Mater. 7, 108 (2021),
    doi:10.1038/s41524-021-00535-3, Fig. 3).

    Parameters
    ----------
    schedule : array (S, 4)
    z : array (S, 3)
        Predicted fractions after each stage of ``schedule``.
    late_low, late_high : arrays
        Last-10-stage mean 2H fraction of the agent's schedules with low / high initial S2.
    returns : dict
        Label -> expected return (e.g. agent, agent (mean action), random, paper strategy,
        optimum); NaN or None entries are left out.
    total_return : array
        Batch-mean undiscounted return per REINFORCE update.
    threshold : float
        The initial-S2 split of panel (c).
    """
    x, z = np.asarray(schedule, dtype=np.float64), np.asarray(z, dtype=np.float64)
    stages = np.arange(1, len(x) + 1)
    fig = _figure(14.0, 6.4)
    grid = fig.add_gridspec(2, 3)
    ax = fig.add_subplot(grid[0, 0])
    ax.step(stages, x[:, 0], where="mid", color="tab:red", lw=2)
    ax.set_ylabel("T (K)", color="tab:red")
    gas = ax.twinx()
    for v, colour in zip(range(1, 4), ("gold", "tab:green", "tab:purple")):
        gas.step(stages, x[:, v], where="mid", color=colour, lw=1, label=VARIABLE_LABELS[v])
    gas.set_ylabel("molecules")
    gas.legend(fontsize=7, loc="lower right")
    ax.set_zorder(gas.get_zorder() + 1)  # the temperature drawn over the gas counts
    ax.patch.set_visible(False)
    ax.set_ylim(0.0, 1.1 * max(float(x[:, 0].max()), 1.0))
    ax.set_title("(a) agent's best schedule", fontsize=9)
    ax = fig.add_subplot(grid[1, 0])
    for k, (name, colour) in enumerate(zip(PHASE_NAMES, PHASE_COLOURS)):
        ax.plot(stages, z[:, k], marker="o", ms=3, color=colour, label=name)
    ax.set_xlabel("stage")
    ax.set_ylabel("predicted fraction of Mo")
    ax.set_title(f"(b) predicted phases, return {z[:, 0].sum():.3g}", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[0, 1])
    values = [np.asarray(v, dtype=np.float64) for v in (late_low, late_high)]
    top = max([1.0] + [float(v.max()) for v in values if v.size])
    bins = np.linspace(0.0, top, 21)
    for v, name, colour in zip(values, (f"low initial S2 (< {threshold:.3g})", "high initial S2"),
                               ("tab:blue", "tab:red")):
        if v.size:
            ax.hist(v, bins=bins, density=True, alpha=0.45, color=colour, label=f"{name}: n={v.size}, mean {v.mean():.3f}")
    ax.set_xlabel("mean 2H fraction over the last 10 stages")
    ax.set_ylabel("probability density")
    ax.set_title("(c) agent's schedules by initial S2", fontsize=9)
    ax.legend(fontsize=7)
    shown = {k: float(v) for k, v in returns.items() if v is not None and np.isfinite(v)}
    ax = fig.add_subplot(grid[1, 1])
    r = np.asarray(total_return, dtype=np.float64)
    ax.plot(np.arange(1, len(r) + 1), r, color="tab:blue", alpha=0.3, lw=0.6)
    w = max(1, min(int(window), len(r)))
    if len(r):
        ax.plot(np.arange(w, len(r) + 1), np.convolve(r, np.ones(w) / w, mode="valid"), color="tab:blue",
                label="agent, batch mean")
    for (name, value), style in zip(shown.items(), ("-", ":", "--", "-.", (0, (1, 3)), (0, (5, 1)))):
        ax.axhline(value, color="k", ls=style, lw=0.8, label=f"{name} {value:.3g}")
    ax.set_xlabel("REINFORCE update")
    ax.set_ylabel("return (sum of 2H over stages)")
    ax.set_title("(d) learning curve", fontsize=9)
    ax.legend(fontsize=6)
    ax = fig.add_subplot(grid[:, 2])
    ax.bar(range(len(shown)), list(shown.values()), color="tab:blue")
    ax.set_xticks(range(len(shown)), list(shown), rotation=30, ha="right", fontsize=8)
    for i, value in enumerate(shown.values()):
        ax.text(i, value, f"{value:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("expected return")
    ax.set_title("(e) returns from the same starts", fontsize=9)
    fig.suptitle(title)
    return _save(fig, path)


def agent_figures(arrays: dict, meta: dict, out, *, tag: str = "", optimum: float | None = None) -> list[Path]:
    """The learning curve, the best schedules and Fig. 3 of an agent's stored results.

    ``arrays`` and ``meta`` are the agent's results checkpoint (``cvd/agent*/results``,
    written by :func:`mapcvd.cvd.learning.fit_agent`); files are named with ``tag``
    (``""`` for the campaign's own NADE-CVD, ``"_paper"`` for the paper's). Results of
    older versions (discounted returns only, no last-10-stage fractions) are drawn with
    what they hold. ``optimum`` (the optimised schedules' mean return from the same
    kind of start) is drawn as one more reference when given.
    """
    from .validation import ranges_from_dict, split_initial_s2  # noqa: PLC0415

    out = Path(out)
    expected = meta.get("expected_return") or {}
    ranges = ranges_from_dict(meta["ranges"])
    curve = arrays.get("total_return", arrays["mean_return"])
    late = arrays.get("proposal_late_2h", arrays["proposal_final_2h"])
    split = split_initial_s2(np.asarray(arrays["proposal_x0"])[:, None, :], late, ranges)
    label = (meta.get("surrogate") or {}).get("label", "store")
    returns = {"agent": expected.get("agent"), "agent (mean action)": expected.get("agent_greedy"),
               "random schedules": expected.get("random"), "paper's strategy": expected.get("strategy"),
               "optimised schedules": optimum}
    best = np.asarray(arrays["best_schedules"])
    return [
        plot_learning_curve(curve, expected.get("random", float("nan")), out / f"agent_learning_curve{tag}.png",
                            agent_return=expected.get("agent")),
        plot_schedules(best[:3], out / f"agent_best_schedules{tag}.png", ranges=ranges,
                       labels=[f"#{i + 1}: return {r:.3f}" for i, r in enumerate(arrays["best_returns"][:3])]),
        plot_fig3(best[0], arrays["best_z"][0], split["low"], split["high"], returns, curve,
                  out / f"cvd_fig3{tag}.png", threshold=split["threshold"],
                  title=f"REINFORCE agent on the {label} surrogate ({meta.get('updates')} updates)"),
    ]


def plot_optimum(schedule, z, path, *, ranges=None, title: str | None = None) -> Path:
    """Temperature, gas counts and predicted 2H/1T/defect fractions per stage of one schedule (PNG)."""
    x, z = np.asarray(schedule), np.asarray(z)
    stages = np.arange(1, len(x) + 1)
    fig = _figure(6.4, 7.2)
    ax_t, ax_g, ax_z = (fig.add_subplot(3, 1, k + 1) for k in range(3))
    ax_t.step(stages, x[:, 0], where="mid", color="tab:red")
    ax_t.set_ylabel("T (K)")
    for v, (name, colour) in enumerate(zip(("S2", "H2", "H2S"), ("tab:olive", "tab:cyan", "tab:purple")), 1):
        ax_g.step(stages, x[:, v], where="mid", color=colour, label=name)
    ax_g.set_ylabel("molecules")
    ax_g.legend(fontsize=7, ncol=3)
    if ranges is not None:
        ax_t.set_ylim(ranges.low[0] - 0.05 * ranges.span[0], ranges.high[0] + 0.05 * ranges.span[0])
        ax_g.set_ylim(min(ranges.low[1:]) * 0.9, max(ranges.high[1:]) * 1.05)
    for p, (name, colour) in enumerate(zip(PHASE_NAMES, PHASE_COLOURS)):
        ax_z.plot(stages, z[:, p], "o-", ms=3, color=colour, label=name)
    ax_z.set_ylabel("predicted fraction of Mo")
    ax_z.set_xlabel("stage")
    ax_z.legend(fontsize=7, ncol=3)
    for ax in (ax_t, ax_g, ax_z):
        ax.set_xticks(stages)
        ax.tick_params(axis="x", labelsize=7)
    ax_t.set_title(title or "optimised schedule", fontsize=9)
    return _save(fig, path)
