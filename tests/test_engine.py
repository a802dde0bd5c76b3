"""Tests of the LAMMPS engine.

Most tests use a cheap stand-in potential (LAMMPS ``lj/cut``) as the tests say;
the ReaxFF tests use an isolated water molecule with ``ffield.SiOH``.
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from mapcvd.data import data_path
from mapcvd.errors import (
    ForceFieldError,
    InputError,
    LammpsUnavailableError,
    LostAtomsError,
    MDError,
    UnknownElementError,
)
from mapcvd.md import lammps_loader
from mapcvd.md.engine import Engine
from mapcvd.md.potentials import ENERGY_TO_EV, lammps_commands, reaxff, reaxff_elements

SIOH = data_path("forcefields", "ffield.SiOH")
EPS, SIGMA = 0.01, 2.5  # eV, A (stand-in Lennard-Jones, metal units)


def lj(elements=("Ar",), units="metal", eps=EPS):
    return lammps_commands(
        ["pair_style lj/cut 8.0", f"pair_coeff * * {eps} {SIGMA}"], elements, units=units, name="lj-standin"
    )


def lj_energy(r, eps=EPS):
    return 4 * eps * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6)


def dimer(r, cell=20.0):
    return Atoms("Ar2", positions=[[5, 5, 5], [5 + r, 5, 5]], cell=[cell] * 3, pbc=True)


def test_lj_dimer_energy_in_ev():
    with Engine(dimer(3.0), lj()) as eng:
        assert eng.potential_energy() == pytest.approx(lj_energy(3.0), rel=1e-9)


def test_real_units_energy_converted_to_ev():
    # the same numbers in real units are kcal/mol: the engine must convert to eV
    with Engine(dimer(3.0), lj(units="real")) as eng:
        assert eng.potential_energy() == pytest.approx(lj_energy(3.0) * ENERGY_TO_EV["real"], rel=1e-6)


def test_positions_round_trip_in_atom_order_and_unwrapped():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 10, size=(12, 3))
    pos[3] = [-1.5, 12.0, 4.0]  # outside the cell: must keep its image
    atoms = Atoms("Ar12", positions=pos, cell=[10, 10, 10], pbc=True)
    with Engine(atoms, lj()) as eng:
        np.testing.assert_allclose(eng.get_positions(unwrapped=True), pos, atol=1e-9)
        wrapped = eng.get_positions()
        assert np.all((wrapped >= 0) & (wrapped < 10))
        np.testing.assert_array_equal(eng.get_images()[3], [-1, 1, 0])
        new = pos + 0.1
        eng.set_positions(new)
        np.testing.assert_allclose(eng.get_positions(unwrapped=True), new, atol=1e-9)
        assert eng.to_atoms().get_chemical_symbols() == ["Ar"] * 12


def test_set_positions_refreshes_energy():
    with Engine(dimer(3.0), lj()) as eng:
        e1 = eng.potential_energy()
        eng.set_positions([[5, 5, 5], [8.5, 5, 5]])
        assert eng.potential_energy() == pytest.approx(lj_energy(3.5), rel=1e-9)
        assert eng.potential_energy() != pytest.approx(e1)


def test_run_nvt_records_each_step_and_thermostats():
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(5)] * 3), -1).reshape(-1, 3) * 4.0
    atoms = Atoms(f"Ar{len(grid)}", positions=grid + rng.normal(0, 0.05, grid.shape), cell=[20] * 3, pbc=True)
    with Engine(atoms, lj(), seed=3) as eng:
        first = eng.run_nvt(50, 60.0, timestep_fs=2.0, damping_fs=100.0)
        assert first.potential_energy.shape == (50,) and first.temperature.shape == (50,)
        trace = eng.run_nvt(2000, 60.0, timestep_fs=2.0, damping_fs=100.0)
        assert trace.potential_energy.shape == (2000,)
        # the last recorded energy is the engine's current energy
        assert trace.potential_energy[-1] == pytest.approx(eng.potential_energy(), rel=1e-9)
        assert np.mean(trace.temperature[1000:]) == pytest.approx(60.0, rel=0.15)
        # consecutive records differ (they are per step, not one value repeated)
        assert np.unique(trace.potential_energy).size > 1000


def test_single_points_skip_the_set_up_yet_match_a_fresh_engine():
    """Engine.single_point after small moves (lists kept), a jump of one atom past half the skin
    (lists rebuilt) and a move across the boundary gives a fresh engine's run 0 energy and forces;
    each took the fast path (run 1 pre no: LAMMPS's step advanced); a thermostat turns it off."""
    from ase.build import bulk

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)  # 32 atoms in a 10.52 A box
    rng = np.random.default_rng(0)
    sequence = [atoms.positions + rng.normal(0, 0.05, atoms.positions.shape)]
    sequence.append(sequence[-1] + rng.normal(0, 0.05, atoms.positions.shape))
    jump = sequence[-1].copy()
    jump[0, 0] += 2.63  # to the octahedral site, far past half the 2 A skin
    sequence.append(jump)
    across = jump.copy()
    across[1] -= [0.3, 0.0, 0.0]  # atom 1 sits at x = 0: out through the boundary
    sequence.append(across)
    with Engine(atoms, lj()) as engine:
        engine.single_point(atoms.positions)
        first_step = engine.step
        for positions in sequence:
            energy, forces = engine.single_point(positions)
            reference = atoms.copy()
            reference.positions = positions
            with Engine(reference, lj()) as fresh:
                assert energy == pytest.approx(fresh.potential_energy(), rel=1e-10, abs=1e-12)
                np.testing.assert_allclose(forces, fresh.get_forces(), rtol=1e-8, atol=1e-10)
        assert engine.step == first_step + len(sequence)
        engine.run_nvt(2, 10.0, timestep_fs=2.0, damping_fs=100.0)
        step = engine.step
        energy, _ = engine.single_point(sequence[0])
        assert engine.step == step  # a thermostat is on: run 0, not a step of the integrator
        np.testing.assert_allclose(engine.get_positions(unwrapped=True), sequence[0], atol=1e-9)


