"""Climbing-image NEB (mapcvd.pathways.neb) against independent references, and the ``mapcvd neb`` command."""

import dataclasses
import json
import os
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

from mapcvd.errors import InputError
from mapcvd.md.lammps_loader import lammps_module, potentials_dir
from mapcvd.md.potentials import lammps_commands
from mapcvd.pathways.band import align_final, check_endpoints, initial_band
from mapcvd.pathways import neb as neb_module
from mapcvd.pathways.neb import NebSettings, climb_ceiling, has_interior_maximum, minimize_structure, run_neb

EAM = ("pair_style eam", f"pair_coeff * * {potentials_dir() / 'Al_jnp.eam'}")


def mapcvd(*args, timeout=300, cwd=None):
    return subprocess.run([sys.executable, "-m", "mapcvd.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_line_error(result, words):
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("mapcvd: error:") and result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr, result.stderr


# ------------------------------------------------------------------ the ASE tutorial (EMT)
def au_hop():
    """The endpoints of ASE's tutorial hop: Au between hollow sites of Al(100), the lower layers fixed."""
    slab = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.center(axis=2, vacuum=4.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in slab]))
    final = slab.copy()
    final[-1].x += slab.cell[0, 0] / 2
    return slab, final


def test_au_adatom_hop_on_al100_matches_the_ase_tutorial():
    """ASE's tutorial: Au hops between hollow sites of Al(100) over 0.374 eV with EMT (facts.md 4)."""
    slab, final = au_hop()
    result = run_neb(slab, final, calculator=EMT(), settings=NebSettings(images=3, fmax=0.05))
    assert result.converged and result.fmax < 0.05
    assert result.barrier_forward == pytest.approx(0.374, abs=0.005)
    assert result.barrier_backward == pytest.approx(result.barrier_forward, abs=0.005)  # symmetric hop
    assert result.ts_index == 2
    fixed = [a.index for a in slab if a.tag > 1]
    np.testing.assert_allclose(result.positions[:, fixed], np.repeat(slab.positions[None, fixed], 5, axis=0))
    summary = result.summary()
    assert set(summary) >= {"barrier_forward_eV", "barrier_backward_eV", "converged", "energies_eV"}
    assert len(summary["energies_eV"]) == 5


@pytest.mark.parametrize("optimizer", ["fire", "bfgs", "ode"])
def test_every_optimizer_finds_the_tutorial_barrier_and_converged_means_fmax_reached(optimizer):
    """The same hop with each ``neb_optimizer`` (``ode``: ASE's NEBOptimizer); ``converged`` is True only when the
    final band's largest NEB force is within fmax, also for an optimiser that judges convergence by its own residual."""
    slab, final = au_hop()
    result = run_neb(slab, final, calculator=EMT(), settings=NebSettings(images=3, fmax=0.05, optimizer=optimizer))
    assert result.converged and result.fmax <= 0.05
    assert result.barrier_forward == pytest.approx(0.374, abs=0.01)
    short = run_neb(slab, final, calculator=EMT(),
                    settings=NebSettings(images=3, fmax=0.001, max_steps=4, optimizer=optimizer))
    assert not short.converged and short.fmax > 0.001


def test_interior_maximum_is_a_maximum_above_both_endpoints():
    assert has_interior_maximum([0.0, 0.4, 0.1])
    assert has_interior_maximum([0.3, 0.2, 0.5, 0.4])
    assert not has_interior_maximum([0.0, 0.2, 0.4])  # rises all the way
    assert not has_interior_maximum([0.4, 0.3, 0.0])  # falls all the way
    assert not has_interior_maximum([0.0, 0.5, 0.3, 1.0])  # a bump, but below the final endpoint
    assert not has_interior_maximum([0.0, 1.0])  # no intermediate image


