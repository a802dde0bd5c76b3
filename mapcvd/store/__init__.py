"""The campaign store on Zarr v3: layout, one-writer-per-node rules, checkpoints.

See :mod:`mapcvd.store.campaign` for the rules every writer follows.
"""

from mapcvd.store.campaign import (
    CAMPAIGN_KIND,
    SCHEMA_VERSION,
    VERSIONED_PACKAGES,
    create_campaign,
    open_campaign,
    open_or_create_campaign,
    package_versions,
    read_array_checkpoint,
    write_array_checkpoint,
)
from mapcvd.store.stages import (
    STAGE_STATUSES,
    declare_stages,
    reset_unfinished,
    run_stage,
    set_stage_info,
    set_stage_status,
    stage_info,
    stage_runs,
    stage_statuses,
)

__all__ = [
    "CAMPAIGN_KIND",
    "SCHEMA_VERSION",
    "STAGE_STATUSES",
    "VERSIONED_PACKAGES",
    "create_campaign",
    "declare_stages",
    "open_campaign",
    "open_or_create_campaign",
    "package_versions",
    "read_array_checkpoint",
    "reset_unfinished",
    "run_stage",
    "set_stage_info",
    "set_stage_status",
    "stage_info",
    "stage_runs",
    "stage_statuses",
    "write_array_checkpoint",
]
