"""Customer merges and unmerges: asked for now (202), applied when the merge delay has passed.

Besides the API's merges, ChartMogul merges on its own (accounts created on or after May 21, 2024
merge customers with matching external ids or domains, help.chartmogul.com article 211358589):
`merge_now` is that merge, done at once behind the client's back (``POST /_sandbox/merges``), and
`auto_merge_candidate` finds the customer a new one would be merged into when the sandbox's
``auto_merge`` switch is on.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from mogulflow_sandbox.api_errors import coded_error, missing_parameter
from mogulflow_sandbox.customers import CustomerStore, earliest, note_changes
from mogulflow_sandbox.due_work import WorkQueue
from mogulflow_sandbox.invoices import InvoiceStore
from mogulflow_sandbox.record_store import RecordStore
from mogulflow_sandbox.records import CustomerRecord, Identity, MergeRecord
from mogulflow_sandbox.rules import is_blank
from mogulflow_sandbox.settings import SandboxSettings
from mogulflow_sandbox.timestamps import utc_now

#: profile fields the surviving customer takes from the merged-away one when its own are empty
MERGED_PROFILE_FIELDS = ("email", "company", "country", "state", "city", "zip", "owner", "website_url")


class MergeStore(RecordStore[MergeRecord]):
    """Every merge and unmerge asked for, with its status; pending ones wait in the work queue."""

    record_type = MergeRecord

    def __init__(
        self,
        customers: CustomerStore,
        invoices: InvoiceStore,
        settings: SandboxSettings,
        clock: Callable[[], float],
        due_work: WorkQueue,
    ) -> None:
        super().__init__()
        self._customers = customers
        self._invoices = invoices
        self._settings = settings
        self._clock = clock
        self._due_work = due_work

    def request_merge(self, body: dict[str, Any]) -> None:
        """``POST /v1/customers/merges``: resolve both sides now, apply after the merge delay (202 ``{}``).

        Each side is ``{"customer_uuid"}`` or ``{"data_source_uuid", "external_id"}``; an unknown side
        is a 404 family B [UNVERIFIED: the real API may accept and fail later], merging a customer
        into itself a 422.
        """
        source = self._resolve_side(body, "from")
        target = self._resolve_side(body, "into")
        if source.uuid == target.uuid:
            raise coded_error(422, "A customer cannot be merged into itself.", "into")
        self._queue("merge", source.uuid, into_uuid=target.uuid)

    def merge_now(self, body: dict[str, Any]) -> CustomerRecord:
        """Merge ``from`` into ``into`` at once, as ChartMogul's own automation (or a person) would:
        no 202, no delay; answers the surviving customer. The same sides and errors as the API's merge."""
        source = self._resolve_side(body, "from")
        target = self._resolve_side(body, "into")
        if source.uuid == target.uuid:
            raise coded_error(422, "A customer cannot be merged into itself.", "into")
        merge = self._queue("merge", source.uuid, into_uuid=target.uuid, delay=0.0, by="chartmogul")
        self._merge(merge)
        return target

    def queue_auto_merge(self, customer: CustomerRecord) -> bool:
        """With ``auto_merge`` on: queue the merge of a new customer into the existing one it matches
        (after the merge delay, as a background automation would); True when one was queued."""
        if not self._settings.auto_merge:
            return False
        target = self._customers.auto_merge_candidate(customer)
        if target is None:
            return False
        self._queue("merge", customer.uuid, into_uuid=target.uuid, by="chartmogul")
        return True

    def request_unmerge(self, body: dict[str, Any]) -> None:
        """``POST /v1/customers/unmerges``: split (data source, external id) off a merged customer later."""
        for name in ("customer_uuid", "data_source_uuid", "external_id"):
            if is_blank(body.get(name)):
                raise missing_parameter(name)
        customer = self._customers.get(str(body["customer_uuid"]))
        identity = (str(body["data_source_uuid"]), str(body["external_id"]))
        if identity not in customer.identities or len(customer.identities) < 2:
            raise coded_error(422, "Only previously merged customers can be unmerged.", "external_id")
        self._queue("unmerge", customer.uuid, split_identity=identity)

    def apply(self, merge_id: str) -> None:
        """Apply the merge or unmerge that has fallen due; it fails if its customers changed meanwhile."""
        merge = self._records[merge_id]
        if merge.kind == "merge":
            self._merge(merge)
        else:
            self._unmerge(merge)

    def _queue(
        self,
        kind: str,
        customer_uuid: str,
        *,
        into_uuid: str | None = None,
        split_identity: Identity | None = None,
        delay: float | None = None,
        by: str = "api",
    ) -> MergeRecord:
        merge = MergeRecord(
            id=str(uuid.uuid4()),
            kind=kind,
            customer_uuid=customer_uuid,
            due_at=self._clock() + (self._settings.merge_delay_seconds if delay is None else delay),
            requested_at=utc_now(),
            into_uuid=into_uuid,
            split_identity=split_identity,
            requested_by=by,
        )
        if delay == 0.0:
            self._records[merge.id] = merge  # applied by the caller, not queued
        else:
            self._keep(merge)
        return merge

    def _resolve_side(self, body: dict[str, Any], side: str) -> CustomerRecord:
        reference = body.get(side)
        if not isinstance(reference, dict):
            raise missing_parameter(side)
        if reference.get("customer_uuid"):
            customer = self._customers.find(str(reference["customer_uuid"]))
        elif reference.get("data_source_uuid") and reference.get("external_id"):
            identity = (str(reference["data_source_uuid"]), str(reference["external_id"]))
            customer = self._customers.find_by_identity(identity)
        else:
            raise coded_error(
                400, f'Parameter "{side}" needs customer_uuid or data_source_uuid and external_id', side
            )
        if customer is None:
            raise coded_error(404, f'The "{side}" customer does not exist', side)
        return customer

    def _merge(self, merge: MergeRecord) -> None:
        """Fold the "from" customer into "into" [UNVERIFIED which profile wins]: earliest lead and trial
        dates, "into"'s other fields unless empty; identities and invoices move; "from" disappears."""
        source = self._customers.find(merge.customer_uuid)
        target = self._customers.find(merge.into_uuid or "")
        if source is None or target is None:
            merge.status, merge.detail = "failed", "a customer was deleted or merged before the merge applied"
            return
        note_changes(source, "merged")
        self._customers.remove(source)
        with self._customers.reindexing(target):
            _fold_profile(source, target)
            target.identities = target.identities + [
                i for i in source.identities if i not in target.identities
            ]
        self._invoices.move(source.uuid, target.uuid)
        merge.status = "applied"

    def _unmerge(self, unmerge: MergeRecord) -> None:
        """Split one identity off into a new customer with a copy of the profile; its invoices follow."""
        customer = self._customers.find(unmerge.customer_uuid)
        identity = unmerge.split_identity
        if (
            customer is None
            or identity is None
            or identity not in customer.identities
            or len(customer.identities) < 2
        ):
            unmerge.status, unmerge.detail = "failed", "the customer changed before the unmerge applied"
            return
        split = self._customers.split_off(customer, identity)
        self._invoices.move(customer.uuid, split.uuid, owner=identity)
        unmerge.status = "applied"

    def to_api(self) -> list[dict[str, Any]]:
        """Every merge and unmerge as ``GET /_sandbox/state`` shows it."""
        return [merge.to_api() for merge in self._records.values()]

    def _keep(self, record: MergeRecord) -> None:
        self._records[record.id] = record
        if record.status == "pending":
            self._due_work.add(record.due_at, "merge", record.id)


def _fold_profile(source: CustomerRecord, target: CustomerRecord) -> None:
    """Give ``target`` the profile the merged customer keeps (``source``'s identities are moved apart)."""
    target.lead_created_at = earliest(target.lead_created_at, source.lead_created_at)
    target.free_trial_started_at = earliest(target.free_trial_started_at, source.free_trial_started_at)
    for name in MERGED_PROFILE_FIELDS:
        if not getattr(target, name):
            setattr(target, name, getattr(source, name))
    target.tags = list(dict.fromkeys(target.tags + source.tags))
    target.custom = {**source.custom, **target.custom}
    target.custom_types = {**source.custom_types, **target.custom_types}
    # a paying status beats a lead status, and brings its customer-since along
    if target.status.endswith("Lead") and not source.status.endswith("Lead"):
        target.status, target.customer_since = source.status, source.customer_since
