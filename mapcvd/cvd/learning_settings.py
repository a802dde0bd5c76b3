"""Typed settings of the CVD learning stages: dataset, NADE-CVD, REINFORCE agent, optimum, validation.

Rajak et al., npj Comput. Mater. 7, 108 (2021), doi:10.1038/s41524-021-00535-3: a
dataset of staged reactive-MD runs trains a neural autoregressive density estimator
(NADE-CVD) on which a REINFORCE agent learns the synthesis schedule; reactive MD
checks the agent's best schedules. Every field here is the ``[cvd_learning]`` key of
the same name in :data:`mapcvd.config.SCHEMA` (its default, range and doc live there
and nowhere else); :meth:`LearningSettings.from_config` builds it from a configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mapcvd.config import check_settings, setting, settings_from
from mapcvd.errors import ConfigError


def parse_widths(text: str, key: str) -> list[int]:
    """Layer widths written as ``'24 48 72'`` (or with commas); ConfigError naming ``key`` otherwise."""
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"config key '{key}' must list positive integer widths such as '24 48 72', got {text!r}")
    return values


@dataclass(frozen=True)
class LearningSettings:
    """The ``[cvd_learning]`` table as a frozen object (fields named as the keys; docs in SCHEMA).

    Groups: the dataset (``runs``, ``retries``); NADE-CVD (``nade_*``); the surrogates
    (``surrogate``, ``reference_surrogate``, ``reference_updates``); the direct optimum
    (``optimise_*``); the agent (``agent_*``); the reactive-MD validation
    (``validate_top``); torch ``threads``. The NADE layer widths are checked when built.
    """

    runs: int = setting("cvd_learning", "runs")
    retries: int = setting("cvd_learning", "retries")
    nade_encoder: str = setting("cvd_learning", "nade_encoder")
    nade_lstm: int = setting("cvd_learning", "nade_lstm")
    nade_decoder: str = setting("cvd_learning", "nade_decoder")
    nade_epochs: int = setting("cvd_learning", "nade_epochs")
    nade_batch: int = setting("cvd_learning", "nade_batch")
    nade_lr: float = setting("cvd_learning", "nade_lr")
    nade_val_fraction: float = setting("cvd_learning", "nade_val_fraction")
    nade_patience: int = setting("cvd_learning", "nade_patience")
    surrogate: str = setting("cvd_learning", "surrogate")
    reference_surrogate: str = setting("cvd_learning", "reference_surrogate")
    reference_updates: int = setting("cvd_learning", "reference_updates")
    optimise_starts: int = setting("cvd_learning", "optimise_starts")
    optimise_steps: int = setting("cvd_learning", "optimise_steps")
    agent_updates: int = setting("cvd_learning", "agent_updates")
    agent_batch: int = setting("cvd_learning", "agent_batch")
    agent_lr: float = setting("cvd_learning", "agent_lr")
    agent_gamma: float = setting("cvd_learning", "agent_gamma")
    agent_eval_episodes: int = setting("cvd_learning", "agent_eval_episodes")
    agent_best: int = setting("cvd_learning", "agent_best")
    validate_top: int = setting("cvd_learning", "validate_top")
    threads: int = setting("cvd_learning", "threads")

    def __post_init__(self) -> None:
        check_settings(self)
        self.nade_model  # noqa: B018 - refuse bad layer widths at construction

    @property
    def nade_model(self) -> dict:
        """The NADE-CVD shape: ``{"encoder": [...], "lstm": n, "decoder": [...]}``."""
        return {"encoder": parse_widths(self.nade_encoder, "cvd_learning.nade_encoder"), "lstm": self.nade_lstm,
                "decoder": parse_widths(self.nade_decoder, "cvd_learning.nade_decoder")}

    @classmethod
    def from_config(cls, config: Mapping) -> LearningSettings:
        """From a whole configuration (its ``[cvd_learning]`` table; missing keys take SCHEMA's defaults)."""
        return settings_from(cls, config.get("cvd_learning"), section="cvd_learning")
