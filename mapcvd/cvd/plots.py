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
    "plot_initial_s2",
    "plot_learning_curve",
    "plot_nade_loss",
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
    ax.set_ylabel("expected discounted 2H return")
    ax.set_title("Agent on NADE-CVD")
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
    bins = np.linspace(0.0, 1.0, 21)
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
