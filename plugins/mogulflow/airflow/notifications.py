"""Notifications: alert the data team when a night went wrong, through Airflow notifiers.

Three alerts, one notifier (`RunAlertNotifier`), declared on the sync and the merge DAG by `run_alerts()`:

- **failed**: the DAG run failed (DAG-level `on_failure_callback`);
- **rejects**: the run succeeded, but an entity's reject share is above the Airflow Variable
  `mogulflow_alert_reject_ratio` (default 1%; DAG-level `on_success_callback`), or above
  `max_reject_ratio` with fewer rows than `min_rejects_to_fail` (the run was spared failing: it
  always alerts). With as many rows as the floor, above `max_reject_ratio` the run fails instead,
  and the failure alert says so;
- **late**: the run is not done `MOGULFLOW_DEADLINE_MINUTES` after it was queued (an Airflow
  `DeadlineAlert` whose `AsyncCallback` is this class, run by the triggerer); declared only when
  that variable is set (see `DEADLINE_MINUTES_ENV` for why).

Each alert goes to Slack when the connection `mogulflow_slack` (type `slackwebhook`) exists and the
Slack provider is installed (`pip install mogulflow[slack]`), through the provider's
`SlackWebhookNotifier`; otherwise it is one log line at WARNING. A Slack failure falls back to that
line: an alert never fails the callback that sends it. The text names the DAG, the run, the outcome,
the counts from the run's account (`record_run` leaves it in XCom under `account`), and where to look.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from mogulflow.record.account import RunAccount

log = logging.getLogger(__name__)

# The Slack incoming-webhook connection alerts go to; absent, alerts are WARNING log lines.
SLACK_CONN_ID = "mogulflow_slack"
# The XCom key under which record_run leaves the run's account for the alerts.
ACCOUNT_XCOM_KEY = "account"
RECORD_RUN_TASK = "record_run"
# An Airflow Variable: the reject share of an entity above which a successful run still alerts.
ALERT_REJECT_RATIO_VARIABLE = "mogulflow_alert_reject_ratio"
# One row in a hundred: a trickle of bad rows is normal, a bad export is not.
DEFAULT_ALERT_REJECT_RATIO = 0.01
# Minutes after a run is queued by which it should be done (e.g. 360: a nightly run queued at
# midnight UTC is done by 06:00 UTC). Unset or 0: no deadline. Opt-in, because in Airflow 3.3.2
# `dag.test()` and `airflow dags test` crash at the end of a *successful* run of a DAG with a
# deadline (DagRun.update_state looks the un-stored alert up by id), and the contract runs the DAGs
# under `airflow dags test`.
DEADLINE_MINUTES_ENV = "MOGULFLOW_DEADLINE_MINUTES"
# Where the grid lives when `[api] base_url` is not set (Airflow's own default for its links).
DEFAULT_BASE_URL = "http://localhost:8080"


class AlertKind(enum.StrEnum):
    """Which alert a notifier sends."""

    FAILED = "failed"
    REJECTS = "rejects"
    LATE = "late"
    APPROVAL = "approval"  # a run's deletes wait for a person (sent by the approve_deletes task)
    DELETES = "deletes"  # a successful run left something about deletes for a person to handle


@dataclass(frozen=True)
class Alert:
    """One alert: a headline and the lines that explain it."""

    kind: AlertKind
    headline: str
    details: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The Slack message: headline, then one detail per line."""
        return "\n".join((self.headline, *self.details))

    @property
    def line(self) -> str:
        """The same as one log line."""
        return " | ".join((self.headline, *self.details))


# ---- composing the text (plain values in, Alert out) ------------------------------------------------


def grid_url(dag_id: str, run_id: str, base_url: str | None = None) -> str:
    """The run in Airflow's grid."""
    base = (base_url or _base_url()).rstrip("/")
    return f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def _base_url() -> str:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf

    return conf.get("api", "base_url", fallback=None) or DEFAULT_BASE_URL


def _where_to_look(dag_id: str, run_id: str, base_url: str | None) -> str:
    return (
        f"Look at: mogulflow_runs and mogulflow_rejects (dag_id = '{dag_id}', run_id = '{run_id}'); "
        f"the run in the grid: {grid_url(dag_id, run_id, base_url)}"
    )


