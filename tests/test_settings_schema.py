"""Each setting has one declaration: the settings classes take their defaults and ranges from SCHEMA."""

from dataclasses import MISSING, fields

import pytest

from mapcvd.config import SCHEMA, config_fields, settings_from
from mapcvd.cvd.learning_settings import LearningSettings
from mapcvd.cvd.rmd import RmdSettings
from mapcvd.errors import ConfigError, InputError
from mapcvd.map.environment import MapSettings
from mapcvd.map.system import settings_of
from mapcvd.map.training_settings import TrainingSettings
from mapcvd.pathways.neb import NebSettings, neb_from_map
from mapcvd.workflows.pathways import pathway_settings

#: (class, section, its fields that are no config key)
CLASSES = [(MapSettings, "map", set()), (TrainingSettings, "map", set()),
           (NebSettings, "map", {"minimize", "endpoint_steps", "max_move"}), (RmdSettings, "cvd", set()),
           (LearningSettings, "cvd_learning", set())]


def test_every_map_cvd_and_learning_key_has_a_settings_field():
    """Each [map], [cvd] and [cvd_learning] key reaches the code through a settings class (or is named here)."""
    declared = {(where, k) for cls, _, _ in CLASSES for where, key in config_fields(cls).values()
                for k in ([key] if isinstance(key, str) else key.values())}
    # read where no settings class fits: the system's structure and potential, the evaluation and pathway
    # drivers' plain values; the campaign seed
    plain = {("map", k) for k in ("structure", "guided", "forcefield", "elements", "lammps_commands",
                                  "eval_episodes", "segment_prominence_eV", "tst_temperature_K", "tst_distance_nm",
                                  "paths_top", "ranks_per_actor")} | {("cvd", "seed"), ("cvd", "ranks_per_run")}
    for section in ("map", "cvd", "cvd_learning"):
        missing = {k for k in SCHEMA[section] if (section, k) not in declared | plain}
        assert not missing, f"[{section}] keys without a settings field: {sorted(missing)}"


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


@pytest.mark.parametrize(("cls", "section", "local"), CLASSES, ids=lambda c: getattr(c, "__name__", None))
def test_every_default_is_the_schema_default(cls, section, local):
    keyed = config_fields(cls)
    assert set(keyed) == {f.name for f in fields(cls)} - local  # no config field with a default of its own
    for f in fields(cls):
        if f.name in local:
            assert f.name not in SCHEMA[section], f"{cls.__name__}.{f.name} shadows [{section}] {f.name}"
            continue
        where, key = keyed[f.name]
        assert where == section
        keys = {key: key} if isinstance(key, str) else key
        expected = {name: SCHEMA[section][k].default for name, k in keys.items()}
        value = _default(f)
        assert (value if not isinstance(key, str) else {key: value}) == expected, f"{cls.__name__}.{f.name}"


@pytest.mark.parametrize(("cls", "section", "local"), CLASSES, ids=lambda c: getattr(c, "__name__", None))
def test_built_from_an_empty_table_equals_the_keyword_defaults(cls, section, local):
    assert settings_from(cls, {}, section=section) == cls()


def test_schema_defaults_that_used_to_differ():
    assert MapSettings().max_actions == SCHEMA["map"]["max_actions"].default == 40
    assert NebSettings().fmax == SCHEMA["map"]["neb_fmax_eV_A"].default == 0.1
    assert NebSettings().max_steps == SCHEMA["map"]["neb_max_steps"].default == 600


@pytest.mark.parametrize("build", [
    lambda: settings_of({"max_actionz": 40}),
    lambda: neb_from_map({"neb_fmax": 0.1}),
    lambda: pathway_settings({**{k: key.default for k, key in SCHEMA["map"].items()}, "neb_imagez": 3}),
    lambda: RmdSettings.from_config({"n_moo": 16}),
    lambda: settings_from(RmdSettings, {"stage_sp": 0.1}, section="cvd"),
    lambda: settings_from(NebSettings, {}, section="map", fmaxx=0.1),
])
def test_a_misspelt_key_is_refused_in_one_line_naming_it(build):
    with pytest.raises((ConfigError, InputError)) as info:
        build()
    message = str(info.value)
    assert "\n" not in message
    assert any(word in message for word in ("max_actionz", "neb_fmax'", "neb_imagez", "n_moo", "stage_sp", "fmaxx"))


def test_keyword_construction_is_checked_by_schema():
    with pytest.raises(ConfigError, match="map.max_actions"):
        MapSettings(max_actions=0)
    with pytest.raises(ConfigError, match="map.neb_driver"):
        NebSettings(driver="gpu")
    with pytest.raises(ConfigError, match="cvd.vacuum_A"):
        RmdSettings(vacuum_A=float("nan"))
    with pytest.raises(ConfigError, match="map.reward_time"):
        MapSettings(rewards={"time": -1.0})


def test_table_values_reach_the_fields():
    settings = settings_of({"delta_A": 0.25, "reward_time": 0.0, "max_actions": 7})
    assert (settings.delta, settings.rewards["time"], settings.max_actions) == (0.25, 0.0, 7)
    neb = neb_from_map({"neb_images": 3, "neb_driver": "lammps"}, fmax=0.02, images=None, minimize=False)
    assert (neb.images, neb.driver, neb.fmax, neb.minimize) == (3, "lammps", 0.02, False)
