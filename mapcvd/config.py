"""Campaign configuration: TOML files checked against a declared schema.

A configuration is a TOML document of sections (``[campaign]``, ``[map]``, ``[cvd]``,
...), each a table of keys. Every key is declared in :data:`SCHEMA` with its type,
default, allowed range and a one-line description; an unknown section or key, a
wrong type or a value out of range is refused before any work starts, with a
one-line :class:`~mapcvd.errors.ConfigError` naming the key and what is allowed.

Later layers add their sections to :data:`SCHEMA` (one declaration per key, one
place to read what a config may hold). The typed, frozen settings of each stage
(``MapSettings``, ``NebSettings``, ``RmdSettings``) declare their fields with
:func:`setting`, so each key's default, range check and doc live here only, and are
built from a table by the one function :func:`settings_from`.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mapcvd.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """Declaration of one configuration key.

    Attributes
    ----------
    type
        Python type of the value (``int``, ``float``, ``str``, ``bool``); an ``int``
        is accepted where a ``float`` is declared.
    default
        Value used when the key is absent.
    doc
        One-line description, shown in error messages and ``mapcvd config show``.
    min, max
        Inclusive bounds for numbers.
    choices
        Allowed values for strings.
    """

    type: type
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None

    def describe(self) -> str:
        """What values are allowed, in words."""
        parts = [self.type.__name__]
        if self.choices:
            parts = ["one of " + ", ".join(repr(c) for c in self.choices)]
        if self.min is not None:
            parts.append(f">= {self.min}")
        if self.max is not None:
            parts.append(f"<= {self.max}")
        return " ".join(parts)

    def check(self, name: str, value: Any) -> Any:
        """Return ``value`` (converted int -> float where declared) or raise ConfigError."""
        ok = isinstance(value, self.type) and not (self.type is not bool and isinstance(value, bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(
                f"config key '{name}' must be {self.describe()} ({self.doc}), got {type(value).__name__} {value!r}"
            )
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"config key '{name}' must be {self.describe()}, got {value!r}")
        low = self.min is not None and value < self.min
        if low or (self.max is not None and value > self.max) or (self.type is float and math.isnan(value)):
            raise ConfigError(f"config key '{name}' must be {self.describe()} ({self.doc}), got {value!r}")
        return value


#: Every section and key a campaign configuration may hold.
SCHEMA: dict[str, dict[str, Key]] = {
    "campaign": {
        "name": Key(str, "demo", "campaign name, shown in the dashboard and report"),
        "seed": Key(int, 2026, "master random seed of the campaign", min=0),
        "site": Key(str, "local", "Parsl site: threads, local, slurm, pbs or a path to a site file"),
        "store": Key(str, "runs/demo.zarr", "path of the Zarr campaign store"),
    },
    # [map]: the MAP pathfinder (mapcvd map ...); typed as MapSettings (mapcvd/map/environment.py) and NebSettings
    "map": {
        # the system: nothing here is specific to water in silica
        "structure": Key(str, "silica-192-water.extxyz",
                         "host with the guided molecule: a packaged structure name or a file path"),
        "guided": Key(str, "water", "guided molecule: 'water' (found automatically) or atom indices, "
                                    "tethered atom first, e.g. '192 193 194'"),
        "forcefield": Key(str, "ffield.SiOH", "ReaxFF file (packaged name or path); ignored with lammps_commands"),
        "elements": Key(str, "Si O H", "element of each LAMMPS type, in order"),
        "lammps_commands": Key(str, "", "any other potential as LAMMPS commands separated by ';' (units metal)"),
        "goal_axis": Key(str, "x", "axis the molecule must cross", choices=("x", "y", "z")),
        # the environment (Chen et al. MAP: NVT 10 K, 0.5 fs)
        "delta_A": Key(float, 0.5, "tether move per action (A)", min=1e-3, max=5.0),
        "relax_steps": Key(int, 20, "MD steps after each action", min=1, max=1_000_000),
        "temperature_K": Key(float, 10.0, "NVT temperature (K)", min=0.1, max=10_000.0),
        "timestep_fs": Key(float, 0.5, "MD timestep (fs)", min=0.01, max=5.0),
        "damping_fs": Key(float, 50.0, "Nose-Hoover damping time (fs)", min=0.1, max=1e5),
        "tether_k_eV_A2": Key(float, 5.0, "tether spring constant (eV/A^2)", min=1e-3, max=1e4),
        "max_actions": Key(int, 40, "actions before an episode is cut", min=1, max=1_000_000),
        "density_distance_A": Key(float, 1.2, "closest approach of another atom before R_density fires (A)",
                                  min=0.01, max=10.0),
        "distance_threshold_A": Key(float, 1.0, "agent-to-atom distance beyond which R_distance fires (A)",
                                    min=0.01, max=20.0),
        "energy_window": Key(int, 100, "MD steps in the reference energy of R_energy", min=1, max=100_000),
        "grid_points": Key(int, 16, "state grid points per side", min=4, max=128),
        "grid_spacing_A": Key(float, 0.5, "state grid spacing (A)", min=0.05, max=5.0),
        "grid_sigma_A": Key(float, 0.5, "Gaussian width of the density grid (A)", min=0.05, max=5.0),
        "reward_position": Key(float, 1.0, "weight of R_position (0 switches it off)", min=0.0, max=1e3),
        "reward_energy": Key(float, 0.5, "weight of R_energy (0 switches it off)", min=0.0, max=1e3),
        "reward_density": Key(float, 0.5, "weight of R_density (0 switches it off)", min=0.0, max=1e3),
        "reward_distance": Key(float, 0.5, "weight of R_distance (0 switches it off)", min=0.0, max=1e3),
        "reward_time": Key(float, 0.1, "weight of R_time (0 switches it off)", min=0.0, max=1e3),
        # distributed training (Ape-X, Horgan et al. arXiv:1803.00933)
        "actors": Key(int, 2, "actor apps, each with its own LAMMPS", min=1, max=100_000),
        "minutes": Key(float, 10.0, "training wall time per 'map train' run (minutes)", min=0.05, max=1e6),
        "epsilon_base": Key(float, 0.4, "epsilon_i = base^(1 + alpha i/(N-1))", min=0.0, max=1.0),
        "epsilon_alpha": Key(float, 7.0, "exponent spread of the actors' epsilons", min=0.0, max=100.0),
        "weights_every": Key(int, 5, "actions between checks for newer weights", min=1, max=100_000),
        "n_step": Key(int, 3, "n of the n-step returns", min=1, max=100),
        "gamma": Key(float, 0.95, "discount factor", min=0.0, max=1.0),
        "double_dqn": Key(bool, True, "double-DQN targets"),
        "learning_rate": Key(float, 5e-4, "Adam learning rate", min=1e-7, max=1.0),
        "batch": Key(int, 32, "learner batch size", min=1, max=65_536),
        "target_update": Key(int, 100, "updates between target-network copies", min=1, max=10_000_000),
        "priority_alpha": Key(float, 0.6, "prioritisation exponent alpha", min=0.0, max=1.0),
        "priority_beta0": Key(float, 0.4, "initial importance-sampling exponent beta", min=0.0, max=1.0),
        "beta_updates": Key(int, 5000, "updates over which beta anneals to 1", min=1, max=100_000_000),
        "replay_capacity": Key(int, 2048, "replay rows per actor (a multiple of replay_chunk)", min=1,
                               max=100_000_000),
        "replay_chunk": Key(int, 16, "transitions per replay write", min=1, max=65_536),
        "learning_starts": Key(int, 64, "transitions in replay before the first update", min=1, max=100_000_000),
        "updates_per_transition": Key(float, 2.0, "learner updates per ingested transition (caps CPU use)",
                                      min=0.01, max=1000.0),
        "publish_every": Key(int, 20, "least updates between weight publications", min=1, max=1_000_000),
        "publish_seconds": Key(float, 2.0, "least seconds between weight publications", min=0.0, max=1e6),
        "checkpoint_seconds": Key(float, 30.0, "seconds between learner checkpoints", min=1.0, max=1e6),
        "conv_channels": Key(str, "16 32 32", "output channels of the stride-2 3-D convolutions"),
        "hidden": Key(int, 128, "width of the Q-network's dense layer", min=1, max=65_536),
        "device": Key(str, "auto", "learner device: auto (CUDA when torch sees it), cpu or cuda",
                      choices=("auto", "cpu", "cuda")),
        "learner_threads": Key(int, 1, "torch threads of a CPU learner", min=1, max=1024),
        "training_frames": Key(bool, True, "store every training episode's frames (for pathways)"),
        # pathways: piecewise NEB (Henkelman et al. 2000, climbing image) and TST times (mapcvd map paths, neb)
        "neb_images": Key(int, 5, "intermediate NEB images per segment", min=1, max=64),
        "neb_fmax_eV_A": Key(float, 0.1, "NEB force convergence: largest atom force on the band (eV/A)",
                             min=1e-6, max=10.0),
        "neb_climb": Key(bool, True, "climbing image after a first plain relaxation, while the band has an "
                                     "interior maximum and unless it climbs past the plain band's top plus "
                                     "its span (then the plain band)"),
        "neb_max_steps": Key(int, 600, "NEB optimiser steps before a band is reported unconverged", min=1,
                             max=1_000_000),
        "neb_spring_eV_A2": Key(float, 0.1, "spring constant between NEB images (eV/A^2)", min=1e-4, max=100.0),
        "neb_optimizer": Key(str, "fire", "NEB optimiser of the ASE driver: fire, bfgs (also the endpoints'), or "
                             "ode (ASE's NEBOptimizer, adaptive ODE; the endpoints by FIRE)",
                             choices=("fire", "bfgs", "ode")),
        "neb_driver": Key(str, "ase", "NEB driver: ASE's NEB on LAMMPS in this process, or LAMMPS's neb "
                                      "(one process per image)", choices=("ase", "lammps")),
        "segment_prominence_eV": Key(float, 0.5, "smallest peak prominence of a profile maximum that makes a "
                                                 "NEB segment (eV)", min=1e-4, max=100.0),
        "tst_temperature_K": Key(float, 623.15, "TST temperature of 'map paths' (K; the paper: 350 C)", min=1.0,
                                 max=10_000.0),
        "tst_distance_nm": Key(float, 3.0, "distance the pathway times are scaled to (nm)", min=1e-3, max=1e6),
        "paths_top": Key(int, 3, "episodes refined and ranked by 'map paths'", min=1, max=100_000),
        "eval_episodes": Key(int, 5, "episodes of 'map evaluate' and the campaign's evaluation", min=1,
                             max=100_000),
        "ranks_per_actor": Key(int, 1, "MPI ranks of each MAP actor's LAMMPS (1: one serial LAMMPS per core)",
                               min=1, max=100_000),
    },
    # [cvd]: the MoO3 slab and the staged reactive-MD runs (mapcvd cvd rmd)
    "cvd": {
        "n_mo": Key(int, 16, "Mo atoms in the MoO3 slab of the staged runs (paper: 288)", min=8, max=100_000),
        "vacuum_A": Key(float, 40.0, "vacuum gap along z that holds the gas (A)", min=10.0, max=1000.0),
        "n_stages": Key(int, 20, "stages per run (the paper: 20)", min=1, max=10_000),
        "stage_ps": Key(float, 0.1, "MD time per stage (ps; the paper: 1000)", min=0.001, max=1.0e6),
        "timestep_fs": Key(float, 0.25, "MD timestep (fs; Hong et al. 2017: 0.25)", min=0.01, max=2.0),
        "damping_fs": Key(float, 25.0, "Nose-Hoover damping time (fs; Hong et al. 2017: 25)", min=1.0, max=1.0e5),
        "min_distance_A": Key(
            float, 3.0, "smallest distance of an inserted gas atom to any other atom (A)", min=1.0, max=10.0
        ),
        "neighbor_skin_A": Key(float, 1.0, "LAMMPS neighbour-list skin (A)", min=0.1, max=5.0),
        "rescale_velocities": Key(bool, True, "scale velocities to the stage temperature at each stage start"),
        "relax_iterations": Key(int, 25, "CG iterations relaxing the bare slab before stage 1 (0: none)", min=0,
                                max=100_000),
        "exhaust_products": Key(bool, True, "take out all gas but the feed (S2, H2, H2S) at each stage start (flow reactor)"),
        "seed": Key(int, 0, "random seed of mapcvd cvd rmd (gas placement, velocities, removal)", min=0),
        "ranks_per_run": Key(int, 1, "MPI ranks of each staged run of the dataset and validation (LAMMPS under "
                             "mpiexec; 1: one serial LAMMPS per core, the most MD per core)", min=1, max=100_000),
    },
    # [cvd_learning]: the CVD dataset, NADE-CVD, REINFORCE agent and validation
    # (Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3)
    "cvd_learning": {
        # dataset: random schedules (uniform start, Gaussian steps), one reactive-MD run each;
        # slab, stage count and stage length are the [cvd] keys
        "runs": Key(int, 12, "reactive-MD runs in the dataset (paper: 10,000)", min=1, max=10_000_000),
        "retries": Key(int, 1, "extra attempts of a failed run within one invocation", min=0, max=10),
        # NADE-CVD surrogate (paper: 24 48 72 / LSTM 128 / 72 24, Adam 1e-4, batch 32)
        "nade_encoder": Key(str, "24 48 72", "widths of the NADE encoder layers, e.g. '24 48 72'"),
        "nade_lstm": Key(int, 128, "NADE LSTM hidden size (= the agent's state size)", min=1, max=65_536),
        "nade_decoder": Key(str, "72 24", "widths of the NADE decoder layers, e.g. '72 24'"),
        "nade_epochs": Key(int, 1000, "most NADE training epochs", min=1, max=10_000_000),
        "nade_batch": Key(int, 32, "NADE minibatch size (runs)", min=1, max=1_000_000),
        "nade_lr": Key(float, 1e-3, "NADE Adam learning rate (paper: 1e-4 on 10,000 runs)", min=1e-8, max=1.0),
        "nade_val_fraction": Key(float, 0.2, "share of done runs held out for validation", min=0.01, max=0.9),
        "nade_patience": Key(int, 100, "epochs without a better validation loss before stopping (0: never)",
                             min=0, max=10_000_000),
        # surrogates (mapcvd/cvd/surrogates.py): 'store' = the NADE-CVD trained on this campaign's
        # dataset, 'paper' = the CVD paper's trained NADE-CVD (shipped), or PATH.pt of that format
        "surrogate": Key(str, "store", "surrogate of 'cvd agent|predict|validate|optimise' without --surrogate: "
                         "store, paper or PATH.pt"),
        "reference_surrogate": Key(str, "paper", "second surrogate the campaign trains an agent on, beside its own "
                                   "NADE-CVD: paper, PATH.pt or none"),
        "reference_updates": Key(int, 5000, "REINFORCE updates of the campaign's agent on the reference surrogate",
                                 min=1, max=100_000_000),
        # schedules optimised directly through the surrogate (mapcvd/cvd/optimise.py): the agent's
        # upper reference, shown beside its return by 'cvd agent' and the campaign
        "optimise_starts": Key(int, 64, "random starting schedules of 'cvd optimise' (one batched tensor)",
                               min=1, max=1_000_000),
        "optimise_steps": Key(int, 1500, "Adam steps of 'cvd optimise'; 0: 'cvd agent' and the campaign skip it",
                              min=0, max=10_000_000),
        # REINFORCE agent with a value baseline
        "agent_updates": Key(int, 3000, "REINFORCE updates (paper: 15,000)", min=1, max=100_000_000),
        "agent_batch": Key(int, 32, "episodes per REINFORCE update", min=1, max=1_000_000),
        "agent_lr": Key(float, 1e-3, "agent Adam learning rate", min=1e-8, max=1.0),
        "agent_gamma": Key(float, 0.99, "discount of the per-stage 2H reward", min=0.0, max=1.0),
        "agent_eval_episodes": Key(int, 1024, "episodes of the agent-vs-random expected returns",
                                   min=1, max=10_000_000),
        "agent_best": Key(int, 8, "best agent schedules kept in the store", min=1, max=100_000),
        # validation of the agent's best schedules with reactive MD
        "validate_top": Key(int, 2, "best agent schedules re-run with reactive MD", min=1, max=100_000),
        "threads": Key(int, 1, "torch threads of NADE and agent training", min=1, max=1024),
    },
}


def default(section: str, key: str) -> Any:
    """SCHEMA's default of ``[section] key``: the default of a library function's argument that a key feeds."""
    return SCHEMA[section][key].default


def defaults() -> dict[str, dict[str, Any]]:
    """The configuration with every key at its default."""
    return {section: {k: key.default for k, key in keys.items()} for section, keys in SCHEMA.items()}


def validate(raw: Mapping[str, Any], schema: Mapping[str, Mapping[str, Key]] = SCHEMA) -> dict[str, dict[str, Any]]:
    """Check ``raw`` against ``schema`` and fill in defaults.

    Raises
    ------
    ConfigError
        On an unknown section or key, a wrong type or a value out of range.
    """
    config = {section: {k: key.default for k, key in keys.items()} for section, keys in schema.items()}
    for section, table in raw.items():
        if section not in schema:
            raise ConfigError(f"unknown config section [{section}]; allowed: {', '.join(schema)}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"config section [{section}] must be a table of keys, got {table!r}")
        for name, value in table.items():
            keys = schema[section]
            if name not in keys:
                raise ConfigError(
                    f"unknown config key '{section}.{name}'; allowed in [{section}]: {', '.join(keys)}"
                )
            config[section][name] = keys[name].check(f"{section}.{name}", value)
    return config


def load_config(path: str | Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Read and validate a TOML configuration; ``None`` gives the packaged demo config.

    Parameters
    ----------
    path
        TOML file, or ``None`` for ``configs/demo.toml``.
    overrides
        ``{section: {key: value}}`` applied on top of the file (command-line options).

    Raises
    ------
    ConfigError
        If the file is missing or malformed, or a key fails :func:`validate`.
    """
    path = Path(path) if path is not None else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return validate(_with_overrides(raw, overrides))


