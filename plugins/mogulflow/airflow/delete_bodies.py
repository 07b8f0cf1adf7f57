"""Task bodies of the deletes: plan them (and the guard's question), carry them out.

Behind the same edge as every other task (`task_bodies.task_body`); imported when a task runs.
"""

from __future__ import annotations

import logging

from mogulflow.airflow.task_bodies import TaskResources, task_body
from mogulflow.deletes.plan import plan_deletes as plan_run_deletes
from mogulflow.deletes.run import carry_out_deletes, settle_interrupted_deletes
from mogulflow.values.deletions import Approval, ApprovalDecision, DeletePlan, DeleteReport
from mogulflow.values.run_settings import RunSettings
from mogulflow.values.step_reports import ExtractReport
from mogulflow.warehouse.deletions import record_answer

log = logging.getLogger(__name__)

# The answers that come from a person (or the timeout of their question), not from the guard alone.
ASKED = (ApprovalDecision.APPROVED, ApprovalDecision.REJECTED, ApprovalDecision.TIMED_OUT)


@task_body
def plan_deletes(
    resources: TaskResources, settings: RunSettings, data_source_uuid: str | None, extract: ExtractReport
) -> DeletePlan:
    """Settle deletes interrupted runs left behind; decide what this run deletes (mirror, erasure); store
    the set; say whether a person must approve."""
    settle_interrupted_deletes(resources.warehouse, resources.client, settings, data_source_uuid)
    return plan_run_deletes(resources.warehouse, settings, data_source_uuid, extract)


@task_body
def delete_objects(
    resources: TaskResources, settings: RunSettings, data_source_uuid: str | None, approval: Approval | None
) -> DeleteReport:
    """Carry out the planned deletes (mirror deletes only as approved); record each one."""
    if approval is None:
        approval = Approval(ApprovalDecision.REJECTED, by="nobody: approve_deletes did not finish")
    if approval.decision in ASKED:
        record_answer(resources.warehouse, approval, run_id=settings.run_id, dag_id=settings.dag_id)
    report = carry_out_deletes(resources.warehouse, resources.client, settings, data_source_uuid, approval)
    log.info(
        "Deletes: %s; %d failed; %s",
        {str(entity): count for entity, count in report.deleted.items()} or "none",
        report.failed,
        "; ".join(report.notes) or approval.describe(),
    )
    return report
