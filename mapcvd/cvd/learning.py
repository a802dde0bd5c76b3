"""The learning steps of the CVD campaign on a store: NADE-CVD, the agent, the validation plan.

Plain functions (no Parsl, no click) behind ``mapcvd cvd nade|agent|validate`` and the
campaign graph (:mod:`mapcvd.workflows.campaign`), after Rajak et al., npj Comput.
Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3:

* :func:`fit_nade` trains NADE-CVD on the done runs of ``cvd/dataset`` and stores the
  weights and held-out results (``cvd/nade/weights``, ``cvd/nade/results``);
* :func:`fit_agent` trains the REINFORCE agent on a surrogate chosen by name (the stored
  NADE-CVD, the paper's trained one or a checkpoint file) and stores the policy, the
  comparison with random schedules and the paper's strategy, and the best schedules
  (``cvd/agent/...`` for the stored NADE-CVD, ``cvd/agent_paper/...``,
  ``cvd/agent_file/...``);
* :func:`validation_plan` reads what the reactive-MD validation of the agent's best
  schedules needs, and :func:`validation_report` summarises its results.

They write the store (only the campaign driver process may call them) but no stage
status: their callers run them as stages (``cvd_nade``, the surrogate's agent stage)
through :func:`mapcvd.store.run_stage`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from mapcvd.config import config_values
from mapcvd.cvd.learning_settings import LearningSettings, parse_widths
from mapcvd.cvd.stored import dataset_table, jsonable, load_nade, next_version, read_checkpoint
from mapcvd.errors import InputError, StoreError
from mapcvd.store.layout import NADE_RESULTS, NADE_WEIGHTS, agent_paths, validation_path, validation_stage
from mapcvd.timing import measure

__all__ = [
    "NO_2H", "POLICY_HIDDEN", "no_2h", "fit_agent", "fit_nade", "parse_widths", "rmd_settings", "validation_plan",
    "validation_report",
]

POLICY_HIDDEN = (72, 24)
#: Largest dataset 2H fraction below which agent returns are reported as meaningless.
NO_2H = 0.01


def no_2h(max_2h: float | None) -> bool:
    """True when the campaign's own dataset formed no 2H (largest fraction ``max_2h`` below
    :data:`NO_2H`): returns on its NADE-CVD are then noise around 0, not a result. ``None``
    (an agent on a surrogate not trained on this dataset) is never that case."""
    return max_2h is not None and max_2h < NO_2H


# ----------------------------------------------------------------------- helpers
def rmd_settings(config: dict) -> tuple[dict, tuple[str, ...]]:
    """The ``[cvd]`` reactive-MD settings as a plain dict (checked), and the species names."""
    import dataclasses  # noqa: PLC0415

    from mapcvd.cvd.rmd import SPECIES, RmdSettings  # noqa: PLC0415

    settings = RmdSettings.from_config(config["cvd"])
    return jsonable(dataclasses.asdict(settings)), tuple(SPECIES)


# -------------------------------------------------------------------------- NADE
def fit_nade(group, config: dict, *, progress: Callable[[int, float, float], None] | None = None,
             log: Callable[[str], None] = print) -> dict:
    """Train NADE-CVD on the done dataset runs; store weights and held-out results (stage ``cvd_nade``).

    Parameters
    ----------
    group : zarr.Group
        Campaign root, read-write (the driver process).
    config : dict
        Validated configuration (``[cvd_learning]``).
    progress : callable(epoch, train_nll, val_nll), optional
        Called after every epoch.
    log : callable(str)
        One line before training.

    Returns
    -------
    dict
        ``model``, ``hist``, ``version``, ``n`` (runs), ``rows``, ``X``, ``Z``, ``val``
        (indices held out), ``mean`` and ``var`` (free-running prediction of those),
        ``mae_one_step``, ``mae_free_run`` (per phase) and ``seconds``.
    """
    import torch  # noqa: PLC0415

    from mapcvd.cvd.nade import evaluate_nade, to_arrays, train_nade  # noqa: PLC0415
    from mapcvd.cvd.validation import free_run, phase_mae, ranges_from_dict  # noqa: PLC0415
    from mapcvd.store import write_array_checkpoint  # noqa: PLC0415

    learning = LearningSettings.from_config(config)
    model_config = learning.nade_model
    table = dataset_table(group)
    data = table.done()
    n = len(data["rows"])
    if n < 2:
        raise InputError(f"the dataset in {group.store} has {n} done run(s); NADE-CVD needs at least 2 "
                         "(one to train, one to validate): run 'mapcvd cvd dataset' first")
    attrs = table.attrs
    ranges = ranges_from_dict(attrs["ranges"])
    X, Z = data["X"], data["Z"]
    torch.set_num_threads(learning.threads)
    log(f"NADE-CVD {model_config} on {n} runs x {table.n_stages} stages "
        f"({learning.nade_val_fraction:.0%} held out), up to {learning.nade_epochs} epochs")
    start = time.perf_counter()
    with measure("torch"):
        model, hist = train_nade(
            X, Z, epochs=learning.nade_epochs, batch_size=learning.nade_batch, lr=learning.nade_lr,
            validation_fraction=learning.nade_val_fraction, patience=learning.nade_patience or None,
            seed=attrs["seed"], ranges=ranges, config=model_config, progress=progress,
        )
        seconds = time.perf_counter() - start
        val, train = np.asarray(hist["val_runs"]), np.asarray(hist["train_runs"])
        mae_step = evaluate_nade(model, X[val], Z[val], ranges=ranges)
        mean, var = free_run(model, X[val], ranges)
    mae_free = phase_mae(mean, Z[val])
    version = next_version(group, NADE_WEIGHTS)
    meta = jsonable({
        "model": model.config, "ranges": attrs["ranges"], "n_stages": table.n_stages,
        "dataset_rows": data["rows"], "train_rows": data["rows"][train], "val_rows": data["rows"][val],
        "best_epoch": hist["best_epoch"], "best_val_nll": hist["best_val"], "epochs_run": hist["epochs_run"],
        "mae_one_step": mae_step, "mae_free_run": mae_free, "seconds": seconds,
        "settings": {k: v for k, v in config_values(learning).items() if k.startswith("nade_")},
    })
    write_array_checkpoint(group, NADE_WEIGHTS, to_arrays(model), version=version, meta=meta)
    write_array_checkpoint(
        group, NADE_RESULTS,
        {"train_nll": np.asarray(hist["train"]), "val_nll": np.asarray(hist["val"]),
         "val_rows": data["rows"][val], "val_mean": mean, "val_var": var},
        version=next_version(group, NADE_RESULTS), meta={"nade_version": version, **meta})
    return {"model": model, "hist": hist, "version": version, "n": n, "rows": data["rows"], "X": X, "Z": Z,
            "val": val, "mean": mean, "var": var, "mae_one_step": mae_step, "mae_free_run": mae_free,
            "seconds": seconds}


# ------------------------------------------------------------------------- agent
def fit_agent(group, config: dict, *, surrogate=None, updates: int | None = None,
              batch: int | None = None, progress: Callable[[int, dict], None] | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Train the REINFORCE agent on a frozen surrogate; store it and its comparison.

    Parameters
    ----------
    group : zarr.Group
        Campaign root, read-write (the driver process).
    config : dict
        Validated configuration (``[cvd_learning]``, ``[campaign] seed``).
    surrogate : str or SurrogateChoice, optional
        ``store`` (the NADE-CVD trained on this campaign's dataset), ``paper`` (the CVD
        paper's trained NADE-CVD) or a checkpoint path (:mod:`mapcvd.cvd.surrogates`),
        or one already resolved; default ``cvd_learning.surrogate``. Its stage
        (``choice.stage``) is ``cvd_agent`` for ``store``, ``cvd_agent_paper`` for
        ``paper``, ``cvd_agent_file`` for a file.
    updates, batch : int, optional
        REINFORCE updates and episodes per update (default: the configuration's).
    progress : callable(update, stats), optional
        Called after every update.
    log : callable(str)
        One line before and one after training.

    Returns
    -------
    dict
        ``hist``, ``comparison`` (undiscounted expected returns: ``agent``,
        ``agent_greedy``, ``random``, ``strategy``, ``ratio``, ``ratio_strategy``),
        ``best`` (schedules, returns, z), ``ranges``, ``updates``, ``batch``,
        ``policy_version``, ``max_2h`` (largest 2H fraction of the dataset; None for a
        surrogate not trained on this campaign), ``surrogate`` (the
        :class:`~mapcvd.cvd.surrogates.SurrogateChoice`), ``paths`` and ``seconds``.

    Notes
    -----
    REINFORCE with a value baseline as in Rajak et al., npj Comput. Mater. 7, 108
    (2021), doi:10.1038/s41524-021-00535-3, with one change: the policy's mean is the
    next stage's conditions anywhere in the range (``target_box``), not a bounded change
    of the current ones, so that the agent can jump by thousands of kelvin as the paper's
    learned schedules do. A change policy with steps that large locked itself at 3750 K
    on the paper's NADE-CVD (a mean change past the bound is clipped whatever the noise,
    so it learns nothing more: return 0.23, below random schedules, after 1,500
    updates), where the target policy reached 9.7 in 3,000 updates on each of 3 seeds.
    The exploration noise is the paper's fixed (250 K, 20, 20, 20).
    """
    import torch  # noqa: PLC0415

    from mapcvd.cvd.agent import PolicyValue, train_agent  # noqa: PLC0415
    from mapcvd.cvd.surrogates import SurrogateChoice, resolve_surrogate  # noqa: PLC0415
    from mapcvd.cvd.validation import best_schedules, compare_returns, policy_arrays, ranges_to_dict  # noqa: PLC0415
    from mapcvd.store import write_array_checkpoint  # noqa: PLC0415

    learning = LearningSettings.from_config(config)
    updates, batch = updates or learning.agent_updates, batch or learning.agent_batch
    choice = surrogate if isinstance(surrogate, SurrogateChoice) else \
        resolve_surrogate(surrogate or learning.surrogate, group)
    model, ranges, n_stages = choice.model, choice.ranges, choice.n_stages
    max_2h = None
    if choice.kind == "store":
        dataset = dataset_table(group)
        seed = int(dataset.attrs["seed"])
        max_2h = float(np.nanmax(dataset.done()["Z"][..., 0], initial=0.0))
    else:
        seed = int(config["campaign"]["seed"])
    torch.set_num_threads(learning.threads)
    action_scale, target_box = tuple(ranges.span), (tuple(ranges.low), tuple(ranges.high))
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        policy = PolicyValue(input_size=model.hidden_size, hidden=POLICY_HIDDEN, action_scale=action_scale,
                             target_box=target_box)
    policy_path, results_path = agent_paths(choice.kind)
    log(f"agent on the {choice.label} surrogate: {updates} updates x {batch} episodes of {n_stages} stages")
    start = time.perf_counter()
    with measure("torch"):
        policy, hist = train_agent(
            model, updates=updates, batch=batch, n_stages=n_stages, seed=seed + 1, ranges=ranges,
            lr=learning.agent_lr, gamma=learning.agent_gamma, policy=policy, progress=progress,
        )
        seconds = time.perf_counter() - start
        ev = {"ranges": ranges, "n_stages": n_stages, "n_episodes": learning.agent_eval_episodes, "seed": seed + 2}
        comparison = compare_returns(model, policy, **ev)
        best = best_schedules(model, policy, k=learning.agent_best, **ev)
    meta = jsonable({
        "input_size": model.hidden_size, "hidden": list(POLICY_HIDDEN), "action_scale": list(action_scale),
        "target_box": [list(b) for b in target_box],
        "sigma": list(ranges.step_std), "ranges": ranges_to_dict(ranges), "n_stages": n_stages,
        "surrogate": {"kind": choice.kind, "label": choice.label, "n_mo": choice.n_mo, **choice.meta},
        "nade_version": choice.meta.get("nade_version"), "updates": updates, "batch": batch,
        "lr": learning.agent_lr, "gamma": learning.agent_gamma, "seed": seed + 1, "seconds": seconds,
        "expected_return": comparison, "return": "undiscounted sum over stages of the predicted mean 2H",
        "dataset_max_2h": max_2h,
    })
    policy_version = next_version(group, policy_path)
    write_array_checkpoint(group, policy_path, policy_arrays(policy), version=policy_version, meta=meta)
    results = {
        "mean_return": np.asarray(hist["mean_return"]), "total_return": np.asarray(hist["total_return"]),
        "loss": np.asarray(hist["loss"]), "value_loss": np.asarray(hist["value_loss"]),
        "best_schedules": best["schedules"], "best_returns": best["returns"], "best_z": best["z"],
        "proposal_x0": best["all_x0"], "proposal_returns": best["all_returns"],
        "proposal_final_2h": best["all_final_2h"], "proposal_late_2h": best["all_late_2h"],
    }
    write_array_checkpoint(group, results_path, results, version=next_version(group, results_path),
                           meta={"policy_version": policy_version, **meta})
    log(f"agent trained in {seconds:.1f} s; saved {policy_path} v{policy_version} and {results_path}")
    return {"hist": hist, "comparison": comparison, "best": best, "ranges": ranges, "updates": updates,
            "batch": batch, "policy_version": policy_version, "max_2h": max_2h, "surrogate": choice,
            "paths": (policy_path, results_path), "seconds": seconds}


