"""Where MAP pathways come from: the stored episodes worth refining, and their labels.

MAP (Chen et al., seed 000) refines the pathways its agent played: the episodes of the
evaluation and training logs (:mod:`mapcvd.store.episodes`) that stored their frames
and advanced the guided atom, and the straight-drag baseline written by the pathways
driver (``workflows/pathways.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mapcvd.pathways.store import BASELINE_LOG
from mapcvd.store.episodes import EpisodeLog, episode_logs
from mapcvd.store.layout import EPISODES_PARENT, EVALUATION_PARENT

#: Parents of the episode logs that pathways are taken from (evaluation first).
SOURCE_PARENTS = (EVALUATION_PARENT, EPISODES_PARENT)
BASELINE_LABEL = "baseline"


@dataclass(frozen=True)
class EpisodeRef:
    """An episode with stored frames: its log, index, label and length along the goal axis."""

    log: str
    episode: int
    label: str
    length_A: float
    actions: int


def episode_label(log_path: str, episode: int) -> str:
    """A short label: ``greedy_e0003`` (evaluation), ``actor_000_e0012`` (training), ``baseline``."""
    if log_path == BASELINE_LOG:
        return BASELINE_LABEL
    return f"{log_path.rsplit('/', 1)[-1]}_e{int(episode):04d}"


def candidate_episodes(root, min_length_A: float = 1.0) -> list[EpisodeRef]:
    """Episodes of the evaluation and training logs that store frames and advance at least ``min_length_A``."""
    refs = []
    for parent in SOURCE_PARENTS:
        for path in episode_logs(root, parent):
            log = EpisodeLog(root, path)
            if not log.group.attrs.get("frames") or len(log) == 0:
                continue
            summary = log.summary()
            for k in range(len(log)):
                length, actions = float(summary["progress_A"][k]), int(summary["actions"][k])
                if length >= min_length_A and actions >= 2 and not summary["failed"][k]:
                    refs.append(EpisodeRef(path, k, episode_label(path, k), length, actions))
    return refs
