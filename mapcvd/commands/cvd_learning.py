"""``mapcvd cvd dataset|nade|agent|validate``: the CVD learning campaign."""

from __future__ import annotations

from mapcvd.commands.groups import cvd  # noqa: F401
