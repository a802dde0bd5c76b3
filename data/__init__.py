"""Packaged data: ReaxFF force fields and prebuilt starting structures.

See ``README.md`` beside this file for the provenance of the force fields and the
MoO3 cell, and ``STRUCTURES.md`` for the command and seed that made each prebuilt
structure.
"""

from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    """Return the path of a packaged data file, e.g. ``data_path("forcefields", "ffield.SiOH")``."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