def _counts_lines(account: RunAccount) -> list[str]:
    lines = []
    for entity, c in account.summary.counts.items():
        lines.append(
            f"{entity}: extracted {c.extracted} = created {c.created} + updated {c.updated} + "
            f"unchanged {c.unchanged} + rejected {c.rejected} + failed {c.failed}"
        )
    lines += deletes_lines(account)
    for entity, rules in account.details.rejects_by_rule.items():
        by_rule = ", ".join(f"{rule} ×{count}" for rule, count in sorted(rules.items(), key=lambda r: -r[1]))
        lines.append(f"{entity} rejected by rule: {by_rule}")
    return lines


def deletes_lines(account: RunAccount) -> list[str]:
    """What the run deleted, would delete, kept back or leaves to a person, one line each."""
    details = account.details
    lines = []
    deleted = {entity: c.deleted for entity, c in account.summary.counts.items() if c.deleted}
    if deleted:
        examples = "; ".join(
            f"{entity}: {', '.join(ids)}" for entity, ids in details.deleted_ids.items() if ids
        )
        lines.append(
            "deleted from ChartMogul (see mogulflow_deletions): "
            + ", ".join(f"{entity} {count}" for entity, count in deleted.items())
            + (f" (e.g. {examples})" if examples else "")
        )
    for entity, ids in details.would_delete.items():
        lines.append(f"dry run, would delete {entity}: {', '.join(ids)}")
    if details.deletes_held_back and details.delete_approval is not None:
        held_back = details.deletes_held_back
        lines.append(f"{details.delete_approval.describe()}: {held_back} mirror delete(s) not carried out")
    if details.erasures_for_a_person:
        lines.append(
            "erasures a person must finish (the lead is merged into these customers): "
            + ", ".join(details.erasures_for_a_person)
        )
    lines += [
        f"delete failed: {error.entity} {error.external_id}: {error.message}"
        for error in details.delete_errors
    ]
    return lines


def deletes_alert(dag_id: str, run_id: str, account: RunAccount, base_url: str | None = None) -> Alert | None:
    """The alert of a successful run that leaves deletes to a person (an erasure of a merged lead, mirror
    deletes a person rejected); None when it leaves nothing."""
    details = account.details
    if not (details.erasures_for_a_person or details.deletes_held_back):
        return None
    return Alert(
        AlertKind.DELETES,
        f"mogulflow: {dag_id} run {run_id} leaves deletes to a person",
        (*deletes_lines(account), _where_to_look(dag_id, run_id, base_url)),
    )


def rejects_above(account: RunAccount, threshold: float) -> list[str]:
    """One sentence per entity whose reject share is above `threshold`."""
    return [sentence for sentence in _shares_above(account, threshold) if sentence]


def _shares_above(account: RunAccount, threshold: float) -> list[str]:
    """Per entity of the account, in order: its sentence if its reject share is above `threshold`, else ""."""
    found = []
    for entity, c in account.summary.counts.items():
        share = c.rejected / c.extracted if c.extracted else 0.0
        found.append(
            f"{entity}: {c.rejected} of {c.extracted} rows rejected ({100 * share:.1f}%), "
            f"above the alert threshold {100 * threshold:.1f}%"
            if share > threshold
            else ""
        )
    return found


def failed_alert(
    dag_id: str, run_id: str, account: RunAccount | None, reason: str | None, base_url: str | None = None
) -> Alert:
    """The alert of a failed run, with its account when record_run got as far as writing it."""
    if account is None:
        details = [
            f"Why: {reason or 'unknown'}; record_run left no account (it did not run, or failed before "
            "adding up the run): read the failed task's log"
        ]
    else:
        details = [f"Why: {account.summary.message}", *_counts_lines(account)]
    return Alert(
        AlertKind.FAILED,
        f"mogulflow: {dag_id} run {run_id} FAILED",
        (*details, _where_to_look(dag_id, run_id, base_url)),
    )


def rejects_alert(
    dag_id: str, run_id: str, account: RunAccount, threshold: float, base_url: str | None = None
) -> Alert | None:
    """The alert of a successful run with too many rejects: an entity's share above `threshold`, or above
    `max_reject_ratio` but spared failing by `min_rejects_to_fail`; None when neither happened."""
    spared = account.details.rejects_spared
    above = [
        sentence
        for entity, sentence in zip(account.summary.counts, _shares_above(account, threshold), strict=True)
        if sentence and entity not in spared
    ]
    reasons = [f"{entity}: {sentence}" for entity, sentence in spared.items()] + above
    if not reasons:
        return None
    return Alert(
        AlertKind.REJECTS,
        f"mogulflow: {dag_id} run {run_id} ended {account.summary.outcome} with many rejects",
        (*reasons, *_counts_lines(account), _where_to_look(dag_id, run_id, base_url)),
    )