def test_repeated_short_runs_record_only_their_own_steps():
    with Engine(dimer(3.0), lj()) as eng:
        a = eng.run_nvt(20, 30.0, timestep_fs=1.0)
        b = eng.run_nvt(20, 30.0, timestep_fs=1.0)
        assert eng.step == 40
        assert a.potential_energy[-1] != b.potential_energy[0]
        assert len(b.potential_energy) == 20


def test_minimize_reaches_lj_minimum():
    with Engine(dimer(3.2), lj()) as eng:
        energy = eng.minimize(fmax=1e-6)
        r = np.linalg.norm(np.diff(eng.get_positions(), axis=0))
        assert r == pytest.approx(2 ** (1 / 6) * SIGMA, rel=1e-3)
        assert energy == pytest.approx(-EPS, rel=1e-4)


def test_tether_pulls_atom_and_is_not_in_potential_energy():
    atoms = Atoms("Ar", positions=[[5, 5, 5]], cell=[20] * 3, pbc=True)
    with Engine(atoms, lj()) as eng:
        eng.set_tether([0], [6.0, 5.0, 5.0], k=2.0)
        # the tether force is k * displacement along +x
        np.testing.assert_allclose(eng.get_forces()[0], [2.0, 0, 0], atol=1e-9)
        assert eng.potential_energy() == pytest.approx(0.0, abs=1e-12)
        eng.minimize(fmax=1e-6)
        np.testing.assert_allclose(eng.get_positions()[0], [6.0, 5.0, 5.0], atol=1e-4)


def test_move_tether_between_short_runs_drags_atom_across_boundary():
    atoms = Atoms("Ar2", positions=[[18.0, 5, 5], [8.0, 15, 15]], cell=[20] * 3, pbc=True)
    with Engine(atoms, lj()) as eng:
        eng.set_tether([0], [18.0, 5, 5], k=5.0)
        centre = np.array([18.0, 5, 5])
        for _ in range(16):
            centre[0] += 0.25
            eng.move_tether(centre)
            eng.run_nvt(100, 1.0, timestep_fs=2.0, damping_fs=20.0)
        x = eng.get_positions(unwrapped=True)[0, 0]
        assert x > 20.0  # followed the moving centre across the boundary, tracked unwrapped
        assert x == pytest.approx(22.0, abs=1.0)  # within the oscillation of the spring
        eng.minimize(fmax=1e-6)
        assert eng.get_positions(unwrapped=True)[0, 0] == pytest.approx(22.0, abs=1e-3)
        np.testing.assert_allclose(eng.tether_center, centre)