def test_a_band_without_saddle_relaxes_without_its_climbing_image():
    """Hollow site -> bridge (the hop's saddle) rises all the way: no image may climb, so a
    climbing-image run ends as the plain band does, converged, every image below the bridge."""
    slab, final = au_hop()
    final[-1].x = slab[-1].x + slab.cell[0, 0] / 4  # the bridge between the two hollow sites
    runs = {climb: run_neb(slab, final, calculator=EMT(),
                           settings=NebSettings(images=3, fmax=0.02, climb=climb, minimize=False))
            for climb in (True, False)}
    for result in runs.values():
        assert result.converged and result.fmax <= 0.02
        assert np.all(np.diff(result.energies) > 0)
    np.testing.assert_allclose(runs[True].energies, runs[False].energies, atol=2e-3)
    np.testing.assert_allclose(runs[True].positions, runs[False].positions, atol=2e-2)


def test_climb_ceiling_is_the_band_top_plus_its_span_at_least_half_an_ev():
    assert climb_ceiling([0.0, 1.0, 0.2]) == pytest.approx(2.0)  # top 1.0 + span 1.0 over the lower endpoint
    assert climb_ceiling([0.3, 1.0, 0.0]) == pytest.approx(2.0)
    assert climb_ceiling([0.0, 0.1, 0.05]) == pytest.approx(0.6)  # a low band: 0.5 eV of room
    assert climb_ceiling([0.0, 0.2, 0.8]) == pytest.approx(1.6)  # the top may be an endpoint


def test_a_climbing_image_past_its_ceiling_is_dropped_for_the_plain_band(monkeypatch):
    """With every climb made to run away (ceiling -inf), the band is the plain band's: converged,
    flagged not climbed, its barrier the plain band's top image, below the saddle the climbing image finds."""
    slab, final = au_hop()
    settings = NebSettings(images=4, fmax=0.05)  # an even band: no plain image sits on the saddle
    climbing = run_neb(slab, final, calculator=EMT(), settings=settings)
    plain = run_neb(slab, final, calculator=EMT(), settings=dataclasses.replace(settings, climb=False))
    monkeypatch.setattr(neb_module, "climb_ceiling", lambda energies: -np.inf)
    dropped = run_neb(slab, final, calculator=EMT(), settings=settings)
    assert climbing.converged and climbing.climbed and climbing.summary()["climbed"] is True
    assert climbing.barrier_forward == pytest.approx(0.374, abs=0.005)
    assert plain.converged and not plain.climbed
    assert dropped.converged and dropped.fmax <= 0.05 and not dropped.climbed
    assert dropped.barrier_forward == pytest.approx(plain.barrier_forward, abs=0.005)
    assert dropped.barrier_forward < climbing.barrier_forward - 0.01


def test_no_atom_moves_more_than_max_move_per_optimiser_step():
    slab, final = au_hop()
    for optimizer in ("fire", "bfgs"):
        settings = NebSettings(images=3, climb=False, max_steps=1, minimize=False, max_move=0.01,
                               fmax=1e-6, optimizer=optimizer)
        result = run_neb(slab, final, calculator=EMT(), settings=settings)
        band = initial_band(result.positions[0], result.positions[-1], 3)  # the band before the step
        moved = np.linalg.norm(result.positions - band, axis=2).max()
        assert 1e-4 < moved <= 0.01 + 1e-9
        free = run_neb(slab, final, calculator=EMT(), settings=dataclasses.replace(settings, max_move=0.2))
        assert np.linalg.norm(free.positions - band, axis=2).max() > 0.01  # the cap is what held it


# ------------------------------------------------------------------ LAMMPS: Al adatom, EAM
@pytest.fixture(scope="module")
def al_hop():
    """Minimised endpoints of an Al adatom hop on Al(100) under LAMMPS eam (Al_jnp), bottom layer fixed."""
    slab = fcc100("Al", size=(3, 3, 3), a=4.05)
    add_adsorbate(slab, "Al", 1.8, "hollow")
    slab.center(axis=2, vacuum=5.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag > 2 for atom in slab]))
    final = slab.copy()
    final[-1].x += slab.cell[0, 0] / 3
    potential = lammps_commands(EAM, ["Al"], units="metal")
    settings = NebSettings(fmax=0.005)
    initial, e_initial = minimize_structure(slab, potential=potential, settings=settings)
    final, e_final = minimize_structure(final, potential=potential, settings=settings)
    assert e_final == pytest.approx(e_initial, abs=1e-3)  # equivalent hollow sites
    return initial, final, potential


