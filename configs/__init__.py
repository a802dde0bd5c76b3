"""Packaged campaign configurations (TOML) and example Parsl site files.

``demo.toml`` is the laptop default that ``mapcvd campaign run`` uses with no
arguments; ``sites/`` holds documented site files for Slurm and PBS machines to copy
and edit.
"""

from importlib import resources
from pathlib import Path


def config_path(*parts: str) -> Path:
    """Return the path of a packaged configuration file, e.g. ``config_path("demo.toml")``."""
    return Path(str(resources.files(__name__).joinpath(*parts)))
