"""The CVD dataset: one Parsl app per staged reactive-MD run, written by the driver.

The NADE-CVD surrogate of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, is trained on many reactive-MD runs of random
schedules. :func:`run_dataset` plans them (seeded from the campaign seed, see
:func:`mapcvd.cvd.validation.dataset_schedules`), submits one app per run to the
executor ``"cpu"`` and, as each future finishes, writes the run's row of the table
``cvd/dataset`` (:class:`mapcvd.store.cvd_dataset.RunTable`). The driver is the only
writer of the table; apps compute, return plain arrays, and write only their row's
stage checkpoint (below).

* Resume: rows already ``done`` are never resubmitted; asking for more runs extends the
  table, and the first rows keep their schedules.
* Failures: an app that raises (a LAMMPS failure is an ``MDError``), or returns a result
  that fails :func:`~mapcvd.store.cvd_dataset.check_result`, is recorded as ``failed``
  with its message (never as data) and resubmitted with a new MD seed, up to
  ``retries`` more times in the same invocation. A later invocation tries failed rows
  again.
* Stage checkpoints: the app of a row stores the run's state after each finished stage
  in ``TABLE/checkpoints/row_NNNNNN`` (:mod:`mapcvd.store.stage_checkpoints`), opening
  the store itself with the driver's run token; an attempt with the same schedule,
  settings and MD seed continues after the last stored stage. A killed driver never
  recorded the attempt, so the next invocation runs it with the same attempt number,
  hence the same seed, and it continues; so does the retry of a run whose worker was
  lost (Parsl's ``WorkerLost``, ``ManagerLost``: a killed worker, a batch job at its
  walltime), which is recorded as failed without using up its attempt. The driver
  deletes a row's checkpoint once it has recorded the row done.

:func:`run_rows` is the generic part (any run table, any rows); the validation of the
agent's schedules (:mod:`mapcvd.workflows.cvd_validate`) uses it too.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Sequence

import numpy as np

from mapcvd.errors import one_line
from mapcvd.timing import timed_app

#: ``run_fn(schedule, cvd_table, seed)``; one that also takes a keyword ``stages`` is given
#: the :class:`~mapcvd.store.stage_checkpoints.StageCheckpoints` of its row.
RunFn = Callable[..., object]
Progress = Callable[[dict], None]

#: ``purpose`` salts of :func:`mapcvd.cvd.validation.md_seed`.
DATASET_SALT, VALIDATION_SALT = 0, 1


def run_rmd(schedule: np.ndarray, cvd_table: dict, seed: int, *, stages=None):
    """The default run function: the staged reactive MD of ``mapcvd.cvd.rmd``.

    Staged runs of Rajak et al., npj Comput. Mater. 7, 108 (2021),
    doi:10.1038/s41524-021-00535-3.

    Parameters
    ----------
    schedule : array (S, 4)
        ``(T, n_S2, n_H2, n_H2S)`` of each stage.
    cvd_table : dict
        The ``[cvd]`` configuration table (slab, stage length, timestep, ...).
    seed : int
        MD seed (gas placement, velocities).
    stages : mapcvd.store.stage_checkpoints.StageCheckpoints, optional
        The row's stage checkpoint: a stored state of this schedule, these settings
        and this seed (:func:`mapcvd.cvd.rmd.run_key`) is continued after its last
        stage (one of another key, or unreadable, is ignored), and the state after
        each finished stage is stored there (a :class:`~mapcvd.store.fence.FencedError`
        of that write stops the run).

    Returns
    -------
    mapcvd.cvd.rmd.RmdResult
        ``resumed_stages``: the stages taken from the checkpoint.

    Notes
    -----
    With ``cvd_table["ranks_per_run"]`` R > 1 the run goes to R MPI ranks
    (:func:`mapcvd.workflows.rmd_ranks.run_on_ranks`: ``mpiexec``, or Parsl's
    ``$PARSL_MPI_PREFIX``), each running this function with one LAMMPS over all ranks.
    """
    from mapcvd.cvd.rmd import RmdSettings, StageState, run_key, run_schedule
    from mapcvd.errors import InputError

    ranks = int(cvd_table.get("ranks_per_run", 1))
    if ranks > 1:
        from mapcvd.workflows.rmd_ranks import run_on_ranks

        return run_on_ranks(schedule, cvd_table, seed, ranks, stages=stages)
    schedule = np.asarray(schedule, dtype=np.float64)
    settings = RmdSettings.from_config(cvd_table)
    if stages is None:
        return run_schedule(schedule, settings, seed=seed)
    key = run_key(schedule, settings, seed)
    found, resume = stages.load(key), None
    if found is not None:
        try:
            resume = StageState.from_arrays(found.arrays, found.meta, stage=found.stage, key=key)
        except InputError:  # not a state this version can read: start again (and replace it)
            resume = None

    def store(state: StageState) -> None:
        arrays, meta = state.to_arrays()
        stages.save(state.stage, arrays, meta, key=state.key)

    return run_schedule(schedule, settings, seed=seed, resume=resume, on_stage=store)


def takes_stages(run_fn: RunFn) -> bool:
    """Whether ``run_fn`` takes the keyword ``stages`` (its row's stage checkpoint)."""
    try:
        return "stages" in inspect.signature(run_fn).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


@timed_app
def rmd_app(run_fn: RunFn, schedule: np.ndarray, cvd_table: dict, seed: int, stages=None,
            parsl_resource_specification: dict | None = None) -> dict:
    """App body: one staged run through ``run_fn``; returns its result as plain arrays.

    The frames (positions per stage) stay in the worker: the table stores fractions,
    conditions and timings only. An exception of ``run_fn`` propagates to the driver,
    which records it. ``stages``, the row's
    :class:`~mapcvd.store.stage_checkpoints.StageCheckpoints`, is passed on to
    ``run_fn`` when given. ``parsl_resource_specification`` is Parsl's (the ranks of a
    run on the ``"mpi"`` executor, :func:`~mapcvd.workflows.sites.rank_placement`).
    """
    result = run_fn(schedule, cvd_table, seed) if stages is None else run_fn(schedule, cvd_table, seed, stages=stages)
    if dataclasses.is_dataclass(result):
        result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return {k: v for k, v in dict(result).items() if k != "frames"}


def run_rows(
    table,
    rows: Sequence[int],
    parsl_config,
    *,
    cvd_table: dict,
    seed: int,
    salt: int,
    retries: int = 1,
    run_fn: RunFn | None = None,
    progress: Progress | None = None,
    ranks: int = 1,
) -> dict:
    """Run the planned schedules of ``rows`` of ``table``, one Parsl app each.

    Parameters
    ----------
    table : mapcvd.store.cvd_dataset.RunTable
        The table to fill; this process is its only writer.
    rows : sequence of int
        Rows to run (their ``schedule`` is read from the table).
    parsl_config : parsl.config.Config or None
        A fresh site configuration with an executor ``"cpu"``, or None to run inside
        the Parsl configuration already loaded.
    cvd_table : dict
        The ``[cvd]`` configuration table, passed to every app.
    seed, salt : int
        Campaign seed and purpose; attempt ``a`` of row ``r`` runs with
        ``md_seed(seed, salt, r, a)``.
    retries : int
        Extra attempts of a failed run in this call.
    run_fn : callable(schedule, cvd_table, seed) or None
        What each app runs; :func:`run_rmd` when None. It must be importable by the
        workers (a function of an installed module) on process-based sites. When it
        takes a keyword ``stages`` (:func:`run_rmd` does), each app gets its row's
        :class:`~mapcvd.store.stage_checkpoints.StageCheckpoints` (the store's path
        and this process's run token), and the driver deletes that checkpoint once
        the row is recorded done.
    ranks : int
        MPI ranks of each run (``cvd.ranks_per_run``; not part of the run's settings, so
        a run may continue its stage checkpoint on another number of ranks): more than
        one goes to the ``"mpi"`` executor where the site has one
        (:func:`~mapcvd.workflows.sites.rank_placement`), and :func:`run_rmd` starts them.
    progress : callable(event) or None
        Called once all apps are submitted (``event`` "start") and after each finished
        attempt with ``{"row", "event"`` ("done", "failed" or "retry"), ``"message",
        "done", "failed", "remaining", "total"}`` (counts over ``rows`` in this call).

    Returns
    -------
    dict
        ``done`` and ``failed`` (rows), ``attempts`` (apps run), ``resumed`` (row ->
        stages taken from its stage checkpoint, for rows that continued one) and
        ``seconds``.

    Notes
    -----
    A retry gets a new MD seed (the next attempt number), except after a lost worker
    (Parsl's ``WorkerLost`` or ``ManagerLost``: a killed worker, a batch job at its
    walltime; the run itself did not fail): that failure is recorded without using
    up its attempt, so the retry, here or in a later invocation, runs with the same
    attempt number and seed and continues from the row's stage checkpoint.
    """
    import concurrent.futures as cf

    import parsl
    from mapcvd.workflows.parsl_runtime import parsl_block
    from mapcvd.workflows.sites import rank_placement
    from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

    from mapcvd.cvd.validation import md_seed
    from mapcvd.store.cvd_dataset import check_result
    from mapcvd.store.stage_checkpoints import StageCheckpoints

    run_fn = run_rmd if run_fn is None else run_fn
    checkpoints = takes_stages(run_fn)
    rows = [int(r) for r in rows]
    start = time.perf_counter()
    summary = {"done": [], "failed": [], "attempts": 0, "resumed": {}}
    if not rows:
        summary["seconds"] = 0.0
        return summary
    schedules = table.read("schedule", rows)
    prior = dict(zip(rows, table.read("attempts", rows).tolist()))
    S, k = table.n_stages, table.n_species
    with parsl_block(parsl_config, record=table.group) as dfk:
        executors, placement = rank_placement(dfk.config, ranks)
        app = parsl.python_app(rmd_app, executors=executors)
        app_table = {**cvd_table, "ranks_per_run": int(ranks)}
        futures: dict = {}

        def stages(row: int):
            return StageCheckpoints.for_row(table.group, row) if checkpoints else None

        def submit(i: int, tries: int, attempt: int) -> None:
            row = rows[i]
            s = md_seed(seed, salt, row, attempt)
            futures[app(run_fn, schedules[i], app_table, s, stages(row), **placement)] = (i, tries, attempt, s)

        for i in range(len(rows)):
            submit(i, 0, prior[rows[i]])
        if progress is not None:
            progress({"row": None, "event": "start", "message": "", "done": 0, "failed": 0,
                      "remaining": len(rows), "total": len(rows)})
        while futures:
            finished, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                i, tries, attempt, s = futures.pop(fut)
                row = rows[i]
                summary["attempts"] += 1
                try:
                    result = fut.result()
                    data = check_result(result, S, k)
                except Exception as exc:  # noqa: BLE001 - any failure of a run is recorded
                    message = one_line(exc)
                    # a lost worker is no failure of the run: the attempt (its number, its seed) is not used up
                    used = 0 if isinstance(exc, (WorkerLost, ManagerLost)) else 1
                    table.record_failure(row, message, seed=s, attempts=attempt + used)
                    if tries < retries:
                        event = "retry"
                        submit(i, tries + 1, attempt + used)
                    else:
                        event = "failed"
                        summary["failed"].append(row)
                else:
                    message = ""
                    attempts = attempt + 1
                    resumed = int(result.get("resumed_stages", 0) or 0)
                    notes = [f"succeeded on attempt {tries + 1} of this invocation"] if tries else []
                    if resumed:
                        notes.append(f"continued after stage {resumed} of {S} from its stage checkpoint")
                        summary["resumed"][row] = resumed
                    table.record_result(row, data, seed=s, attempts=attempts, message="; ".join(notes))
                    handle = stages(row)
                    if handle is not None:  # the app is done: its checkpoint is the driver's to delete
                        handle.delete()
                    event = "done"
                    summary["done"].append(row)
                if progress is not None:
                    progress({
                        "row": row, "event": event, "message": message,
                        "done": len(summary["done"]), "failed": len(summary["failed"]),
                        "remaining": len(rows) - len(summary["done"]) - len(summary["failed"]),
                        "total": len(rows),
                    })
    summary["seconds"] = time.perf_counter() - start
    return summary


def open_dataset(group, *, config: dict, rmd: dict, species: Sequence[str]):
    """Open the dataset table of a campaign store, or create it for these settings.

    A new table records ``seed`` (the campaign seed), ``n_mo``, the scaled ``ranges``
    and the reactive-MD settings ``rmd`` (under ``cvd``; ``n_stages`` is the table's
    stage count). An existing table must have been made with the same ``rmd`` settings
    (the runs of one dataset must be comparable); its recorded seed is kept.

    Raises
    ------
    mapcvd.errors.ConfigError
        When the settings differ from the stored dataset's.
    """
    from mapcvd.cvd.ranges import PAPER_RANGES
    from mapcvd.cvd.validation import ranges_to_dict
    from mapcvd.errors import ConfigError
    from mapcvd.store.cvd_dataset import RunTable
    from mapcvd.store.layout import DATASET_PATH

    n_mo, n_stages = int(rmd["n_mo"]), int(rmd["n_stages"])
    attrs = {"purpose": "dataset", "seed": int(config["campaign"]["seed"]), "n_mo": n_mo,
             "ranges": ranges_to_dict(PAPER_RANGES.scaled(n_mo)), "cvd": dict(rmd)}
    table, created = RunTable.open_or_create(group, DATASET_PATH, n_stages=n_stages, attrs=attrs, species=species)
    if not created:
        stored = table.attrs.get("cvd", {})
        diff = [f"cvd.{k} = {stored.get(k)!r} (now {rmd.get(k)!r})"
                for k in sorted(set(stored) | set(rmd)) if stored.get(k) != rmd.get(k)]
        if diff:
            raise ConfigError(
                f"the dataset in {group.store} was made with {'; '.join(diff)}; "
                "use the same [cvd] settings or another --store"
            )
    return table, created


def run_dataset(
    group,
    parsl_config,
    *,
    config: dict,
    runs: int,
    rmd: dict,
    species: Sequence[str],
    run_fn: RunFn | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Fill the campaign's CVD dataset up to ``runs`` runs (see the module docstring).

    Parameters
    ----------
    group : zarr.Group
        Root of the campaign store, read-write (this process is the only writer).
    parsl_config : parsl.config.Config or None
        Fresh site configuration, or None to run inside the one already loaded.
    config : dict
        Validated configuration (``[campaign]`` seed, ``[cvd_learning]`` retries).
    runs : int
        Runs wanted in the dataset; rows below ``runs`` that are not done are run.
    rmd : dict
        Reactive-MD settings, JSON-serialisable (the fields of
        ``mapcvd.cvd.rmd.RmdSettings``, at least ``n_mo`` and ``n_stages``); every app
        gets them as its ``cvd_table``. ``n_mo`` scales the gas ranges
        (``ScheduleRanges.scaled``).
    species : sequence of str
        Names of the molecules counted per stage (``mapcvd.cvd.rmd.SPECIES``).
    run_fn, progress : see :func:`run_rows`.
    log : callable(str)
        One line per event.

    Returns
    -------
    dict
        :func:`run_rows`'s summary plus ``counts`` (rows per status over the dataset),
        ``submitted`` (rows run), ``created`` and ``complete`` (all ``runs`` rows done).
    """
    from mapcvd.cvd.validation import dataset_schedules, ranges_from_dict
    from mapcvd.store.cvd_dataset import STATUS

    table, created = open_dataset(group, config=config, rmd=rmd, species=species)
    attrs = table.attrs
    have = table.n_runs
    if runs > have:
        ranges = ranges_from_dict(attrs["ranges"])
        table.extend(dataset_schedules(ranges, have, runs, table.n_stages, attrs["seed"]))
    status = table.status()[:runs]
    todo = np.flatnonzero(status != STATUS["done"])
    n_failed_before = int(np.count_nonzero(status == STATUS["failed"]))
    log(f"{'new' if created else 'existing'} dataset: {runs - len(todo)} of {runs} runs done, "
        f"{len(todo)} to run ({n_failed_before} failed before)"
        + (f"; {table.n_runs - runs} more rows stored beyond --runs are left as they are"
           if table.n_runs > runs else ""))
    summary = run_rows(table, todo, parsl_config, cvd_table=attrs["cvd"], seed=attrs["seed"],
                       salt=DATASET_SALT, retries=config["cvd_learning"]["retries"],
                       run_fn=run_fn, progress=progress, ranks=config["cvd"].get("ranks_per_run", 1))
    counts = table.counts()
    complete = bool(np.all(table.status()[:runs] == STATUS["done"]))
    summary.update(counts=counts, submitted=len(todo), created=created, complete=complete)
    return summary
