"""Every path, kind and stage name of a campaign store, in one place.

A campaign store (Zarr v3) holds one group per thing a stage writes; a group's ``kind``
attribute says what it is, so a reader refuses a group of another kind. The stages of a
campaign are recorded by name in the root's attributes (``run_stage`` in
:mod:`mapcvd.store.stages`). Change a name here and every writer and reader follows;
stores written before keep these exact strings, so they must not change without a
migration.

MAP (Chen et al., seed 000)::

    map/structure          the starting structure (kind mapcvd-atoms)
    map/replay/actor_NNN   each actor's replay ring (mapcvd-replay, mapcvd-replay-actor)
    map/learner/...        the learner's state, weights and metrics (mapcvd-replay-learner)
    map/episodes/actor_NNN each actor's episode log (mapcvd-episode-log)
    map/evaluation/POLICY  evaluation episodes of a policy
    map/pathways/...       refined pathways and their ranking (mapcvd-pathways, mapcvd-pathway)

CVD (Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3)::

    cvd/dataset            reactive-MD runs of random schedules (mapcvd-cvd-runs)
    cvd/dataset/checkpoints/row_NNNNNN  stage checkpoint of a running row (mapcvd-stage-checkpoint)
    cvd/nade/weights|results            the NADE-CVD trained on them
    cvd/agent/policy|results            the agent on that NADE-CVD
    cvd/agent_paper/..., cvd/agent_file/...   agents on the paper's / a file's surrogate
    cvd/optimise_KIND/FIRST_STAGE       schedules optimised through a surrogate
    cvd/validation, cvd/validation_KIND reactive MD of an agent's best schedules
                                        (with their own checkpoints/row_NNNNNN)
"""

from __future__ import annotations

__all__ = [
    "ACTOR_KIND", "ATOMS_KIND", "INGEST_PATH", "LEARNER_KIND", "LEARNER_PATH", "METRICS_PATH", "REPLAY_KIND",
    "REPLAY_PATH", "WEIGHTS_PATH",
    "AGENT_PREFIXES", "CAMPAIGN_KIND", "CVD_STAGES", "DATASET_PATH", "EPISODES_PARENT", "EPISODE_LOG_KIND",
    "EVALUATION_PARENT", "MAP_STAGES", "MAP_STRUCTURE_PATH", "NADE_RESULTS", "NADE_WEIGHTS", "PATHWAYS_KIND",
    "PATHWAYS_PATH", "PATHWAY_KIND", "RUN_KIND", "RUN_PATH", "RUN_TABLE_KIND", "STAGES", "VALIDATION_PATH", "actor_episodes_path",
    "agent_paths", "agent_stage", "evaluation_path", "evaluation_stage", "optimum_path", "validation_path", "validation_stage",
    "STAGE_CHECKPOINT_KIND", "STAGE_CHECKPOINTS", "stage_checkpoint_path",
]

# ------------------------------------------------------------------------- kinds
CAMPAIGN_KIND = "mapcvd-campaign"
ATOMS_KIND = "mapcvd-atoms"
REPLAY_KIND = "mapcvd-replay"
ACTOR_KIND = "mapcvd-replay-actor"
LEARNER_KIND = "mapcvd-replay-learner"
EPISODE_LOG_KIND = "mapcvd-episode-log"
PATHWAYS_KIND = "mapcvd-pathways"
PATHWAY_KIND = "mapcvd-pathway"
RUN_TABLE_KIND = "mapcvd-cvd-runs"
STAGE_CHECKPOINT_KIND = "mapcvd-stage-checkpoint"
RUN_KIND = "mapcvd-run"

#: The run record: which run holds the store (its token), written by that run's
#: driver (:mod:`mapcvd.store.fence`).
RUN_PATH = "run"

# --------------------------------------------------------------------------- MAP
MAP_STRUCTURE_PATH = "map/structure"
REPLAY_PATH = "map/replay"
LEARNER_PATH = "map/learner"
WEIGHTS_PATH = f"{LEARNER_PATH}/weights"
INGEST_PATH = f"{LEARNER_PATH}/ingest"
METRICS_PATH = f"{LEARNER_PATH}/metrics"
EPISODES_PARENT = "map/episodes"
EVALUATION_PARENT = "map/evaluation"
PATHWAYS_PATH = "map/pathways"


def actor_episodes_path(actor: int) -> str:
    """Episode log of MAP actor ``actor`` (written by that actor alone)."""
    return f"{EPISODES_PARENT}/actor_{int(actor):03d}"


def evaluation_path(policy: str) -> str:
    """Episode log of the evaluation episodes of ``policy`` (greedy, random, ...)."""
    return f"{EVALUATION_PARENT}/{policy}"


# --------------------------------------------------------------------------- CVD
DATASET_PATH = "cvd/dataset"
VALIDATION_PATH = "cvd/validation"
NADE_WEIGHTS, NADE_RESULTS = "cvd/nade/weights", "cvd/nade/results"
#: Store group of the agent trained on each kind of surrogate (:mod:`mapcvd.cvd.surrogates`).
AGENT_PREFIXES: dict[str, str] = {"store": "cvd/agent", "paper": "cvd/agent_paper", "file": "cvd/agent_file"}


def agent_paths(kind: str = "store") -> tuple[str, str]:
    """``(policy, results)`` of the agent trained on a surrogate of ``kind``."""
    return f"{AGENT_PREFIXES[kind]}/policy", f"{AGENT_PREFIXES[kind]}/results"


def optimum_path(kind: str, first_stage: str = "random") -> str:
    """Schedules optimised through a surrogate of ``kind`` (one checkpoint per first-stage mode)."""
    return f"cvd/optimise_{kind}/{first_stage}"


def validation_path(kind: str = "store") -> str:
    """Reactive-MD validation runs of the agent trained on a surrogate of ``kind``."""
    return VALIDATION_PATH if kind == "store" else f"{VALIDATION_PATH}_{kind}"


#: Subgroup of a run table holding the stage checkpoints of its rows.
STAGE_CHECKPOINTS = "checkpoints"


def stage_checkpoint_path(table_path: str, row: int) -> str:
    """Stage checkpoint of row ``row`` of the run table at ``table_path`` (written by the app running that row)."""
    return f"{table_path}/{STAGE_CHECKPOINTS}/row_{int(row):06d}"


# ------------------------------------------------------------------------ stages
#: The stages of ``mapcvd campaign run``, in order within each branch.
MAP_STAGES = ("map_train", "map_evaluate_greedy", "map_evaluate_random", "map_paths")
#: ``cvd_agent_paper``: the agent on the reference surrogate (``cvd_learning.reference_surrogate``,
#: default the CVD paper's trained NADE-CVD), beside the one on the campaign's own NADE-CVD.
CVD_STAGES = ("cvd_dataset", "cvd_nade", "cvd_agent", "cvd_agent_paper", "cvd_validate")
STAGES = MAP_STAGES + CVD_STAGES


def evaluation_stage(policy: str) -> str:
    """The stage of ``mapcvd map evaluate --policy POLICY`` (two of them are campaign stages)."""
    return f"map_evaluate_{policy}"


def agent_stage(kind: str = "store") -> str:
    """Stage of training an agent on a surrogate of ``kind`` (``cvd_agent``, ``cvd_agent_paper``, ...)."""
    return "cvd_agent" if kind == "store" else f"cvd_agent_{kind}"


def validation_stage(kind: str = "store") -> str:
    """Stage of validating the agent of a surrogate of ``kind`` with reactive MD."""
    return "cvd_validate" if kind == "store" else f"cvd_validate_{kind}"
