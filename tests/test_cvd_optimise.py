"""Gradient ascent on CVD schedules through a frozen surrogate (``mapcvd cvd optimise``).

The objective is the undiscounted return of Rajak et al., npj Comput. Mater. 7, 108
(2021), doi:10.1038/s41524-021-00535-3: the sum over the stages of the surrogate's
predicted mean 2H fraction. On :class:`~mapcvd.cvd.synthetic.SyntheticSurrogate` the
best schedule is known in closed form; the command runs on the paper's shipped NADE-CVD.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli_helpers import PNG, assert_one_line_error, cli

from mapcvd.cvd.agent import schedule_returns
from mapcvd.cvd.nade import NadeCVD
from mapcvd.cvd.optimise import optimise_schedules, optimum_path, read_optimum
from mapcvd.cvd.validation import free_run
from mapcvd.cvd.ranges import PAPER_RANGES
from mapcvd.cvd.schedule import read_schedule
from mapcvd.cvd.synthetic import SyntheticSurrogate
from mapcvd.errors import InputError





def undiscounted(surrogate, schedules) -> np.ndarray:
    return schedule_returns(surrogate, schedules, ranges=PAPER_RANGES, gamma=1.0).numpy()


# --------------------------------------------------------------- the optimiser
def test_finds_the_known_best_schedule_of_the_synthetic_surrogate():
    s = SyntheticSurrogate()
    best = undiscounted(s, s.optimal_schedule()[None])[0]
    r = optimise_schedules(s, PAPER_RANGES, 20, starts=8, steps=300, seed=1)
    assert r["returns"].shape == (8,) and r["schedules"].shape == (8, 20, 4) and r["z"].shape == (8, 20, 3)
    assert best * 0.99 <= r["best_return"] <= best + 1e-4
    assert r["best_return"] > np.mean(r["initial_returns"]) + 5
    assert PAPER_RANGES.contains(r["schedules"])
    np.testing.assert_allclose(undiscounted(s, r["schedules"]), r["returns"], rtol=1e-5)
    top = r["schedules"][r["order"][0]]
    assert r["returns"][r["order"][0]] == r["best_return"] and r["median_return"] <= r["best_return"]
    np.testing.assert_allclose(top[:, 0], s.t_opt, atol=50.0)  # T held at the fastest growth
    assert np.all(top[1:, 1] < 30.0)  # S2 at (close to) its minimum


def test_random_first_stage_is_held_exactly_as_drawn():
    s = SyntheticSurrogate()
    r = optimise_schedules(s, PAPER_RANGES, 20, starts=6, steps=300, seed=4, first_stage="random")
    drawn = PAPER_RANGES.uniform_start(6, np.random.default_rng(4))
    assert r["first_stage"] == "random"
    assert np.array_equal(r["schedules"][:, 0], drawn)
    optimal = np.tile(s.optimal_schedule(), (6, 1, 1))
    optimal[:, 0] = drawn  # the best that can be done after that first stage
    assert r["best_return"] >= 0.99 * undiscounted(s, optimal)[r["order"][0]]
    free = optimise_schedules(s, PAPER_RANGES, 20, starts=6, steps=5, seed=4)
    assert not np.array_equal(free["schedules"][:, 0], drawn)  # "free" moves it


def test_trainable_surrogate_stays_untouched():
    torch.manual_seed(0)
    model = NadeCVD(encoder=(8,), lstm=8, decoder=(8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = optimise_schedules(model, PAPER_RANGES, 5, starts=3, steps=5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()) and model.training
    np.testing.assert_allclose(free_run(model, r["schedules"], PAPER_RANGES)[0][..., 0].sum(-1),
                               r["returns"], rtol=1e-6)


@pytest.mark.parametrize("kwargs, words", [
    ({"starts": 0}, "starts"), ({"steps": 0}, "steps"), ({"first_stage": "fixed"}, "first stage"),
    ({"lr": 0.0}, "learning rate"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(InputError, match=words):
        optimise_schedules(SyntheticSurrogate(), PAPER_RANGES, 20, **kwargs)


# ------------------------------------------------------------------ the command
def test_optimise_command_on_the_paper_surrogate(tmp_path, capsys):
    out = tmp_path / "figs"
    code, stdout, err = cli(capsys, "cvd", "optimise", "--surrogate", "paper", "--starts", 4, "--steps", 30,
                            "--json", "--out", out)
    assert code == 0, err
    got = json.loads(stdout)
    assert list(got) == ["best_return", "median_return", "best_schedule", "starts"]
    assert got["starts"] == 4 and np.shape(got["best_schedule"]) == (20, 4)
    assert got["best_return"] >= got["median_return"]
    assert PAPER_RANGES.contains(np.asarray(got["best_schedule"]))
    best = read_schedule(out / "optimised_best.csv", PAPER_RANGES)
    np.testing.assert_allclose(best, got["best_schedule"], rtol=1e-9)
    assert (out / "optimised_best.png").read_bytes()[:8] == PNG
    # predict on the written schedule gives the same return
    code, stdout, err = cli(capsys, "cvd", "predict", "--surrogate", "paper", "--schedule",
                            out / "optimised_best.csv", "--json")
    assert code == 0, err
    assert abs(np.sum(np.asarray(json.loads(stdout)["fractions"])[:, 0]) - got["best_return"]) < 1e-4
    # the table form
    code, stdout, err = cli(capsys, "cvd", "optimise", "--surrogate", "paper", "--starts", 2, "--steps", 3,
                            "--first-stage", "random", "--out", out)
    assert code == 0, err
    assert "best schedule" in stdout and "optimised_best.csv" in stdout and "f_2H" in stdout


def test_results_are_kept_in_an_existing_store(tmp_path, capsys):
    from mapcvd.config import load_config
    from mapcvd.store import create_campaign, open_campaign

    store = tmp_path / "c.zarr"
    create_campaign(store, config=load_config(None), seeds={"campaign": 1})
    assert read_optimum(open_campaign(store, "r"), "paper", "free") is None
    for k in (1, 2):
        code, stdout, err = cli(capsys, "cvd", "optimise", "--surrogate", "paper", "--store", store,
                                "--starts", 3, "--steps", 4, "--seed", k, "--json")
        assert code == 0, err
        got = json.loads(stdout)
        stored = read_optimum(open_campaign(store, "r"), "paper", "free")
        assert stored["version"] == k and stored["surrogate"] == "paper" and stored["starts"] == 3
        assert stored["best_return"] == pytest.approx(got["best_return"])
        np.testing.assert_allclose(stored["schedules"][stored["order"][0]], got["best_schedule"])
    assert optimum_path("paper", "free") in open_campaign(store, "r")
    assert read_optimum(open_campaign(store, "r"), "paper") is None  # the agent's reference: first stage random
    assert (tmp_path / "c.zarr.figures" / "optimised_best.csv").is_file()
    assert read_optimum(open_campaign(store, "r"), "store") is None


def test_paper_without_store_stores_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "cvd", "optimise", "--surrogate", "paper", "--starts", 1, "--steps", 1, "--json")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cvd_optimise"]
    assert (tmp_path / "cvd_optimise" / "optimised_best.csv").is_file()


@pytest.mark.parametrize("args, words", [
    (("--surrogate", "nade"), ("unknown surrogate", "nade")),
    (("--surrogate", "paper", "--starts", 0), ("--starts",)),
    (("--surrogate", "paper", "--steps", -2), ("--steps",)),
    (("--surrogate", "paper", "--first-stage", "fixed"), ("--first-stage",)),
    (("--surrogate", "store",), ("--store",)),
])
def test_bad_command_input_gives_one_line(args, words, tmp_path, capsys):
    code, stdout, err = cli(capsys, "cvd", "optimise", *args, "--out", tmp_path / "o", "--json")
    assert_one_line_error(code, err, *words)
    assert stdout == "" and not (tmp_path / "o").exists()


def test_a_folder_that_is_not_a_store_fails_before_any_work(tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a campaign store")
    code, stdout, err = cli(capsys, "cvd", "optimise", "--surrogate", "paper", "--store", folder, "--json")
    assert_one_line_error(code, err, "notes", "not a campaign store")
    assert stdout == "" and not (tmp_path / "notes.figures").exists()
