"""CVD schedules as CSV files: one row per stage, columns ``T,n_S2,n_H2,n_H2S``.

A schedule of the staged reactive-MD runs of Rajak et al., npj Comput. Mater. 7, 108
(2021), doi:10.1038/s41524-021-00535-3, sets each stage ``t`` by
``X_t = (T, n_S2, n_H2, n_H2S)``: the temperature in K and the numbers of S2, H2 and
H2S molecules in the gas. In a file the counts are absolute molecule counts for the
slab actually simulated, so their allowed ranges are the paper's ranges scaled to the
slab (:meth:`mapcvd.cvd.ranges.ScheduleRanges.scaled`). Counts are rounded to whole
molecules when the run starts, so a count is accepted within half a molecule of its
range.

Every problem is an :class:`~mapcvd.errors.InputError` with a one-line message that
names the file, the line (and stage) and the column.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from mapcvd.cvd.ranges import VARIABLES, ScheduleRanges
from mapcvd.errors import InputError

__all__ = ["COLUMNS", "COUNT_SLACK", "read_schedule", "validate_schedule", "write_schedule"]

#: Header of a schedule file, in order.
COLUMNS: tuple[str, ...] = VARIABLES
#: Molecules a count may lie outside its (scaled) range: counts are rounded.
COUNT_SLACK = 0.5


def _check_value(value: float, col: int, ranges: ScheduleRanges | None, where: str) -> None:
    name = COLUMNS[col]
    if not math.isfinite(value):
        raise InputError(f"{where}, column {name}: value {value} is not finite")
    if col == 0 and value <= 0:
        raise InputError(f"{where}, column T: temperature must be positive, got {value:g} K")
    if col > 0 and value < 0:
        raise InputError(f"{where}, column {name}: molecule count must not be negative, got {value:g}")
    if ranges is not None:
        slack = 0.0 if col == 0 else COUNT_SLACK
        lo, hi = ranges.low[col], ranges.high[col]
        if not lo - slack - 1e-9 <= value <= hi + slack + 1e-9:
            unit = " K" if col == 0 else " molecules"
            raise InputError(
                f"{where}, column {name}: {value:g} is outside the allowed range "
                f"{lo:.4g}-{hi:.4g}{unit} (ranges of Rajak et al. 2021 scaled to the slab)"
            )


def validate_schedule(schedule, ranges: ScheduleRanges | None = None, *, source: str = "schedule") -> np.ndarray:
    """Check a schedule array and return it as float64, shape (S, 4).

    Parameters
    ----------
    schedule
        Array-like of shape (S, 4): ``(T, n_S2, n_H2, n_H2S)`` per stage.
    ranges
        Allowed ranges (already scaled to the slab), or ``None`` to check only that
        temperatures are positive and counts non-negative.
    source
        Name used in messages.

    Raises
    ------
    InputError
        Wrong shape, no stage, a non-finite or negative value, or a value out of range
        (the message names the stage and the column).
    """
    try:
        arr = np.asarray(schedule, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: not an array of numbers ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != len(COLUMNS) or arr.shape[0] == 0:
        raise InputError(f"{source}: expected shape (stages, 4) of {','.join(COLUMNS)}, got {arr.shape}")
    ok = np.isfinite(arr) & np.concatenate([arr[:, :1] > 0, arr[:, 1:] >= 0], axis=1)
    if ranges is not None:
        slack = np.array([0.0] + [COUNT_SLACK] * 3) + 1e-9
        ok &= (arr >= np.asarray(ranges.low) - slack) & (arr <= np.asarray(ranges.high) + slack)
    if not ok.all():
        stage, col = (int(v) for v in np.argwhere(~ok)[0])
        _check_value(float(arr[stage, col]), col, ranges, f"{source}: stage {stage + 1}")
    return arr


def read_schedule(path: str | Path, ranges: ScheduleRanges | None = None) -> np.ndarray:
    """Read a schedule CSV: header ``T,n_S2,n_H2,n_H2S``, then one row per stage.

    Blank lines are skipped; spaces around values are ignored.

    Parameters
    ----------
    path
        The CSV file.
    ranges
        Allowed ranges scaled to the slab (e.g. ``PAPER_RANGES.scaled(n_mo)``), or
        ``None`` for the basic checks only.

    Returns
    -------
    numpy.ndarray
        Shape (S, 4), float64.

    Raises
    ------
    InputError
        A missing or unreadable file, a wrong header, a row with the wrong number of
        columns, a value that is not a number, a negative count or a value outside the
        ranges: one line naming the file, line, stage and column.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"schedule file not found: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read schedule {path}: {exc}") from None
    rows = [(n, [v.strip() for v in row]) for n, row in enumerate(csv.reader(text.splitlines()), start=1)]
    rows = [(n, row) for n, row in rows if any(row)]
    if not rows:
        raise InputError(f"{path}: empty schedule (expected the header {','.join(COLUMNS)} and one row per stage)")
    line, header = rows[0]
    if tuple(header) != COLUMNS:
        raise InputError(f"{path}, line {line}: header must be {','.join(COLUMNS)}, got {','.join(header)}")
    if len(rows) == 1:
        raise InputError(f"{path}: the schedule has a header but no stage rows")
    values = np.empty((len(rows) - 1, len(COLUMNS)))
    for stage, (line, row) in enumerate(rows[1:]):
        where = f"{path}, line {line} (stage {stage + 1})"
        if len(row) != len(COLUMNS):
            raise InputError(f"{where}: expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), got {len(row)}")
        for col, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise InputError(f"{where}, column {COLUMNS[col]}: {cell!r} is not a number") from None
            _check_value(value, col, ranges, where)
            values[stage, col] = value
    return values


def write_schedule(path: str | Path, schedule) -> Path:
    """Write a schedule (S, 4) as CSV with the header ``T,n_S2,n_H2,n_H2S``."""
    arr = validate_schedule(schedule)
    path = Path(path)
    lines = [",".join(COLUMNS)] + [",".join(f"{v:.10g}" for v in row) for row in arr]
    path.write_text("\n".join(lines) + "\n")
    return path
