"""The REINFORCE agent on the CVD paper's own trained NADE-CVD (``--surrogate paper``).

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3: their
agent beats random schedules by more than 50% and its schedules run hot, then anneal.
The fast tests check the command's output, the stored results, the paper's strategy
and the validation of the paper agent's schedules on a campaign's own slab (reactive
MD replaced by the STAND-IN of ``test_cvd_learning_cli``); the heavy test checks the
paper's claims after 5,000 updates.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import PNG, assert_one_line_error, cli
from test_cvd_learning_cli import N_MO, small_store, standin_rmd  # noqa: F401

from mapcvd.cvd.agent import schedule_returns
from mapcvd.cvd.paper_nade import load_paper_checkpoint
from mapcvd.cvd.ranges import PAPER_RANGES
from mapcvd.cvd.validation import paper_strategy
from mapcvd.store import open_campaign, read_array_checkpoint, stage_statuses
from mapcvd.store.cvd_dataset import STATUS, RunTable

KEYS = {"updates", "agent_return", "random_return", "strategy_return", "best_return", "best_schedule"}


def test_paper_strategy_is_the_reported_schedule():
    x0 = np.array([[1000.0, 200.0, 30.0, 150.0], [3000.0, 20.0, 250.0, 20.0]])
    s = paper_strategy(x0, 20, PAPER_RANGES)
    assert s.shape == (2, 20, 4)
    np.testing.assert_array_equal(s[:, 0], x0)
    assert np.all(s[:, 1:8, 0] == 3500.0) and np.all(s[:, 8:, 0] == 2000.0)  # stages 2-8, then 9 on
    assert np.all(s[:, 1:, 1:] == [40.0, 100.0, 60.0])
    small = paper_strategy(x0[:1] * [1, 16 / 288, 16 / 288, 16 / 288], 20, PAPER_RANGES.scaled(16))
    np.testing.assert_allclose(small[0, 1, 1:], np.array([40.0, 100.0, 60.0]) * 16 / 288)


def test_agent_on_the_paper_surrogate_prints_exactly_the_json_keys(tmp_path, capsys):
    store, out = tmp_path / "p.zarr", tmp_path / "figs"
    code, stdout, err = cli(capsys, "cvd", "agent", "--surrogate", "paper", "--store", store, "--updates", 30,
                            "--batch", 8, "--json", "--out", out)
    assert code == 0, err
    result = json.loads(stdout)  # nothing else on stdout
    assert set(result) == KEYS and result["updates"] == 30
    best = np.asarray(result["best_schedule"])
    assert best.shape == (20, 4) and PAPER_RANGES.contains(best)
    model = load_paper_checkpoint()
    again = float(schedule_returns(model, best[None], ranges=PAPER_RANGES, gamma=1.0)[0])
    assert again == pytest.approx(result["best_return"], rel=1e-4)  # the undiscounted sum of 2H (float32)
    assert result["strategy_return"] > 10 * result["random_return"] > 0  # the paper surrogate is not flat
    for name in ("cvd_fig3_paper.png", "agent_learning_curve_paper.png", "agent_best_schedules_paper.png"):
        assert (out / name).read_bytes()[:8] == PNG
    group = open_campaign(store, "r")
    arrays, _, meta = read_array_checkpoint(group, "cvd/agent_paper/results")
    assert meta["surrogate"]["kind"] == "paper" and meta["surrogate"]["n_mo"] == 288
    assert meta["expected_return"]["agent"] == pytest.approx(result["agent_return"])
    assert arrays["total_return"].shape == (30,) and arrays["proposal_late_2h"].shape == (1024,)
    assert stage_statuses(group)["cvd_agent_paper"] == "done"
    assert "cvd/agent" not in group or "policy" not in group["cvd/agent"]  # the store's agent is untouched


def test_unknown_surrogate_and_bad_checkpoint_are_one_line_errors(tmp_path, capsys):
    store = tmp_path / "p.zarr"
    code, _, err = cli(capsys, "cvd", "agent", "--surrogate", "papr", "--store", store, "--updates", 2)
    assert_one_line_error(code, err, "unknown surrogate", "papr")
    bad = tmp_path / "bad.pt"
    torch.save({"encoder": {}, "lstm": {}}, bad)
    code, _, err = cli(capsys, "cvd", "agent", "--surrogate", bad, "--store", store, "--updates", 2)
    assert_one_line_error(code, err, "missing key", "decoder")
    code, _, err = cli(capsys, "cvd", "agent", "--surrogate", tmp_path / "none.pt", "--store", store)
    assert_one_line_error(code, err, "does not exist")


def test_validate_runs_the_paper_agents_schedules_scaled_to_the_campaign_slab(small_store, tmp_path, capsys,
                                                                               monkeypatch):
    import mapcvd.workflows.cvd_dataset as workflow

    code, _, err = cli(capsys, "cvd", "agent", "--surrogate", "paper", "--store", small_store, "--updates", 10,
                       "--batch", 4, "--out", tmp_path)
    assert code == 0, err
    monkeypatch.setattr(workflow, "run_rmd", standin_rmd)  # STAND-IN for the reactive MD
    code, stdout, err = cli(capsys, "cvd", "validate", "--surrogate", "paper", "--store", small_store, "--top", 2,
                            "--out", tmp_path)
    assert code == 0, err
    assert "caveat:" in stdout and "x 0.0556" in stdout  # gas counts x 16/288
    group = open_campaign(small_store, "r")
    results, _, _ = read_array_checkpoint(group, "cvd/agent_paper/results")
    table = RunTable.open(group, "cvd/validation_paper")
    assert table.status().tolist() == [STATUS["done"]] * 2
    expected = results["best_schedules"][:2] * np.array([1.0, N_MO / 288, N_MO / 288, N_MO / 288])
    np.testing.assert_allclose(table.read("schedule"), expected)  # all 20 stages, on the 16-Mo slab
    assert stage_statuses(group)["cvd_validate_paper"] == "done"
    assert "cvd_validate" not in stage_statuses(group)  # the store agent's validation is another stage
    assert (tmp_path / "validation_trajectories_paper.png").read_bytes()[:8] == PNG


@pytest.mark.heavy
def test_paper_agent_beats_random_by_half_and_the_paper_strategy_and_anneals(tmp_path, capsys):
    """The paper's claims on its own surrogate, after at most 5,000 updates (default seed)."""
    code, stdout, err = cli(capsys, "cvd", "agent", "--surrogate", "paper", "--store", tmp_path / "p.zarr",
                            "--updates", 5000, "--json", "--out", tmp_path)
    assert code == 0, err
    r = json.loads(stdout)
    assert r["agent_return"] >= 1.5 * r["random_return"]
    assert r["agent_return"] >= r["strategy_return"]
    T = np.asarray(r["best_schedule"])[:, 0]
    assert T[1:7].mean() >= 3000.0  # hot for stages 2-7
    assert T[1:7].mean() - T[-10:].mean() >= 500.0  # then anneals