def _reference_barrier(initial, final, images=5, fmax=0.02):
    """ASE's own CI-NEB with ASE's own LAMMPS calculator (LAMMPSlib), one instance per image."""
    lammps_module()  # the MPI preload that lets LAMMPSlib create instances
    from ase.calculators.lammpslib import LAMMPSlib
    from ase.mep import NEB
    from ase.optimize import FIRE

    band = [initial.copy() for _ in range(images + 1)] + [final.copy()]
    for image in band:
        image.set_constraint(FixAtoms(indices=initial.constraints[0].get_indices()))
        image.calc = LAMMPSlib(lmpcmds=list(EAM), atom_types={"Al": 1}, log_file=None)
    neb = NEB(band, climb=True, method="improvedtangent", k=0.1)
    neb.interpolate()
    assert FIRE(neb, logfile=None).run(fmax=fmax, steps=1000)
    energies = np.array([image.get_potential_energy() for image in band])
    return energies.max() - energies[0]


def test_ase_driver_on_lammps_matches_ase_with_its_own_lammps_calculator(al_hop):
    initial, final, potential = al_hop
    reference = _reference_barrier(initial, final)
    ours = run_neb(initial, final, potential=potential,
                   settings=NebSettings(images=5, fmax=0.02, minimize=False, driver="ase"))
    assert ours.converged and ours.fmax < 0.02
    assert 0.1 < reference < 1.5
    assert ours.barrier_forward == pytest.approx(reference, abs=0.01)
    assert ours.barrier_backward == pytest.approx(reference, abs=0.01)  # equivalent hollow sites
    # the endpoints were used as given
    np.testing.assert_allclose(ours.positions[0], initial.positions)


def test_lammps_neb_driver_matches_the_ase_driver(al_hop, tmp_path):
    initial, final, potential = al_hop
    settings = dict(images=5, fmax=0.02, minimize=False)
    ase_band = run_neb(initial, final, potential=potential, settings=NebSettings(**settings, driver="ase"))
    lmp_band = run_neb(initial, final, potential=potential, settings=NebSettings(**settings, driver="lammps"),
                       workdir=str(tmp_path / "lmp"))
    assert lmp_band.driver == "lammps" and (tmp_path / "lmp" / "in.neb").is_file()
    assert lmp_band.converged
    assert lmp_band.barrier_forward == pytest.approx(ase_band.barrier_forward, abs=0.01)
    assert lmp_band.ts_index == ase_band.ts_index == 3
    np.testing.assert_allclose(lmp_band.positions[0], initial.positions, atol=1e-4)  # endpoints stay (dump precision)


# ------------------------------------------------------------------ pieces
def test_band_follows_the_guide_and_endpoints_are_aligned():
    start, end = np.zeros((1, 3)), np.array([[2.0, 0.0, 0.0]])
    guide = np.array([[[1.0, 1.0, 0.0]]])  # the trajectory went round
    band = initial_band(start, end, 3, guide)
    assert band.shape == (5, 1, 3)
    np.testing.assert_allclose(band[2, 0], [1.0, 1.0, 0.0])  # the middle image sits on the guide's corner
    np.testing.assert_allclose(band[[0, -1]], [start, end])
    linear = initial_band(start, end, 1)
    np.testing.assert_allclose(linear[1, 0], [1.0, 0.0, 0.0])
    shifted = align_final(np.array([[0.5, 0.5, 0.5]]), np.array([[9.7, 0.5, 10.4]]), np.array([10.0, 10, 10]),
                          [True, True, False])
    np.testing.assert_allclose(shifted, [[-0.3, 0.5, 10.4]])  # periodic x wrapped back, open z kept


