"""Exception types shared by every layer.

Every error a user can cause (bad input, a missing file, a failed simulation) is a
:class:`MapcvdError`; the command line prints its message on one line and exits
non-zero, without a traceback.
"""


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """``Type: message`` of an exception on one line (whitespace folded), cut at ``limit`` characters."""
    text = " ".join(str(exc).split())
    out = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return out if limit is None else out[:limit]


class MapcvdError(Exception):
    """Base class of the errors that the command line reports as one line."""


class InputError(MapcvdError):
    """Bad user input: a missing file, a value out of range, an unknown name."""


class ConfigError(InputError):
    """A configuration file or value that does not fit the schema."""


class MDError(MapcvdError):
    """A LAMMPS failure, translated into a Python exception naming the cause."""


class LammpsUnavailableError(MDError):
    """The LAMMPS library cannot be loaded, or lacks a needed package."""


class LostAtomsError(MDError):
    """LAMMPS lost atoms (they flew out of the box or through a fixed boundary)."""


class UnknownElementError(MDError, InputError):
    """A structure holds an element that the type map or force field lacks."""


class ForceFieldError(MDError, InputError):
    """A force-field or potential file is missing or unreadable."""


class StoreError(MapcvdError):
    """A campaign store that cannot be created or opened as asked."""
