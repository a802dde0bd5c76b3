"""The CVD paper's trained NADE-CVD: ``mapcvd cvd predict`` against a plain-torch reference.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3, ship
their trained NADE-CVD (``data/surrogates/rl_cvd_MD_MoS2.pt``). The reference
predictions in ``fixtures/paper_nade_reference.json`` come from
``fixtures/paper_nade_reference.py``, a standalone script that rebuilds the model with
``torch.nn.Linear``/``torch.nn.LSTM`` from the checkpoint (no mapcvd) and re-runs the
LSTM over the whole prefix at every stage. Commands run in-process through
``mapcvd.cli.main``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_helpers import assert_one_line_error, cli

from mapcvd.cvd.paper_nade import load_paper_checkpoint, paper_checkpoint_path
from mapcvd.cvd.ranges import PAPER_RANGES

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCE = json.loads((FIXTURES / "paper_nade_reference.json").read_text())
HEADER = "T,n_S2,n_H2,n_H2S"


def _reference_module():
    spec = importlib.util.spec_from_file_location("paper_nade_reference", FIXTURES / "paper_nade_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module




def write_csv(path: Path, rows, header: str = HEADER) -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return path


def predict_json(capsys, surrogate, schedule: Path) -> dict:
    code, out, err = cli(capsys, "cvd", "predict", "--surrogate", surrogate, "--schedule", schedule, "--json")
    assert code == 0, err
    return json.loads(out)  # nothing but the JSON object on stdout


# ---------------------------------------------------------------- predictions
def test_reference_fixture_is_of_the_shipped_checkpoint():
    from mapcvd.cvd.paper_nade import PAPER_SHA256

    assert REFERENCE["sha256"] == PAPER_SHA256
    assert set(REFERENCE["schedules"]) == set(REFERENCE["fractions"]) and len(REFERENCE["schedules"]) >= 4


@pytest.mark.parametrize("name", sorted(REFERENCE["schedules"]))
def test_predict_matches_the_plain_torch_reference(name, tmp_path, capsys):
    schedule = write_csv(tmp_path / f"{name}.csv", REFERENCE["schedules"][name])
    got = predict_json(capsys, "paper", schedule)
    assert set(got) == {"stages", "fractions"}
    assert got["stages"] == 20 and np.shape(got["fractions"]) == (20, 3)
    np.testing.assert_allclose(got["fractions"], REFERENCE["fractions"][name], atol=1e-4, rtol=0)


def test_predict_table(tmp_path, capsys):
    schedule = write_csv(tmp_path / "s.csv", REFERENCE["schedules"]["paper_strategy"])
    code, out, err = cli(capsys, "cvd", "predict", "--surrogate", "paper", "--schedule", schedule)
    assert code == 0, err
    expected = sum(row[0] for row in REFERENCE["fractions"]["paper_strategy"])
    assert "f_2H" in out and "f_defect" in out and f"{expected:.4f}" in out.splitlines()[-2]
    assert "sum to 1 within" in out.splitlines()[-1]
    assert len([line for line in out.splitlines() if line.strip()[:2].strip().isdigit()]) == 20


def test_paper_nade_arithmetic_agrees_with_plain_torch():
    ref = _reference_module()
    schedules = PAPER_RANGES.random_schedules(64, 20, 11)
    want_mean, want_var = ref.reference_fractions(ref.load_reference_model(), schedules, variance=True)
    model = load_paper_checkpoint()
    x = torch.as_tensor(schedules, dtype=torch.float32)
    u = PAPER_RANGES.normalise(x)
    z = zn = model.initial_z(len(x))
    state = state_n = None
    means, variances = [], []
    with torch.no_grad():
        for t in range(x.shape[1]):
            z, var, state = model.step_physical(z, x[:, t], state)
            zn, _, state_n = model.step(zn, u[:, t], state_n)  # the normalised entry point: same numbers
            means.append(z)
            variances.append(var)
            np.testing.assert_allclose(zn.numpy(), z.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(torch.stack(means, 1).numpy(), want_mean.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(torch.stack(variances, 1).numpy(), want_var.numpy(), atol=1e-5, rtol=0)


def test_a_copy_of_the_checkpoint_works_as_a_path(tmp_path, capsys):
    copy = tmp_path / "copy.pt"
    shutil.copy(paper_checkpoint_path(), copy)
    model = load_paper_checkpoint(copy)
    assert model.hidden_size == 128 and not list(model.parameters())
    schedule = write_csv(tmp_path / "s.csv", REFERENCE["schedules"]["random_seed_2021"])
    got = predict_json(capsys, copy, schedule)
    np.testing.assert_allclose(got["fractions"], REFERENCE["fractions"]["random_seed_2021"], atol=1e-4, rtol=0)


# ------------------------------------------------------------------ bad input
@pytest.fixture
def good_schedule(tmp_path) -> Path:
    return write_csv(tmp_path / "good.csv", REFERENCE["schedules"]["held_2500K"])


@pytest.mark.parametrize("rows, words", [
    ([[4000.0, 100, 100, 100]] * 3, ("stage 1", "column T", "outside the allowed range")),
    ([[2500.0, 100, 100, 100], [2500.0, 100, 300, 100]], ("stage 2", "n_H2", "outside the allowed range")),
    ([[2500.0, 100, 100, 100], [2500.0, 100, 100]], ("line 3", "expected 4 columns")),
    ([[2500.0, -5, 100, 100]], ("n_S2", "must not be negative")),
])
def test_bad_schedules_give_one_line(rows, words, tmp_path, capsys):
    schedule = write_csv(tmp_path / "bad.csv", rows)
    code, out, err = cli(capsys, "cvd", "predict", "--surrogate", "paper", "--schedule", schedule, "--json")
    assert_one_line_error(code, err, "bad.csv", *words)
    assert out == ""


def test_missing_schedule_and_unknown_surrogate(tmp_path, capsys, good_schedule):
    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", "paper", "--schedule", tmp_path / "nope.csv")
    assert_one_line_error(code, err, "not found", "nope.csv")
    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", "papr", "--schedule", good_schedule)
    assert_one_line_error(code, err, "unknown surrogate", "papr")
    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", "store", "--schedule", good_schedule)
    assert_one_line_error(code, err, "--store")
    code, _, err = cli(capsys, "cvd", "predict", "--schedule", good_schedule)
    assert_one_line_error(code, err, "--surrogate")


def test_the_store_config_chooses_the_surrogate_when_none_is_given(tmp_path, capsys, good_schedule):
    from mapcvd.config import validate
    from mapcvd.store import create_campaign

    store = tmp_path / "c.zarr"
    create_campaign(store, config=validate({"cvd_learning": {"surrogate": "paper"}}))
    code, out, err = cli(capsys, "cvd", "predict", "--store", store, "--schedule", good_schedule, "--json")
    assert code == 0, err
    code, again, err = cli(capsys, "cvd", "predict", "--surrogate", "paper", "--schedule", good_schedule, "--json")
    assert code == 0 and json.loads(out) == json.loads(again)


def test_bad_checkpoints_give_one_line(tmp_path, capsys, good_schedule):
    good = torch.load(paper_checkpoint_path(), map_location="cpu", weights_only=True)
    missing = tmp_path / "missing_key.pt"
    torch.save({"encoder": good["encoder"], "lstm": good["lstm"]}, missing)
    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", missing, "--schedule", good_schedule)
    assert_one_line_error(code, err, "missing_key.pt", "decoder")

    renamed = tmp_path / "renamed.pt"
    decoder = dict(good["decoder"])
    decoder["head.weight"] = decoder.pop("output.weight")
    torch.save({**good, "decoder": decoder}, renamed)
    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", renamed, "--schedule", good_schedule)
    assert_one_line_error(code, err, "renamed.pt", "output.weight")

    shaped = tmp_path / "shape.pt"
    encoder = dict(good["encoder"])
    encoder["linear_1.weight"] = torch.zeros(24, 8)
    torch.save({**good, "encoder": encoder}, shaped)
    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", shaped, "--schedule", good_schedule)
    assert_one_line_error(code, err, "shape.pt", "linear_1.weight", "(24, 8)")

    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", tmp_path / "absent.pt", "--schedule", good_schedule)
    assert_one_line_error(code, err, "absent.pt", "does not exist")

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, _, err = cli(capsys, "cvd", "predict", "--surrogate", junk, "--schedule", good_schedule)
    assert_one_line_error(code, err, "junk.pt")