# -------------------------------------------------------------------- validation
def validation_plan(group, config: dict, top: int | None = None, surrogate: str | None = None) -> dict:
    """What the reactive-MD validation of the agent's ``top`` best schedules needs, read from the store.

    ``surrogate`` (default ``cvd_learning.surrogate``) names the agent to validate: the one
    trained on this campaign's NADE-CVD (``store``) or on another surrogate (``paper``, a
    file). Another surrogate's schedules are in the units of its slab (288 Mo for the
    paper's); they are run on this campaign's slab with the gas counts scaled by
    ``n_mo / 288`` (the temperatures kept), which is a check of the schedule's shape on a
    small, short reactive-MD cell, not a reproduction of the surrogate's runs.

    Returns
    -------
    dict
        ``top``, ``schedules`` (all stored best schedules, best first, surrogate units),
        ``md_schedules`` (the same in the units of this campaign's slab), ``mean`` and
        ``std`` (the surrogate's free-running prediction of each), ``agent_version``,
        ``agent_meta``, ``results`` (the agent's results arrays), ``ranges``,
        ``dataset`` (its run table), ``species``, ``kind``, ``table_path``, ``stage``
        and ``caveat`` (None, or the line to print beside the comparison).

    Raises
    ------
    InputError, StoreError
        ``top`` out of range, or a missing dataset, agent or surrogate.
    """
    from mapcvd.cvd.surrogates import resolve_surrogate, surrogate_kind  # noqa: PLC0415
    from mapcvd.cvd.validation import free_run  # noqa: PLC0415

    top = top or config["cvd_learning"]["validate_top"]
    kind = surrogate_kind(surrogate or config["cvd_learning"]["surrogate"])
    dataset = dataset_table(group)
    command = "agent" if kind == "store" else f"agent --surrogate {surrogate or kind}"
    results, agent_version, agent_meta = read_checkpoint(group, agent_paths(kind)[1], "agent results", command)
    schedules = results["best_schedules"]
    if top > len(schedules):
        raise InputError(f"--top {top} asks for more than the {len(schedules)} best schedules stored "
                         "(cvd_learning.agent_best)")
    caveat = None
    if kind == "store":
        try:
            model, _, _, ranges = load_nade(group, agent_meta["nade_version"])
        except StoreError:
            raise StoreError(f"the NADE-CVD v{agent_meta['nade_version']} the agent was trained on is no longer "
                             "stored; run 'mapcvd cvd agent' again") from None
        md_schedules = schedules
    else:
        choice = resolve_surrogate(agent_meta["surrogate"]["label"] if kind == "file" else kind, group)
        model, ranges = choice.model, choice.ranges
        scale = float(dataset.attrs["n_mo"]) / float(choice.n_mo)
        md_schedules = schedules * np.array([1.0, scale, scale, scale])
        caveat = (f"the {choice.label} surrogate's schedules (for {choice.n_mo} Mo and its stage length) ran on this "
                  f"campaign's {dataset.attrs['n_mo']}-Mo slab with gas counts x {scale:.3g} and this campaign's "
                  "stage length: a check of the schedule on a small, short reactive-MD cell, not a reproduction "
                  "of the surrogate's runs")
    mean, var = free_run(model, schedules, ranges)
    return {"top": int(top), "schedules": schedules, "md_schedules": md_schedules, "mean": mean, "std": np.sqrt(var),
            "agent_version": agent_version, "agent_meta": agent_meta, "results": results, "ranges": ranges,
            "dataset": dataset, "species": dataset.attrs["species"], "kind": kind,
            "table_path": validation_path(kind), "stage": validation_stage(kind), "caveat": caveat}


def validation_report(table, plan: dict) -> dict:
    """Compare the validated schedules' reactive MD with NADE-CVD; store the report on ``table``.

    Returns
    -------
    dict
        ``agent_version``, ``rows_done``, ``gamma``, ``md_return_dataset`` and, when
        some schedules ran, ``mae`` (per phase), ``md_return_agent`` and
        ``nade_return_agent``.
    """
    from mapcvd.cvd.validation import phase_mae, schedule_return  # noqa: PLC0415

    done = table.done()
    rows = done["rows"][done["rows"] < plan["top"]]
    ds = plan["dataset"].done()
    report = {"agent_version": plan["agent_version"], "rows_done": rows,
              "gamma": 1.0,  # the agent's comparison: the undiscounted sum of 2H over the stages
              "md_return_dataset": float(schedule_return(ds["Z"]).mean()) if len(ds["rows"]) else None}
    if len(rows):
        z_md = table.read("Z", rows)
        report["mae"] = phase_mae(plan["mean"][rows], z_md)
        report["md_return_agent"] = float(schedule_return(z_md).mean())
        report["nade_return_agent"] = float(plan["results"]["best_returns"][rows].mean())
    table.set_attrs(report=jsonable(report))
    return report
