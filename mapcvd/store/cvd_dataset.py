"""Tables of staged reactive-MD runs in the campaign store: the CVD dataset and validation.

The CVD campaign of Rajak et al., npj Comput. Mater. 7, 108 (2021),
doi:10.1038/s41524-021-00535-3, trains its NADE-CVD surrogate on many staged
reactive-MD runs, each a schedule of stages ``X_t = (T, n_S2, n_H2, n_H2S)`` and the
phase fractions ``Z_t = (2H, 1T, defect)`` after each stage. A :class:`RunTable` holds
such runs, one row per run, below one group of the campaign store:
``cvd/dataset`` (random schedules) and ``cvd/validation`` (the agent's best schedules).

Layout (``n`` rows, ``S`` stages; every array chunked one row per chunk)::

    cvd/dataset/                 attrs: kind="mapcvd-cvd-runs", n_runs (the commit count
                                 of rows), n_stages, species, phases, variables,
                                 gas_order, status_codes, plus the owner's attrs
                                 (seed, n_mo, ranges, cvd config table, ...)
        schedule      f8 (n, S, 4)   planned schedule, written when the row is added
        X             f8 (n, S, 4)   schedule as run (NaN until done)
        Z             f8 (n, S, 3)   (2H, 1T, defect) at each stage end (NaN until done)
        gas_counts    f8 (n, S, 3)   S2, H2, H2S molecules at each stage start
        temperature_K f8 (n, S)      mean temperature of each stage's second half
        energy_eV     f8 (n, S)      potential energy at each stage end
        n_atoms       i4 (n, S)      atoms at each stage end
        species       i4 (n, S, k)   molecules of each species at each stage end
        md_seconds    f8 (n,)        seconds inside LAMMPS
        wall_seconds  f8 (n,)        wall time of the run
        seed          i8 (n,)        MD seed of the last attempt
        attempts      i4 (n,)        attempts so far (all invocations; one whose worker was
                                     lost is not counted, so its retry keeps its MD seed)
        message       str (n,)       last error message ("" when none)
        status        i1 (n,)        0 pending, 1 done, 2 failed

Rules (see :mod:`mapcvd.store.campaign`): one process, the campaign driver, writes a
table; each row is one chunk of every array, so every write of a run's result is a
whole-chunk write; a run's data are written first and its ``status`` last (commit after
data): a crash between the two leaves the row ``pending``, and the run is redone on the
next invocation, overwriting the same row, so nothing is duplicated. A failed run stores
only its message and attempt count, never data: its ``X``, ``Z`` and the other data
arrays keep their fill values (NaN, or 0 for integers). Rows are added by resizing every
array, writing the new planned schedules, and only then moving the ``n_runs`` attribute
(again commit after data); readers use rows below ``n_runs`` only. A row's app may
keep its stage checkpoint in the subgroup ``checkpoints`` of the table
(:mod:`mapcvd.store.stage_checkpoints`), which no table array covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zarr

from mapcvd.errors import StoreError
from mapcvd.store.layout import RUN_TABLE_KIND

__all__ = [
    "PHASES",
    "SPECIES",
    "STATUS",
    "VARIABLES",
    "RunTable",
    "check_result",
]

#: Status code of each row.
STATUS: dict[str, int] = {"pending": 0, "done": 1, "failed": 2}
VARIABLES: tuple[str, ...] = ("T", "n_S2", "n_H2", "n_H2S")
PHASES: tuple[str, ...] = ("2H", "1T", "defect")
GAS_ORDER: tuple[str, ...] = ("S2", "H2", "H2S")
#: Species counted per stage (the order of :data:`mapcvd.cvd.rmd.SPECIES`).
SPECIES: tuple[str, ...] = ("S2", "H2S", "H2", "H2O", "SO", "SO2")

#: name -> (trailing shape as a function of (n_stages, n_species), dtype, fill value).
_FIELDS: dict[str, tuple] = {
    "schedule": (lambda s, k: (s, 4), "f8", np.nan),
    "X": (lambda s, k: (s, 4), "f8", np.nan),
    "Z": (lambda s, k: (s, 3), "f8", np.nan),
    "gas_counts": (lambda s, k: (s, 3), "f8", np.nan),
    "temperature_K": (lambda s, k: (s,), "f8", np.nan),
    "energy_eV": (lambda s, k: (s,), "f8", np.nan),
    "n_atoms": (lambda s, k: (s,), "i4", 0),
    "species": (lambda s, k: (s, k), "i4", 0),
    "md_seconds": (lambda s, k: (), "f8", np.nan),
    "wall_seconds": (lambda s, k: (), "f8", np.nan),
    "seed": (lambda s, k: (), "i8", -1),
    "attempts": (lambda s, k: (), "i4", 0),
    "message": (lambda s, k: (), str, ""),
    "status": (lambda s, k: (), "i1", STATUS["pending"]),
}
#: The data of a run, written before its status (in this order).
_DATA = ("X", "Z", "gas_counts", "temperature_K", "energy_eV", "n_atoms", "species",
         "md_seconds", "wall_seconds")


def check_result(result: Mapping[str, Any], n_stages: int, n_species: int = len(SPECIES)) -> dict:
    """Check one run's result and return it as arrays of the table's shapes.

    Parameters
    ----------
    result : mapping
        ``schedule`` (S, 4), ``fractions`` (S, 3), ``gas_counts`` (S, 3),
        ``temperature_K`` (S,), ``energy_eV`` (S,), ``species`` (S, k), ``n_atoms`` (S,),
        ``md_seconds``, ``wall_seconds`` (the fields of ``mapcvd.cvd.rmd.RmdResult``).
    n_stages, n_species : int
        Expected S and k.

    Returns
    -------
    dict
        The table's data fields (``X``, ``Z``, ...), as numpy arrays.

    Raises
    ------
    ValueError
        A missing field, a wrong shape, a non-finite value, or fractions outside [0, 1]
        or not summing to 1: such a result is recorded as a failure, never as data.
    """
    S = int(n_stages)
    want = {
        "schedule": (S, 4), "fractions": (S, 3), "gas_counts": (S, 3), "temperature_K": (S,),
        "energy_eV": (S,), "species": (S, int(n_species)), "n_atoms": (S,),
    }
    out = {}
    for key, shape in want.items():
        if key not in result:
            raise ValueError(f"result has no {key!r}")
        arr = np.asarray(result[key], dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(f"result {key!r} has shape {arr.shape}, expected {shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"result {key!r} holds non-finite values")
        out[key] = arr
    z = out["fractions"]
    if np.any(z < -1e-9) or np.any(z > 1 + 1e-9) or np.any(np.abs(z.sum(-1) - 1.0) > 1e-6):
        raise ValueError("result 'fractions' are not phase fractions (each in [0, 1], summing to 1)")
    seconds = {k: float(result.get(k, np.nan)) for k in ("md_seconds", "wall_seconds")}
    return {
        "X": out["schedule"], "Z": z, "gas_counts": out["gas_counts"],
        "temperature_K": out["temperature_K"], "energy_eV": out["energy_eV"],
        "n_atoms": out["n_atoms"].astype(np.int32), "species": out["species"].astype(np.int32),
        **seconds,
    }


class RunTable:
    """One table of staged runs in a campaign store (see the module docstring).

    Open one with :meth:`create`, :meth:`open` or :meth:`open_or_create`. Only the
    campaign driver writes a table; any process may read it.
    """

    def __init__(self, group: zarr.Group) -> None:
        if group.attrs.get("kind") != RUN_TABLE_KIND:
            raise StoreError(f"{group.path!r} is not a CVD run table (kind {group.attrs.get('kind')!r})")
        self.group = group
        self.arrays = {}
        for name in _FIELDS:
            if name not in group:
                raise StoreError(f"CVD run table {group.path!r} lacks array {name!r}")
            self.arrays[name] = group[name]

    # ------------------------------------------------------------ create / open
    @classmethod
    def create(cls, parent: zarr.Group, path: str, *, n_stages: int, attrs: Mapping | None = None,
               species: Sequence[str] = SPECIES) -> RunTable:
        """Create an empty table (0 rows) at ``parent/path``.

        ``species`` names the molecules counted per stage (``mapcvd.cvd.rmd.SPECIES``);
        ``attrs`` are added to the table's attributes.
        """
        if path in parent:
            raise StoreError(f"{path!r} already exists in store {parent.store}")
        S, k = int(n_stages), len(species)
        group = parent.require_group(path)
        for name, (shape, dtype, fill) in _FIELDS.items():
            tail = shape(S, k)
            group.create_array(name, shape=(0, *tail), chunks=(1, *tail), dtype=dtype, fill_value=fill)
        group.update_attributes({
            "kind": RUN_TABLE_KIND, "n_runs": 0, "n_stages": S, "n_species": k,
            "species": [str(v) for v in species],
            "phases": list(PHASES), "variables": list(VARIABLES), "gas_order": list(GAS_ORDER),
            "status_codes": dict(STATUS), **dict(attrs or {}),
        })
        return cls(group)

    @classmethod
    def open(cls, parent: zarr.Group, path: str) -> RunTable:
        """Open the table at ``parent/path``; StoreError when there is none."""
        try:
            group = parent[path]
        except KeyError:
            raise StoreError(f"no CVD run table {path!r} in store {parent.store}") from None
        if not isinstance(group, zarr.Group):
            raise StoreError(f"{path!r} in store {parent.store} is an array, not a CVD run table")
        return cls(group)

    @classmethod
    def open_or_create(cls, parent: zarr.Group, path: str, *, n_stages: int,
                       attrs: Mapping | None = None,
                       species: Sequence[str] = SPECIES) -> tuple[RunTable, bool]:
        """Open the table at ``parent/path``, or create it; returns ``(table, created)``."""
        if path in parent:
            return cls.open(parent, path), False
        return cls.create(parent, path, n_stages=n_stages, attrs=attrs, species=species), True

    # ------------------------------------------------------------------- reading
    @property
    def attrs(self) -> dict:
        """The table group's attributes."""
        return dict(self.group.attrs.asdict())

    @property
    def n_runs(self) -> int:
        """Committed rows (the ``n_runs`` attribute)."""
        return int(self.group.attrs["n_runs"])

    @property
    def n_stages(self) -> int:
        """Stages per run (S)."""
        return int(self.group.attrs["n_stages"])

    @property
    def n_species(self) -> int:
        """Species counted per stage (k)."""
        return int(self.group.attrs["n_species"])

    def read(self, name: str, rows=None) -> np.ndarray:
        """Array ``name`` over the committed rows (or the given row indices)."""
        arr = self.arrays[name]
        if rows is None:
            return np.asarray(arr[: self.n_runs])
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.empty((0, *arr.shape[1:]), dtype=arr.dtype if name != "message" else object)
        return np.asarray(arr.get_orthogonal_selection((rows,)))

    def status(self) -> np.ndarray:
        """Status code of every committed row (see :data:`STATUS`)."""
        return self.read("status")

    def counts(self) -> dict[str, int]:
        """Rows per status name."""
        s = self.status()
        return {name: int(np.count_nonzero(s == code)) for name, code in STATUS.items()}

    def rows_with(self, status: str) -> np.ndarray:
        """Indices of the committed rows with the given status name."""
        return np.flatnonzero(self.status() == STATUS[status])

    def done(self) -> dict[str, np.ndarray]:
        """The done runs: ``rows`` (indices) and every data field over them."""
        rows = self.rows_with("done")
        out = {"rows": rows}
        for name in (*_DATA, "schedule", "seed", "attempts"):
            out[name] = self.read(name, rows)
        return out

    # ------------------------------------------------------------------- writing
    def _require_writable(self) -> None:
        if self.group.store.read_only:
            raise StoreError(f"CVD run table {self.group.path!r} was opened read-only")

    def extend(self, schedules: np.ndarray) -> range:
        """Add rows for new planned ``schedules`` (m, S, 4); returns the new row indices.

        Every array is resized, the schedules written, then ``n_runs`` moved (commit
        after data). Leftover rows of a crashed extension are overwritten.
        """
        self._require_writable()
        schedules = np.asarray(schedules, dtype=np.float64)
        S = self.n_stages
        if schedules.ndim != 3 or schedules.shape[1:] != (S, 4):
            raise StoreError(f"schedules must have shape (m, {S}, 4), got {schedules.shape}")
        start = self.n_runs
        stop = start + schedules.shape[0]
        for arr in self.arrays.values():
            if arr.shape[0] != stop:
                arr.resize((stop, *arr.shape[1:]))
        if stop > start:
            self.arrays["schedule"][start:stop] = schedules
            # rows of a crashed earlier extension may hold results: reset them to pending
            for name in ("status", "attempts", "message"):
                _, dtype, fill = _FIELDS[name]
                self.arrays[name][start:stop] = np.full(stop - start, fill, dtype=dtype)
        self.group.update_attributes({"n_runs": stop})
        return range(start, stop)

    def record_result(self, row: int, result: Mapping[str, Any], *, seed: int, attempts: int,
                      message: str = "") -> None:
        """Write a finished run's data (from :func:`check_result`), then mark it done."""
        self._require_writable()
        for name in _DATA:
            self.arrays[name][row] = result[name]
        self.arrays["seed"][row] = int(seed)
        self.arrays["attempts"][row] = int(attempts)
        self.arrays["message"][row] = str(message)
        self.arrays["status"][row] = STATUS["done"]  # commit

    def record_failure(self, row: int, message: str, *, seed: int, attempts: int) -> None:
        """Record a failed attempt: message and attempt count only, never data."""
        self._require_writable()
        self.arrays["seed"][row] = int(seed)
        self.arrays["attempts"][row] = int(attempts)
        self.arrays["message"][row] = " ".join(str(message).split())[:2000]
        self.arrays["status"][row] = STATUS["failed"]  # commit

    def set_attrs(self, **attrs) -> None:
        """Update the table's attributes in one write (driver only)."""
        self._require_writable()
        self.group.update_attributes(attrs)