def _with_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]] | None) -> dict:
    """A deep copy of ``raw`` with the non-None values of ``overrides`` set on top."""
    raw = copy.deepcopy(dict(raw))
    for section, table in (overrides or {}).items():
        raw.setdefault(section, {}).update({k: v for k, v in table.items() if v is not None})
    return raw


#: Sections of earlier versions, ignored when a store written by one is read.
RETIRED_SECTIONS = ("structures", "smoke")


def config_from_stored(
    stored: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    sections: tuple[str, ...] | None = None,
    where: str = "the store",
) -> dict:
    """Validate the configuration a campaign store holds, with command-line overrides on top.

    Parameters
    ----------
    stored
        The ``config`` attribute of a campaign store.
    overrides
        ``{section: {key: value}}``; None values are ignored.
    sections
        Keep only these sections of ``stored`` (the others take their defaults): a
        command that uses a few sections is not stopped by keys of the others that
        another mapcvd version wrote.
    where
        The store, named in the error message.

    Raises
    ------
    ConfigError
        When the stored settings do not fit this version's schema.
    """
    if sections is not None:
        stored = {section: stored.get(section, {}) for section in sections}
    stored = {section: table for section, table in stored.items() if section not in RETIRED_SECTIONS}
    try:
        return validate(_with_overrides(stored, overrides))
    except ConfigError as exc:
        raise ConfigError(f"the configuration stored in {where} does not fit this mapcvd ({exc}); "
                          "pass a config file") from None