def late_alert(dag_run: Mapping[str, Any], deadline: Mapping[str, Any], base_url: str | None = None) -> Alert:
    """The alert of a run not done by its deadline (from the deadline's context: the run as JSON)."""
    dag_id = str(dag_run.get("dag_id", "?"))
    run_id = str(dag_run.get("dag_run_id") or dag_run.get("run_id") or "?")
    return Alert(
        AlertKind.LATE,
        f"mogulflow: {dag_id} run {run_id} is not done by its deadline {deadline.get('deadline_time', '?')}",
        (
            f"State: {dag_run.get('state', '?')}, queued at {dag_run.get('queued_at', '?')}, "
            f"started at {dag_run.get('start_date') or 'not yet'}",
            "No counts yet: record_run writes the run's account to mogulflow_runs when the run ends",
            f"Look at: the run in the grid: {grid_url(dag_id, run_id, base_url)} (which task is running, "
            "its log's progress lines); the chartmogul_api pool (is another run holding it?)",
        ),
    )


# ---- the notifier ----------------------------------------------------------------------------------


class RunAlertNotifier(BaseNotifier):
    """Send one kind of alert about a DAG run: to Slack when configured, else a WARNING log line.

    Used as a DAG's `on_failure_callback` (kind `failed`), `on_success_callback` (`rejects`) and,
    through `AsyncCallback`, as a deadline's callback (`late`). `context` is how the triggerer hands
    the deadline's context to an awaited notifier.
    """

    template_fields = ()

    def __init__(
        self,
        *,
        kind: AlertKind | str,
        slack_conn_id: str = SLACK_CONN_ID,
        context: Any = None,
    ) -> None:
        super().__init__(context=context)
        self.kind = AlertKind(kind)
        self.slack_conn_id = slack_conn_id

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render: the text is composed from the run's account, not from a template.

        (Also keeps `dag.test()` working: its DAG callbacks get the serialized DAG, which has no
        Jinja environment, and BaseNotifier would ask it for one.)
        """

    def compose(self, context: Mapping[str, Any]) -> Alert | None:
        """The alert this context calls for (None: a successful run with few rejects)."""
        if self.kind is AlertKind.LATE:
            return late_alert(context.get("dag_run") or {}, context.get("deadline") or {})
        dag_run = context.get("dag_run")
        dag_id = getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
        run_id = getattr(dag_run, "run_id", None) or str(context.get("run_id", "?"))
        account = _account_from(context, dag_id, run_id)
        if self.kind is AlertKind.FAILED:
            return failed_alert(dag_id, run_id, account, context.get("reason"))
        if account is None:
            return None
        alert = rejects_alert(dag_id, run_id, account, alert_reject_ratio())
        if alert is None:
            log.info("Run %s: rejects below the alert threshold, no alert.", run_id)
        return alert

    def notify(self, context: Any) -> None:
        """Send the alert from a DAG callback (the DAG processor, or `dag.test()`)."""
        alert = self.compose(context)
        if alert is not None:
            send_alert(alert, context, self.slack_conn_id)
        if self.kind is AlertKind.REJECTS:  # a successful run may also leave deletes to a person
            account = _account_from(context, _dag_id_of(context), _run_id_of(context))
            deletes = (
                None if account is None else deletes_alert(_dag_id_of(context), _run_id_of(context), account)
            )
            if deletes is not None:
                send_alert(deletes, context, self.slack_conn_id)

    async def async_notify(self, context: Any) -> None:
        """Send the alert from the triggerer (a deadline's `AsyncCallback`)."""
        alert = self.compose(context)
        if alert is None:
            return
        slack = self._slack_notifier(alert) if await _aslack_connection_exists(self.slack_conn_id) else None
        if slack is None:
            log.warning("%s", alert.line)
            return
        try:
            await slack.async_notify(context)
            log.info("Alert sent to Slack (%s): %s", self.slack_conn_id, alert.headline)
        except Exception as error:
            log.warning("%s | (Slack connection %s failed: %s)", alert.line, self.slack_conn_id, error)

    def _slack_notifier(self, alert: Alert) -> BaseNotifier | None:
        return _slack_notifier(alert, self.slack_conn_id)


def _slack_notifier(alert: Alert, slack_conn_id: str) -> BaseNotifier | None:
    try:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
    except ImportError:
        log.warning(
            "Connection %s exists but the Slack provider is missing: pip install mogulflow[slack]",
            slack_conn_id,
        )
        return None
    return SlackWebhookNotifier(slack_webhook_conn_id=slack_conn_id, text=alert.text)


def send_alert(alert: Alert, context: Any, slack_conn_id: str = SLACK_CONN_ID) -> None:
    """Send one alert: to Slack when the connection exists, else (or when Slack fails) a WARNING line."""
    slack = _slack_notifier(alert, slack_conn_id) if _slack_connection_exists(slack_conn_id) else None
    if slack is None:
        log.warning("%s", alert.line)
        return
    try:
        slack.notify(context)
        log.info("Alert sent to Slack (%s): %s", slack_conn_id, alert.headline)
    except Exception as error:
        log.warning("%s | (Slack connection %s failed: %s)", alert.line, slack_conn_id, error)


def _dag_id_of(context: Mapping[str, Any]) -> str:
    dag_run = context.get("dag_run")
    return getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")


def _run_id_of(context: Mapping[str, Any]) -> str:
    return getattr(context.get("dag_run"), "run_id", None) or str(context.get("run_id", "?"))


def _account_from(context: Mapping[str, Any], dag_id: str, run_id: str) -> RunAccount | None:
    """The run's account record_run left in XCom, or None when it left none.

    Read through the task's XCom accessor (how the DAG processor runs callbacks); where there is no
    supervisor to ask (the callbacks `dag.test()` and `airflow dags test` run in-process, after the
    last task), straight from the metadata DB, which such a process reaches.
    """
    value = None
    ti = context.get("ti")
    try:
        if ti is None:
            raise LookupError("no task instance in the callback's context")
        value = ti.xcom_pull(task_ids=RECORD_RUN_TASK, key=ACCOUNT_XCOM_KEY)
    except Exception as error:
        value = _account_in_metadata_db(dag_id, run_id, error)
    if not value:
        return None
    from mogulflow.record.account import RunAccount
    from mogulflow.values.json_form import from_json

    return from_json(RunAccount, value)


def _account_in_metadata_db(dag_id: str, run_id: str, why: Exception) -> Any:
    try:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        query = XComModel.get_many(
            run_id=run_id, key=ACCOUNT_XCOM_KEY, task_ids=RECORD_RUN_TASK, dag_ids=dag_id, limit=1
        )
        with create_session() as session:
            row = session.scalars(query).first()
            return None if row is None else XComModel.deserialize_value(row)
    except Exception as error:  # a callback with a partial context: alert without counts
        log.info("Could not read the run's account (XCom: %s; metadata DB: %s)", why, error)
        return None


def alert_reject_ratio() -> float:
    """The Variable `mogulflow_alert_reject_ratio`, or 1% when unset or not a number."""
    from airflow.sdk import Variable

    try:
        value = Variable.get(ALERT_REJECT_RATIO_VARIABLE, default=None)
        return DEFAULT_ALERT_REJECT_RATIO if value in (None, "") else float(value)
    except Exception as error:
        log.warning(
            "Variable %s: %s; using %s", ALERT_REJECT_RATIO_VARIABLE, error, DEFAULT_ALERT_REJECT_RATIO
        )
        return DEFAULT_ALERT_REJECT_RATIO


def _slack_connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception:  # AirflowNotFoundException, or no way to ask: the log line will do
        return False
    return True


async def _aslack_connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook

    try:
        await BaseHook.aget_connection(conn_id)
    except Exception:
        return False
    return True


# ---- what the DAGs declare ---------------------------------------------------------------------


def run_alerts() -> dict[str, Any]:
    """The `@dag` arguments that alert the team: on failure, on a successful run with too many
    rejects, and when a run is not done `MOGULFLOW_DEADLINE_MINUTES` after it was queued (a deadline
    alert, fired by the triggerer, which imports this module from the installed package)."""
    minutes = int(os.environ.get(DEADLINE_MINUTES_ENV) or 0)
    # A fixed interval read when the DAG is parsed, not a VariableInterval: a VariableInterval whose
    # Variable is missing fails the creation of every run, and nothing configured must break nothing.
    deadline = _deadline_alert(minutes) if minutes > 0 else None
    return {
        "on_failure_callback": RunAlertNotifier(kind=AlertKind.FAILED),
        "on_success_callback": RunAlertNotifier(kind=AlertKind.REJECTS),
        "deadline": deadline,
    }


def _deadline_alert(minutes: int) -> Any:
    """The deadline alert, imported only when one is configured (Airflow 3.1 keeps the deadline
    classes out of `airflow.sdk`; deadline alerts are checked on Airflow 3.3)."""
    try:
        from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference
    except ImportError:  # Airflow 3.1
        from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(RunAlertNotifier, kwargs={"kind": str(AlertKind.LATE)}),
        name="mogulflow_run_late",
    )
