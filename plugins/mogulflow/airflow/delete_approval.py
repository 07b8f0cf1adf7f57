"""The guard a person answers: `approve_deletes`, a human-in-the-loop task (Airflow 3.1+).

It reads the run's delete plan (`plan_deletes`). Nothing to approve (within `max_delete_ratio`, the
extract not empty, a dry run) or `approve_deletes` in the run's conf: it answers at once. Otherwise it
asks in Airflow's "Required actions", showing the counts and example ids, and waits: Approve lets the
mirror deletes go ahead, Reject deletes nothing; no answer within `response_timeout` is a rejection
(the run then fails, and the failure alert says why). Erasures never wait for it.

The answer is an `Approval` in XCom for `delete_objects`. On Airflow 3.3 the task waits in the state
`awaiting_input`; on 3.1 and 3.2 it defers to the HITL trigger (a triggerer must run).

Parse-light: the DAG file imports this module when it is parsed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator

from mogulflow.airflow.notifications import Alert, AlertKind, grid_url, send_alert
from mogulflow.values.constants import DEFAULT_APPROVAL_TIMEOUT_HOURS
from mogulflow.values.deletions import Approval, ApprovalDecision, DeletePlan
from mogulflow.values.entities import Entity
from mogulflow.values.json_form import Json, from_json, to_json
from mogulflow.values.run_settings import RunSettings

log = logging.getLogger(__name__)

APPROVE = "Approve"
REJECT = "Reject"
PLAN_TASK = "plan_deletes"
SETTINGS_TASK = "resolve_window"
DATA_SOURCE_TASK = "ensure_data_source"


class DeleteApprovalOperator(HITLOperator):
    """Ask a person to approve a run's mirror deletes, only when the guard says so."""

    def __init__(self, *, response_timeout: timedelta | None = None, **kwargs: Any) -> None:
        super().__init__(
            subject="mogulflow: approve deletes from ChartMogul?",
            body="(the counts and examples are written when the run asks)",
            options=[APPROVE, REJECT],
            defaults=[REJECT],  # what a timeout picks: nothing is deleted without a person's yes
            response_timeout=response_timeout or timedelta(hours=DEFAULT_APPROVAL_TIMEOUT_HOURS),
            **kwargs,
        )

    def execute(self, context: Any) -> Json:
        """Answer at once when nobody must be asked; otherwise ask and wait (`execute_complete`)."""
        ti = context["ti"]
        plan = from_json(DeletePlan, ti.xcom_pull(task_ids=PLAN_TASK))
        settings = from_json(RunSettings, ti.xcom_pull(task_ids=SETTINGS_TASK))
        from mogulflow.deletes.plan import decide_without_asking  # the steps, imported when a task runs

        answer = decide_without_asking(plan, settings)
        if answer is not None:
            log.info("Deletes: %s (%s).", answer.describe(), plan.describe())
            return to_json(answer)
        self.subject = (
            f"mogulflow: delete {plan.customers} customer(s) and {plan.invoices} invoice(s) from ChartMogul?"
        )
        self.body = approval_body(plan, settings)
        remember_question(plan, settings, ti.xcom_pull(task_ids=DATA_SOURCE_TASK))
        send_alert(
            Alert(
                AlertKind.APPROVAL,
                f"mogulflow: {settings.dag_id} run {settings.run_id} waits for a person to approve deletes",
                (
                    *plan.approval_reasons,
                    plan.describe(),
                    f"Answer in Airflow: Browse → Required actions, or the run in the grid: "
                    f"{grid_url(settings.dag_id, settings.run_id)}",
                ),
            ),
            context,
        )
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Json:
        """The person's answer (or the timeout's) as an `Approval`."""
        if "error" in event:  # no answer in time (the trigger's timeout, without defaults applied)
            log.warning("Nobody answered the delete approval in time: it counts as a rejection.")
            return to_json(Approval(ApprovalDecision.TIMED_OUT, at=datetime.now(UTC)))
        chosen = event.get("chosen_options") or []
        user = event.get("responded_by_user")
        by = (user.get("name") or user.get("id")) if isinstance(user, dict) else user
        if not by:  # the defaults, applied by the timeout
            log.warning("Nobody answered the delete approval in time: it counts as a rejection.")
            return to_json(Approval(ApprovalDecision.TIMED_OUT, at=datetime.now(UTC)))
        decision = ApprovalDecision.APPROVED if APPROVE in chosen else ApprovalDecision.REJECTED
        answer = Approval(decision, by=str(by), at=datetime.now(UTC))
        log.info("Deletes: %s.", answer.describe())
        return to_json(answer)


def remember_question(plan: DeletePlan, settings: RunSettings, data_source_uuid: str) -> None:
    """Note the question in the warehouse, where the monitoring page lists pending approvals."""
    from mogulflow.airflow.resources import open_warehouse
    from mogulflow.warehouse.deletions import record_question

    warehouse = open_warehouse()
    try:
        record_question(
            warehouse,
            plan,
            run_id=settings.run_id,
            dag_id=settings.dag_id,
            data_source_uuid=data_source_uuid,
            at=datetime.now(UTC),
        )
    finally:
        warehouse.close()


def approval_body(plan: DeletePlan, settings: RunSettings) -> str:
    """What the person reads (Markdown): why they are asked, the counts, examples, what each answer does."""
    examples = "\n".join(
        f"- {'customers' if entity is Entity.LEAD else 'invoices'}: {', '.join(f'`{i}`' for i in ids)}"
        for entity, ids in plan.samples.items()
    )
    reasons = "\n".join(f"- {reason}" for reason in plan.approval_reasons)
    return (
        f"Run `{settings.run_id}` of `{settings.dag_id}` would delete, from the ChartMogul data source "
        f"**{settings.data_source_name}**, objects mogulflow created whose rows are gone from the "
        "warehouse:\n\n"
        f"- **{plan.customers} customer(s)** (with their invoices) of {plan.synced_customers} synced\n"
        f"- **{plan.invoices} invoice(s)** of customers that stay\n\n"
        f"Why you are asked:\n\n{reasons}\n\n"
        f"Examples:\n\n{examples or '- (none)'}\n\n"
        "**Approve** deletes them (each is looked up first; merged customers are kept). "
        "**Reject** deletes nothing; the next full refresh asks again. "
        "No answer in time counts as Reject. Erasure requests are carried out either way."
    )