def test_reaxff_isolated_water_geometry():
    water = molecule("H2O")
    water.center(vacuum=6.0)
    water.pbc = True
    with Engine(water, reaxff(SIOH, ["Si", "O", "H"])) as eng:
        eng.minimize(fmax=1e-4)
        x = eng.get_positions()
        oh = np.linalg.norm(x[1:] - x[0], axis=1)
        cos = np.dot(x[1] - x[0], x[2] - x[0]) / oh.prod()
        assert np.all((oh > 0.93) & (oh < 0.99))
        assert 95.0 < np.degrees(np.arccos(cos)) < 110.0
        assert eng.get_charges()[0] < 0 < eng.get_charges()[1]


def test_reaxff_force_field_elements_parsed():
    assert reaxff_elements(SIOH)[:3] == ["C", "H", "O"]
    assert {"Mo", "O", "S", "H"} <= set(reaxff_elements(data_path("forcefields", "ffield.MoSOH")))


def test_element_absent_from_force_field_refused():
    with pytest.raises(UnknownElementError, match="Mo"):
        reaxff(SIOH, ["Si", "O", "Mo"])


def test_structure_element_not_in_type_order_refused():
    atoms = Atoms("Cu", positions=[[1, 1, 1]], cell=[10] * 3, pbc=True)
    with pytest.raises(UnknownElementError, match="Cu"):
        Engine(atoms, reaxff(SIOH, ["Si", "O", "H"]))


def test_missing_and_unreadable_force_field(tmp_path):
    with pytest.raises(ForceFieldError, match="not found"):
        reaxff(tmp_path / "nope", ["O"])
    bad = tmp_path / "ffield.bad"
    bad.write_text("just a line\n")
    with pytest.raises(ForceFieldError, match="not a readable ReaxFF"):
        reaxff(bad, ["O"])


def test_non_orthogonal_cell_refused():
    atoms = Atoms("Ar", positions=[[1, 1, 1]], cell=[[10, 0, 0], [2, 10, 0], [0, 0, 10]], pbc=True)
    with pytest.raises(InputError, match="orthogonal"):
        Engine(atoms, lj())


def test_lammps_error_becomes_exception_and_new_engine_works():
    eng = Engine(dimer(3.0), lj())
    with pytest.raises(MDError, match="bogus_command"):
        eng.command("bogus_command 1 2 3")
    with pytest.raises(MDError, match="closed"):
        eng.potential_energy()
    with Engine(dimer(3.0), lj()) as fresh:
        assert fresh.potential_energy() == pytest.approx(lj_energy(3.0))


def test_lost_atoms_raise_lost_atoms_error():
    eng = Engine(dimer(3.0, cell=10.0), lj())
    eng.command("change_box all boundary f f f")  # atoms leaving a fixed boundary are lost
    eng.set_velocities(np.array([[0.5, 0, 0], [0, 0, 0]]))  # A/fs: out of the box in ~10 steps
    with pytest.raises(LostAtomsError, match="[Ll]ost atoms"):
        eng.command("fix mapcvd_nve all nve\ntimestep 0.001\nthermo 1\nrun 40")
    with Engine(dimer(3.0), lj()) as fresh:  # the process can still build engines
        assert fresh.natoms == 2


def test_build_without_reaxff_refused():
    class FakeLammps:
        installed_packages = ["MANYBODY", "QEQ"]
        has_exceptions = True

        def close(self):
            self.closed = True

    fake = FakeLammps()
    with pytest.raises(LammpsUnavailableError, match="REAXFF"):
        lammps_loader.check_packages(fake)
    assert fake.closed


def test_bad_run_arguments():
    with Engine(dimer(3.0), lj()) as eng:
        with pytest.raises(InputError):
            eng.run_nvt(0, 10.0, timestep_fs=1.0)
        with pytest.raises(InputError):
            eng.set_tether([5], [0, 0, 0], k=1.0)
        with pytest.raises(InputError):
            eng.set_positions(np.zeros((3, 3)))


def test_missing_file_in_lammps_commands_is_refused_before_lammps_starts(tmp_path):
    from mapcvd.errors import ForceFieldError
    from mapcvd.md.potentials import lammps_commands

    with pytest.raises(ForceFieldError, match="potential file not found: /nope/Al.eam"):
        lammps_commands(["pair_style eam", "pair_coeff * * /nope/Al.eam"], ["Al"], units="metal")
    # packaged potentials are found by name as LAMMPS finds them; numbers are not files
    assert lammps_commands(["pair_style vashishta", "pair_coeff * * SiO.1994.vashishta Si O"], ["Si", "O"]).files
    assert lammps_commands(["pair_style lj/cut 8.0", "pair_coeff * * 0.0104 3.4"], ["Ar"]).files == ()