# ------------------------------------------------------------------ a store stays with its config
#: Keys that may differ from the configuration a store was trained with: budgets,
#: where and how fast the learner runs, and the pathway analysis (``map paths`` keeps
#: refined segments per NEB settings and starts afresh on others).
CHANGEABLE_KEYS: dict[str, frozenset[str]] = {
    "campaign": frozenset({"site", "store"}),
    "map": frozenset({"minutes", "device", "learner_threads", "checkpoint_seconds", "publish_seconds",
                      "eval_episodes", "paths_top", "segment_prominence_eV", "tst_temperature_K",
                      "tst_distance_nm", "ranks_per_actor"} | {k for k in SCHEMA["map"] if k.startswith("neb_")}),
}


def config_changes(stored: Mapping[str, Mapping[str, Any]], given: Mapping[str, Mapping[str, Any]], *,
                   sections: tuple[str, ...] = ("campaign", "map")) -> list[str]:
    """The keys of ``sections`` whose values differ between two validated configurations,
    as ``"map.actors 2 -> 4"``, leaving out :data:`CHANGEABLE_KEYS`."""
    changes = []
    for section in sections:
        old, new = stored.get(section, {}), given.get(section, {})
        for key in SCHEMA[section]:
            if key in CHANGEABLE_KEYS.get(section, ()) or old.get(key) == new.get(key):
                continue
            changes.append(f"{section}.{key} {old.get(key)!r} -> {new.get(key)!r}")
    return changes


