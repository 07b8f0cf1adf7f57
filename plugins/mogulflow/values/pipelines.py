"""Pipelines: what tells the sync-shaped DAGs apart, as values.

Pipelines: what tells the sync-shaped DAGs apart, as values: the source tables each reads, how its
settings are resolved, what its account covers.

`chartmogul_leads_trials` and `chartmogul_merge_converted_leads` share their first and last tasks
(resolve the window, check the setup, record the rejects, record the run); those tasks take a
`Pipeline` instead of branching on a name. Light on purpose: the DAG files import it at parse time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from mogulflow.values.constants import LEADS_TRIALS_DAG_ID, MERGE_DAG_ID
from mogulflow.values.entities import Entity
from mogulflow.values.run_settings import (
    MergeSettings,
    ParamValue,
    RunSettings,
    resolve_merge_settings,
    resolve_settings,
)

S = TypeVar("S", RunSettings, MergeSettings)
S_co = TypeVar("S_co", RunSettings, MergeSettings, covariant=True)


@dataclass(frozen=True)
class AccountRules:
    """What one DAG accounts for, and how its messages read."""

    entities: tuple[Entity, ...]
    limits_rejects: bool  # an entity above max_reject_ratio fails the run (and is not loaded)
    rows_word: str  # "12 {rows_word} rejected: see mogulflow_rejects"
    all_done: str  # the message of a run with nothing to report


# Attributes and tags are accounted for only when their (optional) tables are there.
LEADS_TRIALS_ACCOUNT = AccountRules(
    (Entity.PLAN, Entity.LEAD, Entity.TRIAL, Entity.ATTRIBUTE, Entity.TAG), True, "rows", "all rows synced"
)
CONVERSIONS_ACCOUNT = AccountRules((Entity.CONVERSION,), False, "conversions", "all conversions merged")

# The source tables each DAG reads, in the order the preflight checks them.
LEADS_TRIALS_ENTITIES = (Entity.LEAD, Entity.PLAN, Entity.TRIAL)
CONVERSION_ENTITIES = (Entity.CONVERSION,)


class Resolver(Protocol[S_co]):
    """How a DAG turns its params and data interval into the settings of a run."""

    def __call__(
        self,
        params: Mapping[str, ParamValue],
        *,
        run_id: str,
        dag_id: str,
        data_interval_start: datetime | None,
        data_interval_end: datetime | None,
    ) -> S_co: ...


@dataclass(frozen=True)
class Pipeline(Generic[S]):
    """One sync-shaped DAG as its shared tasks see it."""

    dag_id: str
    reads: tuple[Entity, ...]  # the source tables (entities) it extracts; the preflight checks them
    account: AccountRules
    settings_type: type[S]  # what `resolve_window` hands every later task
    resolve: Resolver[S]
    run_of: Callable[[S], RunSettings]  # the settings every DAG shares


LEADS_TRIALS = Pipeline(
    LEADS_TRIALS_DAG_ID,
    LEADS_TRIALS_ENTITIES,
    LEADS_TRIALS_ACCOUNT,
    RunSettings,
    resolve_settings,
    lambda s: s,
)
MERGE_CONVERTED_LEADS = Pipeline(
    MERGE_DAG_ID,
    CONVERSION_ENTITIES,
    CONVERSIONS_ACCOUNT,
    MergeSettings,
    resolve_merge_settings,
    lambda s: s.run,
)
PIPELINES: Mapping[str, Pipeline[RunSettings] | Pipeline[MergeSettings]] = {
    pipeline.dag_id: pipeline for pipeline in (LEADS_TRIALS, MERGE_CONVERTED_LEADS)
}
