"""``mapcvd cvd phases`` and ``mapcvd cvd rmd``: phase analysis and staged reactive MD."""

from __future__ import annotations

from mapcvd.commands.groups import cvd  # noqa: F401