def refuse_changed_config(stored: Mapping, given: Mapping, where: str) -> None:
    """ConfigError naming every key (but :data:`CHANGEABLE_KEYS`) of ``[campaign]`` and
    ``[map]`` in which ``given`` differs from the configuration the store at ``where`` holds:
    a store trained with one configuration is never continued with another."""
    changes = config_changes(stored, given)
    if changes:
        raise ConfigError(f"{where} was trained with other settings ({'; '.join(changes)}): continue it without "
                          "a config file, or train a new --store")


# ------------------------------------------------------------------ typed settings
def setting(section: str, key: str | Mapping[str, str]):
    """A field of a frozen settings dataclass that holds ``[section] key``, with SCHEMA's default.

    ``key`` may be a mapping ``{name: key}``: the field is then a dict of several keys
    (e.g. ``MapSettings.rewards`` from the ``reward_*`` keys).
    """
    if isinstance(key, str):
        return field(default=SCHEMA[section][key].default, metadata={"config": (section, key)})
    keys = dict(key)
    return field(default_factory=lambda: {name: SCHEMA[section][k].default for name, k in keys.items()},
                 metadata={"config": (section, keys)})


def config_fields(cls) -> dict[str, tuple[str, str | dict[str, str]]]:
    """``{field: (section, key or {name: key})}`` of the fields a settings class declares with :func:`setting`."""
    return {f.name: f.metadata["config"] for f in fields(cls) if "config" in f.metadata}


