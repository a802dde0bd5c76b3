"""The stages of each branch of ``mapcvd campaign run``: one class per branch, one method per stage.

:class:`MapStages` (Chen et al., seed 000) trains the pathfinder, evaluates the greedy
and the random policy, and refines the best pathways by piecewise NEB;
:class:`CvdStages` (Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3) runs the reactive-MD dataset, trains NADE-CVD and the
agent on it, trains the agent on the reference surrogate with its optimised upper
reference, and validates the agent's schedules by reactive MD. Each ``run(branch)``
hands its stages, in order, to the branch's stage runner
(:class:`mapcvd.workflows.campaign._Branch`), which skips a stage already done, records
failures and stops the branch at the first one; each stage method returns what the
campaign summary shows of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mapcvd.store.layout import evaluation_path, evaluation_stage
from mapcvd.timing import timed_app

__all__ = ["CvdStages", "MapStages"]


def _stored_episodes(group, path: str) -> int:
    from mapcvd.store.episodes import EpisodeLog  # noqa: PLC0415

    try:
        return len(EpisodeLog(group, path)) if path in group else 0
    except Exception:  # noqa: BLE001 - an unreadable log counts as empty; the driver rewrites it
        return 0


def _summary(result: dict, keys: tuple[str, ...]) -> dict:
    return {k: result[k] for k in keys}


class MapStages:
    """The MAP branch: ``map_train``, ``map_evaluate_greedy``, ``map_evaluate_random``, ``map_paths``.

    Parameters
    ----------
    config : dict
        Validated configuration.
    store_path : str
        Path of the store (the apps open it themselves).
    max_episodes, max_updates : int or None
        Per-actor episode and learner update limits of training (tests).
    submitted : threading.Event
        Set once the actors are submitted (or training is skipped or failed): the CVD
        branch waits for it, so that the actors get their workers first.
    """

    def __init__(self, config: dict, store_path: str, *, max_episodes: int | None, max_updates: int | None,
                 submitted: threading.Event) -> None:
        self.config, self.table, self.store_path = config, config["map"], store_path
        self.max_episodes, self.max_updates, self.submitted = max_episodes, max_updates, submitted

    def run(self, branch) -> None:
        """Run the stages in order on ``branch``; stop at the first that fails."""
        self.group, self.log = branch.group, branch.log
        try:
            trained = branch.stage("map_train", self.train)
        finally:
            self.submitted.set()  # skipped or failed: the CVD branch need not wait
        if not trained:
            return
        for policy in ("greedy", "random"):
            if not branch.stage(evaluation_stage(policy), lambda policy=policy: self.evaluate(policy)):
                return
        branch.stage("map_paths", self.paths)

    def train(self):
        """What is left of ``map.minutes`` (the campaign's whole budget) of actors and learner."""
        from mapcvd.workflows.map_training import run_map_training  # noqa: PLC0415

        from mapcvd.store.metrics import trained_seconds  # noqa: PLC0415

        budget = 60.0 * self.table["minutes"]
        left = budget - trained_seconds(self.group)
        if left < budget:
            self.log(f"map_train: {(budget - left) / 60:.1f} of {self.table['minutes']:g} min "
                     f"trained before; {max(left, 0.0) / 60:.1f} min left")
        if left < 1.0:  # a session killed after its budget: its weights are final (the stage is done)
            return None
        return run_map_training({**self.config, "map": {**self.table, "minutes": left / 60.0}}, self.group,
                                self.store_path, None, log=self.log, max_episodes=self.max_episodes,
                                max_updates=self.max_updates, on_submitted=self.submitted.set)

    def evaluate(self, policy: str):
        """The evaluation episodes of ``policy`` still missing (an interrupted run keeps its own)."""
        from mapcvd.workflows.map_training import run_map_evaluation  # noqa: PLC0415

        left = self.table["eval_episodes"] - _stored_episodes(self.group, evaluation_path(policy))
        if left <= 0:  # an interrupted run had stored them all (the stage is done)
            return None
        return run_map_evaluation(self.config, self.group, self.store_path, None, policy=policy, episodes=left,
                                  log=self.log)

    def paths(self):
        """Segmentation and piecewise NEB of the best pathways and of the straight drag; TST times."""
        from mapcvd.workflows.pathways import pathway_settings, run_pathways  # noqa: PLC0415

        return run_pathways(self.config, self.group, self.store_path, None, log=self.log,
                            **pathway_settings(self.table))


class CvdStages:
    """The CVD branch: ``cvd_dataset``, ``cvd_nade``, ``cvd_agent``, ``cvd_agent_paper``, ``cvd_validate``.

    ``cvd_agent_paper`` needs no dataset, so it runs even when the dataset failed; the
    others stop at the first failure.

    Parameters
    ----------
    config : dict
        Validated configuration.
    run_fn : callable or None
        What each reactive-MD app runs instead of the reactive MD (tests).
    after : threading.Event
        Waited for before the dataset is submitted (the MAP actors first).
    """

    def __init__(self, config: dict, *, run_fn, after: threading.Event) -> None:
        self.config, self.run_fn, self.after = config, run_fn, after

    def run(self, branch) -> None:
        """Run the stages in order on ``branch``."""
        self.group, self.log = branch.group, branch.log
        self.after.wait()  # the MAP actors are submitted first, so they get their workers
        ok = branch.stage("cvd_dataset", self.dataset)
        ok = ok and branch.stage("cvd_nade", self.nade)
        ok = ok and branch.stage("cvd_agent", self.agent)
        branch.stage("cvd_agent_paper", self.reference_agent)  # needs no dataset
        ok and branch.stage("cvd_validate", self.validate)

    def dataset(self):
        """Reactive-MD runs of random schedules, one app each, written as they finish."""
        from mapcvd.workflows.cvd_dataset import run_dataset  # noqa: PLC0415

        from mapcvd.cvd.learning import rmd_settings  # noqa: PLC0415

        rmd, species = rmd_settings(self.config)
        return run_dataset(self.group, None, config=self.config, runs=self.config["cvd_learning"]["runs"], rmd=rmd,
                           species=species, run_fn=self.run_fn, log=self.log, progress=_dataset_events(self.log))

    def nade(self):
        """NADE-CVD on the dataset's done runs (in the driver)."""
        from mapcvd.cvd.learning import fit_nade  # noqa: PLC0415

        return _summary(timed_app(fit_nade)(self.group, self.config, log=self.log),
                        ("version", "n", "mae_free_run", "seconds"))

    def agent(self):
        """The REINFORCE agent on the campaign's own NADE-CVD (in the driver)."""
        from mapcvd.cvd.learning import fit_agent  # noqa: PLC0415

        return _summary(timed_app(fit_agent)(self.group, self.config, surrogate="store", log=self.log),
                        ("comparison", "policy_version", "seconds", "max_2h"))

    def reference_agent(self) -> dict | None:
        """The agent on ``cvd_learning.reference_surrogate`` and its optimised upper reference; None when 'none'."""
        from mapcvd.cvd.learning import fit_agent  # noqa: PLC0415
        from mapcvd.cvd.optimise import fit_optimum  # noqa: PLC0415
        from mapcvd.cvd.validation import fraction_sum_error  # noqa: PLC0415
        from mapcvd.cvd.learning_settings import LearningSettings  # noqa: PLC0415

        learning = LearningSettings.from_config(self.config)
        if learning.reference_surrogate == "none":  # nothing to do: the stage is done
            return None
        fit = timed_app(fit_agent)(self.group, self.config, surrogate=learning.reference_surrogate,
                                   updates=learning.reference_updates, log=self.log)
        best = fit["best"]
        optimum = fit_optimum(self.group, self.config, fit["surrogate"], log=self.log)
        return {**_summary(fit, ("comparison", "policy_version", "seconds")), "surrogate": fit["surrogate"].label,
                "best_return": float(best["returns"][0]), "best_schedule": best["schedules"][0].tolist(),
                "best_sum_error": float(fraction_sum_error(best["z"][0])),
                "optimum": None if optimum is None else _summary(optimum, ("mean_return", "best_return", "seconds"))}

    def validate(self):
        """Reactive MD of the agent's best schedules (apps), compared with NADE-CVD: the report, and
        ``complete`` (False when a run failed: the stage then ends failed)."""
        from mapcvd.workflows.cvd_validate import validate_agent  # noqa: PLC0415

        done = validate_agent(self.group, None, config=self.config, run_fn=self.run_fn, log=self.log)
        return {**done["report"], "complete": done["complete"]}


def _dataset_events(log: Callable[[str], None]) -> Callable[[dict], None]:
    def on_event(e: dict) -> None:
        if e["event"] == "start":
            log(f"cvd_dataset: {e['total']} reactive-MD runs submitted")
        elif e["event"] == "done":
            log(f"cvd_dataset: run {e['row']} done ({e['done']}/{e['total']})")
        else:
            log(f"cvd_dataset: run {e['row']} {e['event']}: {e['message']}")

    return on_event
