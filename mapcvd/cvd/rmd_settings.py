"""The settings of one staged reactive-MD run (:mod:`mapcvd.cvd.rmd`), from the ``[cvd]`` config table."""

from __future__ import annotations

from dataclasses import dataclass

from mapcvd.config import check_settings, setting, settings_from
from mapcvd.cvd.ranges import PAPER_RANGES, ScheduleRanges
from mapcvd.errors import InputError


@dataclass(frozen=True)
class RmdSettings:
    """Settings of one staged run, built from the ``[cvd]`` config table by :meth:`from_config`.

    Every default and range is the ``[cvd]`` key's in :data:`mapcvd.config.SCHEMA`.

    Attributes (config key of the ``[cvd]`` table in brackets)
    ----------------------------------------------------------
    n_mo
        Mo atoms in the alpha-MoO3 slab [``n_mo``]; >= 8, a valid slab size.
    vacuum_A
        Vacuum gap along z that holds the gas, A [``vacuum_A``].
    stage_ps
        MD time per stage, ps [``stage_ps``] (the paper: 1 ns).
    timestep_fs
        MD timestep, fs [``timestep_fs``].
    damping_fs
        Nose-Hoover damping time, fs [``damping_fs``].
    min_distance_A
        Smallest distance of an inserted gas atom to any other atom, A [``min_distance_A``].
    neighbor_skin_A
        LAMMPS neighbour-list skin, A [``neighbor_skin_A``].
    rescale_velocities
        Scale velocities to T_t at each stage start [``rescale_velocities``].
    relax_iterations
        Conjugate-gradient iterations relaxing the bare slab (cut from the bulk crystal)
        before the first stage; 0 skips it [``relax_iterations``].
    n_stages
        Stages of a run of the campaign [``n_stages``]; :func:`run_schedule` runs
        whatever number of stages its schedule has.
    exhaust_products
        At each stage start, take out everything in the gas phase but the feed gas
        (:func:`exhaust_products`: by-products, released O, fragments), as the carrier
        gas of a flow reactor carries it away [``exhaust_products``]. Without it, at
        high temperature, the feed gas breaks up faster than it is counted, each stage
        inserts more, and the vacuum runs out of room within a few stages.
    """

    n_mo: int = setting("cvd", "n_mo")
    vacuum_A: float = setting("cvd", "vacuum_A")
    stage_ps: float = setting("cvd", "stage_ps")
    timestep_fs: float = setting("cvd", "timestep_fs")
    damping_fs: float = setting("cvd", "damping_fs")
    min_distance_A: float = setting("cvd", "min_distance_A")
    neighbor_skin_A: float = setting("cvd", "neighbor_skin_A")
    rescale_velocities: bool = setting("cvd", "rescale_velocities")
    relax_iterations: int = setting("cvd", "relax_iterations")
    n_stages: int = setting("cvd", "n_stages")
    exhaust_products: bool = setting("cvd", "exhaust_products")

    def __post_init__(self) -> None:
        """SCHEMA's checks, then what it cannot express: the slab size and the steps per stage."""
        from mapcvd.md.moo3 import valid_mo_counts

        check_settings(self)
        if not valid_mo_counts(int(self.n_mo), int(self.n_mo)):
            raise InputError(f"cvd n_mo={self.n_mo} is not a valid alpha-MoO3 slab size (a multiple of 4, aspect <= 3:1)")
        if self.stage_steps < 2:
            raise InputError(f"cvd stage_ps={self.stage_ps} gives {self.stage_steps} step(s); a stage needs >= 2")

    @classmethod
    def from_config(cls, table: dict) -> RmdSettings:
        """Settings from the ``[cvd]`` table (missing keys take SCHEMA's defaults; unknown keys are refused)."""
        return settings_from(cls, table, section="cvd")

    @property
    def stage_steps(self) -> int:
        """MD steps per stage: ``round(stage_ps / timestep_fs)``."""
        return round(self.stage_ps * 1000.0 / self.timestep_fs)

    @property
    def ranges(self) -> ScheduleRanges:
        """The paper's schedule ranges with gas counts scaled to ``n_mo`` (Rajak et al. 2021)."""
        return PAPER_RANGES.scaled(int(self.n_mo))
