"""The whole campaign as one Parsl graph: the MAP branch and the CVD branch side by side.

``mapcvd campaign run`` drives, inside ONE loaded Parsl configuration (Parsl loads one
DataFlowKernel per process at a time), two branches from two driver threads:

* MAP (Chen et al., seed 000): training (N actor apps and one learner app,
  :func:`~mapcvd.workflows.map_training.run_map_training`) -> evaluation of the
  greedy policy and, for the comparison, of the random one
  (:func:`~mapcvd.workflows.map_training.run_map_evaluation`) -> segmentation of the
  best pathways and their piecewise NEB apps in parallel, then their TST times
  (:func:`~mapcvd.workflows.pathways.run_pathways`);
* CVD (Rajak et al. 2021), submitted once the MAP actors are (so that they get their
  workers first): dataset of reactive-MD apps
  (:func:`~mapcvd.workflows.cvd_dataset.run_dataset`) -> NADE-CVD -> REINFORCE agent
  (:mod:`mapcvd.cvd.learning`, in the driver) -> reactive-MD validation apps of the
  agent's best schedules (:func:`~mapcvd.workflows.cvd_validate.validate_agent`).

Every stage records its status in the store (:data:`MAP_STAGES`, :data:`CVD_STAGES`); the stages of
each branch are the methods of :class:`~mapcvd.workflows.campaign_stages.MapStages` and
:class:`~mapcvd.workflows.campaign_stages.CvdStages`.
Resume: a stage already ``done`` is skipped; the others continue from what the store
holds (MAP training from its replay and weights, for what is left of ``map.minutes``,
the campaign's whole training budget, counted by the learner's checkpoints; the dataset
from its done runs; evaluation up to the configured episode count). A failure ends its own branch only;
the other branch goes on, and :class:`~mapcvd.errors.MapcvdError` names the failed
stages at the end. Ctrl-C stops Parsl (``run_parsl``) and leaves every stage that was
not finished ``pending``.

Only this process writes the root attributes (both threads share one root handle;
:mod:`mapcvd.store.stages` serialises the stage writes).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mapcvd.errors import ConfigError, InputError, MapcvdError
from mapcvd.store.layout import CVD_STAGES, MAP_STAGES, STAGES
from mapcvd.workflows.campaign_stages import CvdStages, MapStages

__all__ = ["CVD_STAGES", "MAP_STAGES", "STAGES", "campaign_site", "check_campaign", "run_campaign"]

#: Seconds the branches get to notice a stopped Parsl before their stages are reset.
_STOP_GRACE_S = 5.0


class CampaignError(MapcvdError):
    """A stage of the campaign failed (the message names the stages and their errors)."""


def check_campaign(config: dict) -> None:
    """Refuse settings the stages would refuse, before any work (one-line errors).

    Raises
    ------
    mapcvd.errors.MapcvdError
        A MAP table (:func:`~mapcvd.map.system.check_map_table`), a NEB setting, NADE
        layer widths, a reactive-MD setting that does not work, or a surrogate name that
        is none of store, paper, PATH.pt (a reference surrogate: not store, and its file
        must exist).
    """
    from mapcvd.workflows.pathways import pathway_settings  # noqa: PLC0415

    from mapcvd.cvd.learning import rmd_settings  # noqa: PLC0415
    from mapcvd.cvd.learning_settings import LearningSettings  # noqa: PLC0415
    from mapcvd.cvd.surrogates import surrogate_kind  # noqa: PLC0415
    from mapcvd.map.system import check_map_table  # noqa: PLC0415

    check_map_table(config["map"])
    pathway_settings(config["map"])
    learning = LearningSettings.from_config(config)  # NADE layer widths too
    rmd_settings(config)
    try:
        surrogate_kind(learning.surrogate)
    except InputError as exc:
        raise ConfigError(f"cvd_learning.surrogate: {exc}") from None
    reference = learning.reference_surrogate
    if reference != "none":
        if surrogate_kind(reference) == "store":
            raise ConfigError("cvd_learning.reference_surrogate must be 'paper', a PATH.pt or 'none': the campaign "
                              "trains its agent on its own NADE-CVD ('store') anyway")
        if surrogate_kind(reference) == "file" and not Path(reference).expanduser().is_file():
            raise ConfigError(f"cvd_learning.reference_surrogate: checkpoint {reference} does not exist")


def campaign_site(site: str, run_dir: str, config: dict, *, cvd_workers: int | None = None):
    """A fresh Parsl config for the campaign on ``site`` (:func:`~mapcvd.workflows.sites.workload_site`).

    On ``local`` ``"cpu"`` has one worker per actor plus ``cvd_workers`` (default: the
    cores left after the actors and the learner, at least one, divided by
    ``cvd.ranks_per_run``) for the CVD runs, evaluation and NEB apps; on a small machine
    this oversubscribes the cores, on purpose. ``cvd.ranks_per_run`` or
    ``map.ranks_per_actor`` above the cores of a node of the site is refused in one line
    (:func:`~mapcvd.workflows.sites.check_ranks`).
    """
    from mapcvd.pathways.neb import neb_from_map  # noqa: PLC0415
    from mapcvd.workflows.sites import check_ranks, workload_site  # noqa: PLC0415

    actors, ranks = config["map"]["actors"], config["cvd"]["ranks_per_run"]
    extra = cvd_workers if cvd_workers is not None else max(1, ((os.cpu_count() or 1) - actors - 1) // ranks)
    band_ranks = neb_from_map(config["map"]).ranks
    parsl_config = workload_site(site, run_dir, actors=actors, workers=actors + max(1, extra),
                                 mpi_ranks=max(ranks, config["map"]["ranks_per_actor"], band_ranks))
    check_ranks(parsl_config, ranks)
    check_ranks(parsl_config, config["map"]["ranks_per_actor"], key="map.ranks_per_actor")
    return parsl_config


class _Branch:
    """One branch of stages run in a daemon thread; remembers its stages, results and error."""

    def __init__(self, name: str, group, log: Callable[[str], None], stopping: threading.Event) -> None:
        self.name, self.group, self.log, self.stopping = name, group, log, stopping
        self.results: dict = {}
        self.error: BaseException | None = None
        self.failed_stage: str | None = None
        self.thread: threading.Thread | None = None

    def stage(self, stage: str, fn: Callable[[], object]) -> bool:
        """Run ``fn`` for ``stage`` unless it is done; False when it failed (the branch stops)."""
        from mapcvd.store import run_stage, stage_statuses  # noqa: PLC0415

        if stage_statuses(self.group).get(stage) == "done":
            self.log(f"{stage}: done before, skipped")
            return True
        if self.stopping.is_set():  # Ctrl-C: start nothing more
            return False
        start = time.perf_counter()
        try:
            # Parsl stopped under it (Ctrl-C): left pending, to be run again
            self.results[stage] = run_stage(self.group, stage, fn, interrupted=self.stopping.is_set)
        except Exception as exc:  # noqa: BLE001 - recorded; the other branch goes on
            if self.stopping.is_set():
                return False
            self.error, self.failed_stage = exc, stage
            self.log(f"{stage}: FAILED: {' '.join(str(exc).split()) or type(exc).__name__}")
            return False
        status = stage_statuses(self.group).get(stage)
        if status != "done":
            self.error, self.failed_stage = MapcvdError(f"{stage} ended {status}"), stage
            self.log(f"{stage}: ended {status}")
            return False
        self.log(f"{stage}: done in {time.perf_counter() - start:.0f} s")
        return True

    def start(self, body: Callable[["_Branch"], None]) -> None:
        def run() -> None:
            try:
                body(self)
            except BaseException as exc:  # noqa: BLE001 - reported by the driver
                self.error = self.error or exc

        self.thread = threading.Thread(target=run, name=f"campaign-{self.name}", daemon=True)
        self.thread.start()


def run_campaign(config: dict, group, store_path: str, parsl_config, *, log: Callable[[str], None] = print,
                 run_fn=None, max_episodes: int | None = None, max_updates: int | None = None,
                 poll_s: float = 0.5) -> dict:
    """Run (or continue) the whole campaign inside one Parsl configuration.

    Parameters
    ----------
    config : dict
        Validated configuration.
    group : zarr.Group
        Campaign root, read-write; this process is its only writer.
    store_path : str
        Path of the store (the apps open it themselves).
    parsl_config : parsl.config.Config
        A fresh site configuration (:func:`campaign_site`).
    log : callable(str)
        Log lines of both branches (called from their threads).
    run_fn : callable, optional
        What each CVD app runs instead of the reactive MD (tests).
    max_episodes, max_updates : int, optional
        Per-actor episode and learner update limits of MAP training (tests).
    poll_s : float
        Seconds between checks of the branches.

    Returns
    -------
    dict
        ``stages`` (name -> status at the end), ``results`` (stage -> what its driver
        returned, for the stages run now) and ``seconds``.

    Raises
    ------
    CampaignError
        After both branches ended, when a stage failed (naming it and its error).
    KeyboardInterrupt
        On Ctrl-C, after Parsl stopped; unfinished stages are left ``pending``.
    """
    from mapcvd.workflows.parsl_runtime import run_parsl  # noqa: PLC0415

    from mapcvd.store import declare_stages, reset_unfinished, stage_statuses  # noqa: PLC0415

    check_campaign(config)
    declare_stages(group, STAGES)
    before = stage_statuses(group)
    todo = [s for s in STAGES if before.get(s) != "done"]
    log(f"stages to run: {', '.join(todo) or 'none'}"
        + (f"; done before: {', '.join(s for s in STAGES if s not in todo)}" if len(todo) < len(STAGES) else ""))
    start = time.perf_counter()
    stopping = threading.Event()
    branches = [_Branch("map", group, log, stopping), _Branch("cvd", group, log, stopping)]
    try:
        with run_parsl(parsl_config, record=group):
            submitted = threading.Event()
            branches[0].start(MapStages(config, str(store_path), max_episodes=max_episodes,
                                        max_updates=max_updates, submitted=submitted).run)
            branches[1].start(CvdStages(config, run_fn=run_fn, after=submitted).run)
            try:
                while any(b.thread.is_alive() for b in branches):
                    time.sleep(poll_s)
            except KeyboardInterrupt:
                stopping.set()  # before Parsl stops: the branches start nothing more
                raise
    except KeyboardInterrupt:
        stopping.set()
        deadline = time.time() + _STOP_GRACE_S
        for b in branches:
            if b.thread is not None:
                b.thread.join(max(0.0, deadline - time.time()))
        reset_unfinished(group, todo)
        log("interrupted: Parsl stopped; unfinished stages left pending (run again to resume)")
        raise
    stages = stage_statuses(group)
    results = {k: v for b in branches for k, v in b.results.items()}
    failed = [b for b in branches if b.error is not None]
    if failed:
        raise CampaignError("; ".join(
            f"stage {b.failed_stage or b.name} failed: {' '.join(str(b.error).split()) or type(b.error).__name__}"
            for b in failed))
    return {"stages": {s: stages.get(s) for s in STAGES}, "results": results,
            "seconds": time.perf_counter() - start}
