"""The CVD dataset: one Parsl app per staged reactive-MD run, written by the driver.

The NADE-CVD surrogate of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, is trained on many reactive-MD runs of random
schedules. :func:`run_dataset` plans them (seeded from the campaign seed, see
:func:`mapcvd.cvd.validation.dataset_schedules`), submits one app per run to the
executor ``"cpu"`` and, as each future finishes, writes the run's row of the table
``cvd/dataset`` (:class:`mapcvd.store.cvd_dataset.RunTable`). The driver is the only
writer of the store; apps only compute and return plain arrays.

* Resume: rows already ``done`` are never resubmitted; asking for more runs extends the
  table, and the first rows keep their schedules.
* Failures: an app that raises (a LAMMPS failure is an ``MDError``), or returns a result
  that fails :func:`~mapcvd.store.cvd_dataset.check_result`, is recorded as ``failed``
  with its message (never as data) and resubmitted with a new MD seed, up to
  ``retries`` more times in the same invocation. A later invocation tries failed rows
  again.

:func:`run_rows` is the generic part (any run table, any rows); the validation of the
agent's schedules (:mod:`mapcvd.workflows.cvd_validate`) uses it too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from mapcvd.errors import one_line
from mapcvd.timing import timed_app

RunFn = Callable[[np.ndarray, dict, int], object]
Progress = Callable[[dict], None]

#: ``purpose`` salts of :func:`mapcvd.cvd.validation.md_seed`.
DATASET_SALT, VALIDATION_SALT = 0, 1


def run_rmd(schedule: np.ndarray, cvd_table: dict, seed: int):
    """The default run function: the staged reactive MD of ``mapcvd.cvd.rmd``.

    Parameters
    ----------
    schedule : array (S, 4)
        ``(T, n_S2, n_H2, n_H2S)`` of each stage.
    cvd_table : dict
        The ``[cvd]`` configuration table (slab, stage length, timestep, ...).
    seed : int
        MD seed (gas placement, velocities).

    Returns
    -------
    mapcvd.cvd.rmd.RmdResult
    """
    from mapcvd.cvd.rmd import RmdSettings, run_schedule

    return run_schedule(np.asarray(schedule, dtype=np.float64), RmdSettings.from_config(cvd_table), seed=seed)


@timed_app
def rmd_app(run_fn: RunFn, schedule: np.ndarray, cvd_table: dict, seed: int) -> dict:
    """App body: one staged run through ``run_fn``; returns its result as plain arrays.

    The frames (positions per stage) stay in the worker: the table stores fractions,
    conditions and timings only. An exception of ``run_fn`` propagates to the driver,
    which records it.
    """
    result = run_fn(schedule, cvd_table, seed)
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
        workers (a function of an installed module) on process-based sites.
    progress : callable(event) or None
        Called once all apps are submitted (``event`` "start") and after each finished
        attempt with ``{"row", "event"`` ("done", "failed" or "retry"), ``"message",
        "done", "failed", "remaining", "total"}`` (counts over ``rows`` in this call).

    Returns
    -------
    dict
        ``done`` and ``failed`` (rows), ``attempts`` (apps run) and ``seconds``.
    """
    import concurrent.futures as cf

    import parsl
    from mapcvd.workflows.parsl_runtime import parsl_block

    from mapcvd.cvd.validation import md_seed
    from mapcvd.store.cvd_dataset import check_result

    run_fn = run_rmd if run_fn is None else run_fn
    rows = [int(r) for r in rows]
    start = time.perf_counter()
    summary = {"done": [], "failed": [], "attempts": 0}
    if not rows:
        summary["seconds"] = 0.0
        return summary
    schedules = table.read("schedule", rows)
    prior = dict(zip(rows, table.read("attempts", rows).tolist()))
    S, k = table.n_stages, table.n_species
    app = parsl.python_app(rmd_app, executors=["cpu"])

    with parsl_block(parsl_config):
        futures: dict = {}

        def submit(i: int, tries: int) -> None:
            row = rows[i]
            s = md_seed(seed, salt, row, prior[row] + tries)
            futures[app(run_fn, schedules[i], cvd_table, s)] = (i, tries, s)

        for i in range(len(rows)):
            submit(i, 0)
        if progress is not None:
            progress({"row": None, "event": "start", "message": "", "done": 0, "failed": 0,
                      "remaining": len(rows), "total": len(rows)})
        while futures:
            finished, _ = cf.wait(list(futures), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                i, tries, s = futures.pop(fut)
                row = rows[i]
                attempts = prior[row] + tries + 1
                summary["attempts"] += 1
                try:
                    data = check_result(fut.result(), S, k)
                except Exception as exc:  # noqa: BLE001 - any failure of a run is recorded
                    message = one_line(exc)
                    table.record_failure(row, message, seed=s, attempts=attempts)
                    if tries < retries:
                        event = "retry"
                        submit(i, tries + 1)
                    else:
                        event = "failed"
                        summary["failed"].append(row)
                else:
                    message = ""
                    note = f"succeeded on attempt {tries + 1} of this invocation" if tries else ""
                    table.record_result(row, data, seed=s, attempts=attempts, message=note)
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
                       run_fn=run_fn, progress=progress)
    counts = table.counts()
    complete = bool(np.all(table.status()[:runs] == STATUS["done"]))
    summary.update(counts=counts, submitted=len(todo), created=created, complete=complete)
    return summary
