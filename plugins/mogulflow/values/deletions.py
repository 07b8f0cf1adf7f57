"""Deletions: what a run deletes from ChartMogul, why, who approved it, and how it ended.

Two reasons, one path: a **mirror** delete removes an object mogulflow created whose source row is
gone (param `mirror_deletes`, with `full_refresh`); an **erasure** removes a lead named in
`lead_erasures` (every run). Mirror deletes pass the guard (`approval_reasons`): above
`max_delete_ratio` of the customers mogulflow synced, or on an empty extract, a person approves first.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mogulflow.values.entities import Entity
from mogulflow.values.run_summary import RowError

#: What an erased id becomes wherever mogulflow keeps the fact of an erasure (see docs/deletes.md).
ERASED_ID_PREFIX = "sha256:"
#: What an erased value becomes inside a text mogulflow keeps (a run's message, a reject's reason).
ERASED_TEXT = "[erased]"


class DeleteReason(enum.StrEnum):
    """Why an object is deleted, as `mogulflow_deletions.reason` holds it."""

    MIRROR = "mirror"  # mogulflow created it, and its source row is gone
    ERASURE = "erasure"  # its lead is named in lead_erasures


class ApprovalDecision(enum.StrEnum):
    """How the guard ended for a run's mirror deletes."""

    NOT_NEEDED = "not_needed"  # within max_delete_ratio, extract not empty (or nothing to mirror)
    PRE_APPROVED = "pre_approved"  # the run's conf said approve_deletes
    APPROVED = "approved"  # a person chose Approve in Required actions
    REJECTED = "rejected"  # a person chose Reject
    TIMED_OUT = "timed_out"  # nobody answered in time: a rejection, with an alert

    @property
    def allows_mirror(self) -> bool:
        """Whether the run's mirror deletes may go ahead."""
        return self in (ApprovalDecision.NOT_NEEDED, ApprovalDecision.PRE_APPROVED, ApprovalDecision.APPROVED)


@dataclass(frozen=True)
class Approval:
    """The guard's answer: the decision, who gave it, when."""

    decision: ApprovalDecision
    by: str | None = None
    at: datetime | None = None

    def describe(self) -> str:
        """One sentence for the run's message."""
        who = f" by {self.by}" if self.by else ""
        return f"mirror deletes {self.decision.value.replace('_', ' ')}{who}"


@dataclass(frozen=True)
class PlannedDelete:
    """One object a run means to delete. The uuid is a hint: the delete confirms by lookup first."""

    entity: Entity  # LEAD (a customer, with its invoices) or TRIAL (one invoice)
    external_id: str
    reason: DeleteReason
    chartmogul_uuid: str | None = None
    customer_external_id: str | None = None  # an invoice's lead


@dataclass(frozen=True)
class DeletePlan:
    """What a run would delete, as the guard and the person approving it see it."""

    mirror: bool  # mirror_deletes with full_refresh: gone rows are looked for at all
    dry_run: bool
    customers: int = 0  # mirror: customers gone from `leads` (their invoices go with them)
    invoices: int = 0  # mirror: invoices gone from `trials`, of customers that stay
    erasures: int = 0  # leads named in lead_erasures, not erased yet in this data source
    synced_customers: int = 0  # the guard's denominator
    samples: Mapping[Entity, tuple[str, ...]] = field(default_factory=dict)  # mirror examples
    approval_reasons: tuple[str, ...] = ()  # empty: the mirror deletes need nobody's approval

    @property
    def needs_approval(self) -> bool:
        """Whether a person must approve the mirror deletes first."""
        return bool(self.approval_reasons)

    def describe(self) -> str:
        """The counts in one line: `2 customers (12.5% of 16 synced), 1 invoice; 1 erasure`."""
        share = (
            f" ({self.customers / self.synced_customers:.1%} of {self.synced_customers} synced)"
            if self.synced_customers
            else ""
        )
        return (
            f"{self.customers} customer(s){share} and "
            f"{self.invoices} invoice(s) gone from the source; {self.erasures} erasure(s)"
        )


@dataclass(frozen=True)
class DeleteReport:
    """What the delete step did: per entity deleted, what failed, what it kept and why."""

    approval: Approval
    dry_run: bool = False
    deleted: Mapping[Entity, int] = field(default_factory=dict)
    failed: int = 0
    errors: tuple[RowError, ...] = ()
    # A few external ids deleted (or, in a dry run, that would be) per entity; erasures appear hashed.
    samples: Mapping[Entity, tuple[str, ...]] = field(default_factory=dict)
    # Mirror candidates kept because ChartMogul shows them merged into another customer.
    kept_merged: tuple[str, ...] = ()
    # Erasures a person must finish: the merged customers (uuids) that still hold an erased lead.
    erasures_for_a_person: tuple[str, ...] = ()
    erased_leads: int = 0
    # Mirror deletes the guard held back (rejected, timed out): planned, not carried out.
    held_back: int = 0
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def approval_reasons(
    *,
    customers: int,
    invoices: int,
    synced_customers: int,
    max_delete_ratio: float,
    leads_extracted: int,
    trials_extracted: int,
) -> tuple[str, ...]:
    """Why a run's mirror deletes need a person's approval (none: they go ahead).

    Above `max_delete_ratio` of the customers mogulflow synced in the data source; and, whatever the
    ratio, when an entity would lose objects while its extract returned no row at all (a `WHERE` that
    returns nothing must never delete on its own).
    """
    reasons = []
    if customers and (not synced_customers or customers / synced_customers > max_delete_ratio):
        share = customers / synced_customers if synced_customers else 1.0
        reasons.append(
            f"{customers} of {synced_customers} synced customers ({share:.1%}) would be deleted: "
            f"above max_delete_ratio {max_delete_ratio:.1%}"
        )
    if customers and not leads_extracted:
        reasons.append(f"the leads extract returned no row, and {customers} customer(s) would be deleted")
    if invoices and not trials_extracted:
        reasons.append(f"the trials extract returned no row, and {invoices} invoice(s) would be deleted")
    return tuple(reasons)


def erased_id(external_id: str) -> str:
    """The one form an erased id keeps in mogulflow's tables: its SHA-256, so that "was lead X erased?"
    can still be answered by hashing X, while the tables no longer show X."""
    return ERASED_ID_PREFIX + hashlib.sha256(external_id.encode("utf-8")).hexdigest()
