"""``mapcvd neb``, ``mapcvd tst`` and ``mapcvd map paths``: from pathways to diffusion times."""

from __future__ import annotations
