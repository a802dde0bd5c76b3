"""Validation of the agent's best schedules with reactive MD, one Parsl app per schedule.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3,
check the schedules their agent designs on the NADE-CVD surrogate by running them with
reactive MD (their Fig. 3b). :func:`run_validation` does that for the top-K schedules
stored by ``mapcvd cvd agent``: a run table ``cvd/validation`` (same layout as the
dataset, :class:`mapcvd.store.cvd_dataset.RunTable`) whose row ``i`` is the ``i``-th best
schedule, run with the dataset's ``[cvd]`` settings through
:func:`mapcvd.workflows.cvd_dataset.run_rows` (driver-only writes, retries, resume, and
stage checkpoints in ``cvd/validation/checkpoints``, so a killed validation run
continues after its last finished stage). The surrogate's prediction of each schedule
is stored beside it (``nade_mean``, ``nade_std``), so the comparison can be redrawn
from the store alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from mapcvd.workflows.cvd_dataset import VALIDATION_SALT, Progress, RunFn, run_rows

from mapcvd.store.layout import VALIDATION_PATH


def run_validation(
    group,
    parsl_config,
    *,
    schedules: np.ndarray,
    top: int,
    nade_mean: np.ndarray,
    nade_std: np.ndarray,
    agent_version: int,
    dataset_attrs: dict,
    species: Sequence[str],
    path: str = VALIDATION_PATH,
    retries: int = 1,
    run_fn: RunFn | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
    ranks: int = 1,
):
    """Run reactive MD on ``schedules`` (K, S, 4) into ``cvd/validation``.

    Parameters
    ----------
    group : zarr.Group
        Campaign root, read-write (this process is the only writer).
    parsl_config : parsl.config.Config or None
        Fresh site configuration, or None to run inside the one already loaded.
    schedules : array (M, S, 4)
        The agent's best schedules, best first.
    top : int
        Run the first ``top`` (K) of them; row ``i`` of the table is schedule ``i``.
    nade_mean, nade_std : arrays (M, S, 3)
        The surrogate's prediction of each schedule.
    agent_version : int
        Version of the agent results the schedules come from; a table made for another
        version is replaced, one made for this version is continued (done rows kept).
    dataset_attrs : dict
        Attributes of the dataset table: its ``cvd`` settings, ``seed`` and ``n_mo`` are
        used, so the validation runs are comparable with the training runs.
    path : str
        The run table (``cvd/validation`` for the agent on the campaign's NADE-CVD,
        ``cvd/validation_paper`` for the one on the paper's).
    species, retries, run_fn, progress, log
        As in :func:`mapcvd.workflows.cvd_dataset.run_dataset`.
    ranks : int
        MPI ranks of each run (:func:`~mapcvd.workflows.cvd_dataset.run_rows`).

    Returns
    -------
    table : RunTable
    summary : dict
        :func:`run_rows`'s summary plus ``counts`` and ``submitted``.
    """
    from mapcvd.errors import StoreError
    from mapcvd.store.cvd_dataset import STATUS, RunTable

    schedules = np.asarray(schedules, dtype=np.float64)
    M, S = schedules.shape[:2]
    K = int(top)
    if not 1 <= K <= M:
        raise ValueError(f"top must be between 1 and {M}, got {K}")
    table = None
    if path in group:
        table = RunTable.open(group, path)
        if table.attrs.get("agent_version") != int(agent_version) or table.n_stages != S:
            log(f"replacing the validation runs of agent results v{table.attrs.get('agent_version')} "
                f"with those of v{agent_version}")
            del group[path]
            table = None
    if table is None:
        attrs = {"purpose": "validation", "agent_version": int(agent_version),
                 "seed": int(dataset_attrs["seed"]), "n_mo": int(dataset_attrs["n_mo"]),
                 "ranges": dataset_attrs["ranges"], "cvd": {**dict(dataset_attrs["cvd"]), "n_stages": S}}
        table = RunTable.create(group, path, n_stages=S, attrs=attrs, species=species)
    have = table.n_runs
    if have > M or not np.array_equal(table.read("schedule"), schedules[:have]):
        raise StoreError(f"{path} holds other schedules than agent results v{agent_version}")
    if K > have:
        table.extend(schedules[have:K])
    for name, arr in (("nade_mean", nade_mean), ("nade_std", nade_std)):
        arr = np.asarray(arr, dtype=np.float64)
        table.group.create_array(name, shape=arr.shape, chunks=(1, *arr.shape[1:]), dtype="f8", overwrite=True)
        table.group[name][...] = arr
    status = table.status()[:K]
    todo = np.flatnonzero(status != STATUS["done"])
    log(f"validation: {K - len(todo)} of {K} schedules already run, {len(todo)} to run")
    summary = run_rows(table, todo, parsl_config, cvd_table=table.attrs["cvd"], seed=table.attrs["seed"],
                       salt=VALIDATION_SALT, retries=retries, run_fn=run_fn, progress=progress, ranks=ranks)
    complete = bool(np.all(table.status()[:K] == STATUS["done"]))
    summary.update(counts=table.counts(), submitted=len(todo), complete=complete)
    return table, summary


def validate_agent(group, parsl_config, *, config: dict, top: int | None = None, surrogate: str | None = None,
                   run_fn: RunFn | None = None, progress: Progress | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Validate the agent's ``top`` best stored schedules with reactive MD and report on them.

    :func:`mapcvd.cvd.learning.validation_plan`, then :func:`run_validation`, then
    :func:`mapcvd.cvd.learning.validation_report` (stored on the table).

    Parameters
    ----------
    group : zarr.Group
        Campaign root, read-write (this process is the only writer).
    parsl_config : parsl.config.Config or None
        Fresh site configuration, or None to run inside the one already loaded.
    config : dict
        Validated configuration (``[cvd_learning]`` validate_top, retries).
    top : int, optional
        Schedules to run (default: ``cvd_learning.validate_top``).
    surrogate : str, optional
        Whose agent to validate (``store``, ``paper``, a file; default
        ``cvd_learning.surrogate``).
    run_fn, progress, log
        As in :func:`run_validation`.

    Returns
    -------
    dict
        ``plan`` (:func:`~mapcvd.cvd.learning.validation_plan`), ``table``, ``summary``
        (:func:`run_validation`'s), ``report`` and ``complete`` (every schedule ran; run
        it as stage ``plan["stage"]`` through :func:`mapcvd.store.run_stage`).
    """
    from mapcvd.cvd.learning import validation_plan, validation_report

    plan = validation_plan(group, config, top, surrogate)
    table, summary = run_validation(
        group, parsl_config, schedules=plan["md_schedules"], top=plan["top"], nade_mean=plan["mean"],
        nade_std=plan["std"], agent_version=plan["agent_version"], dataset_attrs=plan["dataset"].attrs,
        species=plan["species"], path=plan["table_path"], retries=config["cvd_learning"]["retries"], run_fn=run_fn,
        progress=progress, log=log, ranks=config["cvd"].get("ranks_per_run", 1))
    return {"plan": plan, "table": table, "summary": summary, "report": validation_report(table, plan),
            "complete": summary["complete"]}
