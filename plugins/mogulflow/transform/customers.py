"""Customers: one payload per valid lead, with the lead-date default rule.

Customers: one payload per valid lead, with the lead-date default rule: a missing
`lead_created_at` becomes `free_trial_started_at`, or else the earliest start of the lead's trials,
within a run and across runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mogulflow.transform.payloads import (
    CustomerPayload,
    _api_instant,
    _collector_paused,
    _values,
    customer_from_fields,
)
from mogulflow.values.id_arrays import KnownIds, as_id_array, earliest_per_id, id_hashes


def resolve_lead_created_at(leads: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """Each lead's `lead_created_at` for ChartMogul, aligned with `leads.index`.

    The first present of: `lead_created_at`, `free_trial_started_at`, the earliest `started_at` of
    the lead's trials (pass the valid trials); NaT when none is.
    """
    first_trial = trials.groupby("lead_id", sort=False)["started_at"].min()
    # reindex, not Series.map: map fails on an empty datetime mapper (pandas 3.1)
    from_trials = first_trial.reindex(leads["lead_id"].to_numpy()).set_axis(leads.index)
    resolved = leads["lead_created_at"].fillna(leads["free_trial_started_at"]).fillna(from_trials)
    return resolved.astype(leads["lead_created_at"].dtype)


def build_customer_payloads(leads: pd.DataFrame, trials: pd.DataFrame) -> list[CustomerPayload]:
    """One `CustomerPayload` per valid lead, in row order, with `lead_created_at` resolved."""
    columns = (
        _values(leads["lead_id"]),
        _values(leads["company_name"]),
        _values(leads["email"]),
        _values(leads["country"]),
        _values(leads["state"]),
        _values(leads["city"]),
        _values(leads["zip"]),
        _values(resolve_lead_created_at(leads, trials)),
        _values(leads["free_trial_started_at"]),
    )
    with _collector_paused():
        return [CustomerPayload(*row) for row in zip(*columns, strict=True)]


def with_earlier_lead_dates(
    leads: pd.DataFrame, trials: pd.DataFrame, previous: Mapping[str, Mapping[str, object]]
) -> tuple[list[CustomerPayload], list[CustomerPayload]]:
    """This run's customers, and the earlier leads whose first trial arrived now: the lead-date
    default rule across runs.

    `previous` holds the fields last sent per lead id. A lead of this run without a date keeps the
    date an earlier run's trial gave it; a lead of an earlier run that was sent without a date
    gets the earliest start of this run's trials. The second list is kept apart: those leads were
    not extracted by this run, so they are not part of its account.
    """
    payloads = build_customer_payloads(leads, trials)
    in_run = {p.external_id for p in payloads}
    current: list[CustomerPayload] = []
    for payload in payloads:
        stored = (previous.get(payload.external_id) or {}).get("lead_created_at")
        if payload.lead_created_at is None and stored:
            payload = dataclasses.replace(payload, lead_created_at=_api_instant(stored))
        current.append(payload)
    redated: list[CustomerPayload] = []
    if not trials.empty and previous:
        earliest = trials.groupby("lead_id")["started_at"].min()
        # Only leads of earlier runs qualify: pick them before iterating (a Timestamp per item).
        earliest = earliest[earliest.index.isin(list(previous)) & ~earliest.index.isin(list(in_run))]
        for lead_id, started in earliest.items():
            fields = previous.get(str(lead_id))
            if not fields or fields.get("lead_created_at"):
                continue
            redated.append(
                customer_from_fields(str(lead_id), fields, lead_created_at=started.to_pydatetime())
            )
    return current, redated


@dataclass(frozen=True)
class FirstTrialStarts:
    """Each lead's earliest trial start among the run's valid trials: what the lead-date default
    rule reads. In numpy arrays, not a frame indexed by lead id (see `KnownIds`)."""

    leads: KnownIds
    starts: np.ndarray  # naive UTC datetime64, aligned with `leads.ids`

    def of_leads(self, lead_ids: pd.Series) -> pd.DataFrame:
        """The `lead_id, started_at` rows (UTC) of those of `lead_ids` that have a trial."""
        at = self.leads.positions(lead_ids)
        has = at >= 0
        return _as_trials(lead_ids.to_numpy(dtype=object)[has], self.starts[at[has]])

    def besides(self, lead_ids: KnownIds) -> pd.DataFrame:
        """The `lead_id, started_at` rows of the leads not among `lead_ids`."""
        other = ~lead_ids.contains(self.leads.ids, self.leads.hashes)
        return _as_trials(self.leads.ids[other].astype(object), self.starts[other])


def _as_trials(lead_ids: np.ndarray, starts: np.ndarray) -> pd.DataFrame:
    """Earliest trial starts (naive UTC) by lead id as the `lead_id, started_at` frame the lead-date
    rule reads."""
    started_at = pd.Series(starts).dt.tz_localize("UTC")
    return pd.DataFrame({"lead_id": pd.Series(lead_ids, dtype=object), "started_at": started_at})


def first_trial_starts(trials: Iterable[pd.DataFrame]) -> FirstTrialStarts:
    """Each lead's earliest trial start, from chunks of `lead_id, started_at` rows (a lead's trials
    may lie in several chunks); only one chunk and a few arrays of ids sit in memory."""
    ids: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    for chunk in trials:
        first = chunk.groupby("lead_id", sort=False)["started_at"].min().dropna()
        lead_ids = first.index.to_numpy(dtype=object)
        ids.append(as_id_array(lead_ids))
        hashes.append(id_hashes(lead_ids))
        starts.append(first.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy())
    leads, earliest = earliest_per_id(np.concatenate(ids), np.concatenate(hashes), np.concatenate(starts))
    return FirstTrialStarts(leads, earliest)
