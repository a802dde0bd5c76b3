"""``mapcvd cvd dataset|nade|agent|validate``: one-line errors, figures and stored results.

The learning campaign of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, on a small stored dataset. Reactive MD is replaced by a
cheap STAND-IN (``standin_rmd``: 2H grows fastest near 3000 K and at low S2, no LAMMPS);
Parsl runs on the ``threads`` site. Commands run in-process through ``mapcvd.cli.main``
(the same code path as the console script), one through a subprocess.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import PNG, assert_one_line_error, cli

from mapcvd.configs import config_path

from mapcvd.config import load_config, validate
from mapcvd.cvd.nade import from_arrays
from mapcvd.cvd.ranges import PAPER_RANGES
from mapcvd.cvd.rmd import RmdSettings
from mapcvd.cvd.validation import dataset_schedules
from mapcvd.store import (
    create_campaign,
    open_campaign,
    read_array_checkpoint,
    stage_statuses,
)
from mapcvd.store.cvd_dataset import SPECIES, STATUS, RunTable, check_result
from mapcvd.store.layout import DATASET_PATH, VALIDATION_PATH

S, N_MO, RUNS = 6, 16, 40
SMALL = {
    "campaign": {"seed": 3, "site": "threads"},
    "cvd": {"n_mo": N_MO, "n_stages": S},
    "cvd_learning": {
        "nade_encoder": "16", "nade_lstm": 16, "nade_decoder": "16", "nade_epochs": 150, "nade_lr": 1e-2,
        "nade_patience": 30, "agent_updates": 200, "agent_batch": 16, "agent_eval_episodes": 128,
        "agent_best": 4, "validate_top": 2,
    },
}


def standin_rmd(schedule, cvd_table, seed):
    """STAND-IN for the staged reactive MD (no LAMMPS): fields of an RmdResult."""
    x = np.asarray(schedule, dtype=np.float64)
    u = PAPER_RANGES.scaled(cvd_table["n_mo"]).normalise(x)
    k = 0.3 * np.exp(-0.5 * ((u[:, 0] - 0.75) / 0.15) ** 2) * (1.0 - 0.7 * u[:, 1])
    defect = np.cumprod(1.0 - k)
    n = len(x)
    return {"schedule": x, "fractions": np.stack([1.0 - defect, np.zeros(n), defect], axis=1),
            "gas_counts": np.rint(x[:, 1:]), "temperature_K": x[:, 0], "energy_eV": np.zeros(n),
            "species": np.zeros((n, len(SPECIES)), dtype=int), "n_atoms": np.full(n, 100),
            "md_seconds": 0.01, "wall_seconds": 0.01}




@pytest.fixture
def small_store(tmp_path):
    """A campaign store holding a 40-run dataset made with the stand-in (no Parsl)."""
    from mapcvd.cvd.validation import ranges_to_dict

    config = validate(SMALL)
    group = create_campaign(tmp_path / "c.zarr", config=config, seeds={"campaign": 3})
    ranges = PAPER_RANGES.scaled(N_MO)
    cvd = {"n_mo": N_MO, "n_stages": S}
    table = RunTable.create(group, DATASET_PATH, n_stages=S,
                            attrs={"seed": 3, "n_mo": N_MO, "ranges": ranges_to_dict(ranges), "cvd": cvd})
    x = dataset_schedules(ranges, 0, RUNS, S, 3)
    table.extend(x)
    for i in range(RUNS - 1):  # the last run failed: never used for training
        table.record_result(i, check_result(standin_rmd(x[i], cvd, i), S), seed=i, attempts=1)
    table.record_failure(RUNS - 1, "MDError: lost atoms", seed=0, attempts=2)
    return tmp_path / "c.zarr"


# --------------------------------------------------------------------- bad input
def test_bad_input_gives_one_line(tmp_path, capsys, small_store):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cvd_learning]\nnope = 1\n")
    new = tmp_path / "new.zarr"
    code, _, err = cli(capsys, "cvd", "dataset", "--runs", 2, "--store", new, "--config", bad)
    assert_one_line_error(code, err, "cvd_learning.nope", "allowed")
    code, _, err = cli(capsys, "cvd", "dataset", "--runs", 0, "--store", new)
    assert_one_line_error(code, err, "--runs", "0")
    assert not new.exists()  # refused before any work
    for command in ("nade", "agent", "validate"):
        code, _, err = cli(capsys, "cvd", command, "--store", tmp_path / "missing.zarr")
        assert_one_line_error(code, err, "no campaign store", "missing.zarr")
    empty = tmp_path / "empty.zarr"
    create_campaign(empty, config=validate(SMALL))
    code, _, err = cli(capsys, "cvd", "nade", "--store", empty)
    assert_one_line_error(code, err, "no CVD dataset", "mapcvd cvd dataset")
    code, _, err = cli(capsys, "cvd", "agent", "--store", small_store)
    assert_one_line_error(code, err, "no trained NADE-CVD", "mapcvd cvd nade")
    code, _, err = cli(capsys, "cvd", "validate", "--store", small_store)
    assert_one_line_error(code, err, "no agent results", "mapcvd cvd agent")
    widths = tmp_path / "widths.toml"
    widths.write_text("[cvd_learning]\nnade_encoder = '24 x'\n")
    code, _, err = cli(capsys, "cvd", "nade", "--store", small_store, "--config", widths)
    assert_one_line_error(code, err, "cvd_learning.nade_encoder")
    code, _, err = cli(capsys, "cvd", "agent", "--store", small_store, "--updates", -3)
    assert_one_line_error(code, err, "--updates")
    assert "cvd_nade" not in stage_statuses(open_campaign(small_store, "r"))


def test_unknown_config_key_in_a_subprocess(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cvd_learning]\nagent_updatez = 10\n")
    result = subprocess.run(
        [sys.executable, "-m", "mapcvd.cli", "cvd", "dataset", "--store", str(tmp_path / "c.zarr"),
         "--config", str(bad)], check=False, capture_output=True, text=True, timeout=300)
    assert_one_line_error(result.returncode, result.stderr, "cvd_learning.agent_updatez")
    assert not (tmp_path / "c.zarr").exists()


# ---------------------------------------------------------------- the pipeline
def test_nade_agent_validate_on_a_small_stored_dataset(small_store, tmp_path, capsys, monkeypatch):
    out = tmp_path / "figs"
    code, stdout, err = cli(capsys, "cvd", "nade", "--store", small_store, "--out", out)
    assert code == 0, err
    assert "mean absolute error per phase" in stdout
    for name in ("nade_loss.png", "nade_trajectories.png"):
        assert (out / name).read_bytes()[:8] == PNG
    group = open_campaign(small_store, "r")
    arrays, version, meta = read_array_checkpoint(group, "cvd/nade/weights")
    assert version == 1 and meta["model"]["lstm"] == 16 and meta["model"]["encoder"] == [16]
    model = from_arrays(arrays, meta["model"])
    assert model.hidden_size == 16
    assert len(meta["dataset_rows"]) == RUNS - 1 and RUNS - 1 not in meta["dataset_rows"]  # failed run unused
    assert set(meta["val_rows"]).isdisjoint(meta["train_rows"]) and len(meta["val_rows"]) == 8
    assert meta["mae_one_step"]["2H"] < 0.1 and meta["mae_free_run"]["defect"] < 0.15
    assert stage_statuses(group)["cvd_nade"] == "done"

    code, stdout, err = cli(capsys, "cvd", "agent", "--store", small_store, "--out", out)
    assert code == 0, err
    for name in ("agent_learning_curve.png", "agent_best_schedules.png"):
        assert (out / name).read_bytes()[:8] == PNG
    results, _, rmeta = read_array_checkpoint(group, "cvd/agent/results")
    best = results["best_schedules"]
    assert best.shape == (4, S, 4) and PAPER_RANGES.scaled(N_MO).contains(best)
    assert np.all(np.diff(results["best_returns"]) <= 0)  # best first
    assert results["mean_return"].shape == (200,)
    er = rmeta["expected_return"]
    assert er["agent"] > er["random"] > 0 and er["ratio"] == pytest.approx(er["agent"] / er["random"])
    assert f"{er['random']:.4f}" in stdout and "best schedule" in stdout
    _, policy_version, pmeta = read_array_checkpoint(group, "cvd/agent/policy")
    assert rmeta["policy_version"] == policy_version and pmeta["nade_version"] == 1

    import mapcvd.workflows.cvd_dataset as workflow

    monkeypatch.setattr(workflow, "run_rmd", standin_rmd)  # STAND-IN for the reactive MD
    code, stdout, err = cli(capsys, "cvd", "validate", "--store", small_store, "--out", out)
    assert code == 0, err
    for name in ("validation_trajectories.png", "initial_s2_2h.png"):
        assert (out / name).read_bytes()[:8] == PNG
    group = open_campaign(small_store, "r")
    table = RunTable.open(group, VALIDATION_PATH)
    assert table.status().tolist() == [STATUS["done"]] * 2
    np.testing.assert_array_equal(table.read("schedule"), best[:2])
    report = table.attrs["report"]
    assert report["agent_version"] == 1 and set(report["mae"]) == {"2H", "1T", "defect"}
    assert group[f"{VALIDATION_PATH}/nade_mean"].shape == (4, S, 3)
    assert stage_statuses(group)["cvd_validate"] == "done"
    code, stdout, err = cli(capsys, "cvd", "validate", "--store", small_store, "--out", out, "--top", 3)
    assert code == 0 and "2 of 3 schedules already run, 1 to run" in stdout
    code, _, err = cli(capsys, "cvd", "validate", "--store", small_store, "--top", 9)
    assert_one_line_error(code, err, "--top 9", "4 best schedules")


def test_dataset_command_on_threads_with_a_standin(tmp_path, capsys, monkeypatch):
    import mapcvd.workflows.cvd_dataset as workflow

    monkeypatch.setattr(workflow, "run_rmd", standin_rmd)  # STAND-IN for the reactive MD
    cfg = tmp_path / "c.toml"
    cfg.write_text("[campaign]\nsite = 'threads'\nseed = 9\n[cvd]\nn_stages = 4\n")
    store = tmp_path / "c.zarr"
    code, stdout, err = cli(capsys, "cvd", "dataset", "--runs", 5, "--store", store, "--config", cfg)
    assert code == 0, err
    assert "dataset: 5 done, 0 failed, 0 pending of 5 rows" in stdout
    group = open_campaign(store, "r")
    assert group.attrs["config"]["campaign"]["seed"] == 9
    table = RunTable.open(group, DATASET_PATH)
    np.testing.assert_array_equal(table.read("schedule"), dataset_schedules(PAPER_RANGES.scaled(16), 0, 5, 4, 9))
    assert table.attrs["cvd"]["n_stages"] == 4 and table.attrs["cvd"]["n_mo"] == 16
    # without --config the stored configuration is used; growing --runs extends
    code, stdout, err = cli(capsys, "cvd", "dataset", "--runs", 7, "--store", store)
    assert code == 0, err
    assert "5 of 7 runs done, 2 to run" in stdout
    assert RunTable.open(open_campaign(store, "r"), DATASET_PATH).counts()["done"] == 7


def test_packaged_configs_hold_the_learning_settings():
    demo = load_config()
    assert demo["cvd_learning"]["runs"] == 12 and demo["cvd_learning"]["nade_encoder"] == "24 48 72"
    paper = load_config(config_path("paper.toml"))
    assert paper["cvd_learning"]["runs"] == 10_000 and paper["cvd_learning"]["agent_updates"] == 15_000
    settings = RmdSettings.from_config(paper["cvd"])
    assert settings.n_mo == 288 and settings.n_stages == 20 and settings.stage_ps == 1000.0


def test_dataset_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    import mapcvd.workflows.cvd_dataset as workflow

    monkeypatch.setattr(workflow, "run_rmd", standin_rmd)  # STAND-IN for the reactive MD
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[campaign]\nsite = 'threads'\n[cvd]\nn_stages = 3\n")
    code, stdout, err = cli(capsys, "cvd", "dataset", "--runs", 3, "--store", tmp_path / "c.zarr", "--config", cfg)
    assert code == 0, err
    assert "reactive-MD runs" in stdout and "3/3" in stdout and "done 3 failed 0" in stdout
    assert "run 0 done" not in stdout  # a live bar, not one log line per run