def config_values(settings) -> dict[str, Any]:
    """``{field: value}`` of the config fields of a settings instance (JSON-ready, e.g. for a store)."""
    return {name: getattr(settings, name) for name in config_fields(type(settings))}


def check_settings(settings) -> None:
    """SCHEMA's check of each config field of ``settings`` (call it in ``__post_init__``).

    Raises
    ------
    ConfigError
        Naming the config key whose value does not fit.
    """
    for name, (section, key) in config_fields(type(settings)).items():
        value = getattr(settings, name)
        pairs = [(key, value)] if isinstance(key, str) else [(key[k], v) for k, v in value.items() if k in key]
        for k, v in pairs:
            SCHEMA[section][k].check(f"{section}.{k}", v)


def settings_from(cls, table: Mapping[str, Any] | None, *, section: str, **given):
    """The settings dataclass ``cls`` built from a ``[section]`` table.

    Each field declared with :func:`setting` takes its key's value from ``table``,
    checked by :func:`validate` (a key the table lacks takes SCHEMA's default);
    ``given`` sets fields by name on top (None values are ignored: options left out);
    the other fields keep their own defaults.

    Raises
    ------
    ConfigError
        On an unknown or bad key of the table, a given name that is no field of
        ``cls``, or a config field of another section.
    """
    table = validate({section: dict(table or {})})[section]
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {}
    for name, (where, key) in config_fields(cls).items():
        if where != section:
            raise ConfigError(f"{cls.__name__}.{name} holds a [{where}] key, not one of [{section}]")
        values[name] = table[key] if isinstance(key, str) else {k: table[v] for k, v in key.items()}
    values.update({name: value for name, value in given.items() if value is not None})
    return cls(**values)


def default_config_path() -> Path:
    """Path of the packaged demo configuration."""
    from mapcvd.configs import config_path  # noqa: PLC0415

    return config_path("demo.toml")
