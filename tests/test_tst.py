"""Transition-state theory times (mapcvd.pathways.tst) and the ``mapcvd tst`` command."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mapcvd.errors import InputError
from mapcvd.pathways.tst import attempt_time, parse_temperature, time_over_distance, tst_time


def mapcvd(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_paper_figure_from_the_command_line():
    """Chen et al. (MAP): a 2.12 eV barrier at 350 C takes about 0.124 days."""
    plain = mapcvd("tst", "--barrier", "2.12", "--temperature", "350C")
    assert plain.returncode == 0, plain.stderr
    days = float(plain.stdout.split("=")[1].split("days")[0])
    assert days == pytest.approx(0.124, rel=0.01)
    as_json = mapcvd("tst", "--barrier", "2.12", "--temperature", "623.15K", "--json")
    assert as_json.returncode == 0, as_json.stderr
    times = json.loads(as_json.stdout)
    assert times["time_days"] == pytest.approx(0.124, rel=0.01)
    assert times["time_s"] == pytest.approx(times["time_days"] * 86400.0)


@pytest.mark.parametrize("text", ["350", "350F", "hot", "-300C", "0K"])
def test_bad_temperature_is_one_line(text):
    result = mapcvd("tst", "--barrier", "1.0", "--temperature", text)
    assert result.returncode == 1
    assert result.stderr.startswith("mapcvd: error:") and result.stderr.count("\n") == 1, result.stderr
    assert "temperature" in result.stderr


def test_temperature_units_and_eyring_prefactor():
    assert parse_temperature("350C") == pytest.approx(623.15)
    assert parse_temperature("623.15 K") == pytest.approx(623.15)
    assert parse_temperature("25c") == pytest.approx(298.15)
    assert attempt_time(623.15) == pytest.approx(7.70e-14, rel=1e-3)  # facts.md: h/(k_B T) at 350 C
    with pytest.raises(InputError):
        parse_temperature(350.0)  # a number without unit


def test_times_add_over_hops_and_scale_with_distance():
    t = 623.15
    one, two = tst_time([1.5], t), tst_time([1.5, 1.5], t)
    assert two == pytest.approx(2 * one)
    assert tst_time([2.12, 1.0], t) == pytest.approx(tst_time([2.12], t) + tst_time([1.0], t))
    assert tst_time([], t) == 0.0
    # the dominant barrier decides: +0.1 eV multiplies the time by exp(0.1 / kT)
    assert tst_time([2.22], t) / tst_time([2.12], t) == pytest.approx(np.exp(0.1 / (8.617333262e-5 * t)))
    assert time_over_distance(10.0, 5.0, 30.0) == pytest.approx(60.0)
    with pytest.raises(InputError):
        time_over_distance(10.0, 0.0, 30.0)
    with pytest.raises(InputError):
        tst_time([-0.1], t)
