"""Figures of MAP training: the paper's Fig. 2 curves (final x and total reward per epoch).

Chen et al. (MAP, seed 000) compare runs with N = 1, 4 and 16 actors, and runs with one
reward term switched off, by the agent's final x coordinate and its total reward per
epoch, as mean +- standard deviation over the actors of a run. Matplotlib with the Agg
backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The two panels: summary field of the episode log -> axis label.
PANELS = {"progress_A": "final x travelled (A)", "return": "total reward"}


def plot_training_curves(runs: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]], path: str | Path,
                         title: str) -> Path:
    """Write a two-panel PNG of per-epoch mean +- std curves.

    Parameters
    ----------
    runs
        Label (e.g. ``"N = 4"``) -> panel field (:data:`PANELS`) -> ``(epochs, mean, std)``.
    path
        Output PNG.
    title
        Figure title.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(PANELS), figsize=(11, 4), constrained_layout=True)
    for ax, (field, label) in zip(axes, PANELS.items()):
        for name, curves in runs.items():
            epochs, mean, std = curves[field]
            if len(epochs) == 0:
                continue
            (line,) = ax.plot(epochs, mean, marker="o", ms=3, label=name)
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("epoch (episodes per actor)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