def test_endpoints_must_hold_the_same_atoms_in_the_same_order():
    a = fcc100("Al", size=(2, 2, 2))
    with pytest.raises(InputError, match="numbers of atoms"):
        check_endpoints(a, a[:-1])
    b = a.copy()
    b.symbols[0] = "Cu"
    with pytest.raises(InputError, match="different atoms or another order"):
        check_endpoints(a, b)


# ------------------------------------------------------------------ the command
@pytest.fixture
def endpoint_files(al_hop, tmp_path):
    initial, final, _ = al_hop
    paths = tmp_path / "initial.extxyz", tmp_path / "final.extxyz"
    for atoms, path in zip((initial, final), paths):
        plain = atoms.copy()
        plain.set_constraint()
        plain.info = {}
        ase.io.write(path, plain, format="extxyz")
    return paths


def test_neb_command_writes_band_transition_state_plot_and_json(endpoint_files, tmp_path):
    first, last = endpoint_files
    out, report = tmp_path / "out", tmp_path / "neb.json"
    result = mapcvd("neb", first, last, "--lammps", EAM[0], "--lammps", EAM[1], "--elements", "Al",
                    "--images", 3, "--fmax", 0.05, "--out", out, "--json", report)
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["converged"] is True and len(data["energies_eV"]) == 5
    assert data["barrier_forward_eV"] == pytest.approx(max(data["energies_eV"]) - data["energies_eV"][0])
    assert 0.1 < data["barrier_forward_eV"] < 1.5
    band = ase.io.read(out / "band.extxyz", index=":")
    assert len(band) == 5 and band[2].get_potential_energy() == pytest.approx(data["energies_eV"][2])
    ts = ase.io.read(out / "transition_state.extxyz")
    assert ts.arrays["displacement"].shape == (len(ts), 3)
    assert ts.arrays["displacement_A"].argmax() == len(ts) - 1  # the adatom moved most
    assert (out / "energy.png").stat().st_size > 5_000
    # too few steps: reported as not converged, with its estimate
    short = mapcvd("neb", first, last, "--lammps", EAM[0], "--lammps", EAM[1], "--elements", "Al", "--images", 3,
                   "--max-steps", 2, "--no-minimize", "--out", tmp_path / "short", "--json", "-")
    assert short.returncode == 0, short.stderr
    estimate = json.loads(short.stdout)
    assert estimate["converged"] is False and estimate["steps"] <= 2 and estimate["barrier_forward_eV"] > 0


def test_neb_command_refuses_bad_input_in_one_line(endpoint_files, tmp_path):
    first, last = endpoint_files
    atoms = ase.io.read(first)
    fewer, swapped = tmp_path / "fewer.extxyz", tmp_path / "swapped.extxyz"
    ase.io.write(fewer, atoms[:-1], format="extxyz")
    mixed = atoms.copy()
    mixed.symbols[0] = "Cu"
    ase.io.write(first.with_name("mixed.extxyz"), mixed, format="extxyz")
    mixed.symbols[0], mixed.symbols[1] = "Al", "Cu"
    ase.io.write(swapped, mixed, format="extxyz")
    pot = ("--lammps", EAM[0], "--lammps", EAM[1], "--elements", "Al")
    one_line_error(mapcvd("neb", first, fewer, *pot), "different numbers of atoms")
    one_line_error(mapcvd("neb", first.with_name("mixed.extxyz"), swapped, *pot), "another order")
    one_line_error(mapcvd("neb", first, last), "no potential")
    one_line_error(mapcvd("neb", first, last, "--forcefield", tmp_path / "nope.ff", "--elements", "Al"), "not found")
    one_line_error(mapcvd("neb", first, last, "--lammps", "pair_style eam"), "--elements")
    one_line_error(mapcvd("neb", first, last, "--lammps", EAM[0], "--lammps", f"pair_coeff * * {tmp_path}/no.eam",
                          "--elements", "Al"), "potential file not found")
    one_line_error(mapcvd("neb", first, tmp_path / "missing.extxyz", *pot), "structure file not found")
