"""Writes: the machinery every per-object load shares: results, tally, checkpoint, thread pool.

Writes: the machinery every per-object load shares: how one row ended (`WriteResult`), the
running tally, the checkpoint, and the thread pool that runs the writes and stops early when the
API keeps refusing (`LOAD_STOPPERS`).
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mogulflow.chartmogul.errors import AuthenticationError, ChartMogulError, CircuitOpenError
from mogulflow.load.progress import ProgressReporter
from mogulflow.plan.sync_plan import Payload, SyncPlan
from mogulflow.values.constants import ERRORS_KEPT
from mogulflow.values.entities import Entity
from mogulflow.values.run_summary import RowError
from mogulflow.values.step_reports import LoadReport
from mogulflow.warehouse.sync_state import StateEntry, SyncStatus

log = logging.getLogger(__name__)

# Confirmed writes are saved every this many rows: a killed task loses at most that much progress.
DEFAULT_CHECKPOINT_ROWS = 200


Checkpoint = Callable[[Sequence[StateEntry]], None]


class RowOutcome(enum.StrEnum):
    """How one planned row ended."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class WriteResult:
    """How one planned write ended, with the state entry that records it."""

    outcome: RowOutcome
    entry: StateEntry
    error: RowError | None = None


@dataclass(frozen=True)
class RowTarget:
    """Where a load writes: which entity, in which data source, for which run."""

    entity: Entity
    data_source_uuid: str
    run_id: str

    def confirmed(
        self,
        outcome: RowOutcome,
        payload: Payload,
        *,
        uuid: str | None,
        digest: str | None,
        version: datetime | None,
        status: SyncStatus = SyncStatus.SYNCED,
    ) -> WriteResult:
        """A write ChartMogul confirmed: the entry remembers what was sent and its hash."""
        entry = StateEntry(
            entity=self.entity,
            data_source_uuid=self.data_source_uuid,
            external_id=payload.external_id,
            status=status,
            synced_at=datetime.now(UTC),
            run_id=self.run_id,
            chartmogul_uuid=uuid,
            content_hash=digest,
            payload=payload.fields(),
            source_updated_at=version,
            created=outcome is RowOutcome.CREATED,  # listed in mogulflow_created: a mirror may delete it
        )
        return WriteResult(outcome, entry)

    def failed(
        self,
        external_id: str,
        error: Exception,
        *,
        uuid: str | None = None,
        intended: Payload | None = None,
    ) -> WriteResult:
        """A failed row: state `failed` (re-read and re-sent by the next run), keeping what was meant."""
        status = getattr(error, "status", None)
        retriable = not (isinstance(error, ChartMogulError) and status is not None and 400 <= status < 500)
        problem = RowError(self.entity, external_id, str(error) or type(error).__name__, status, retriable)
        return self.refused(problem, uuid=uuid, intended=intended)

    def refused(
        self, problem: RowError, *, uuid: str | None = None, intended: Payload | None = None
    ) -> WriteResult:
        """A row the API refused or that failed, as described by `problem`."""
        entry = StateEntry(
            entity=self.entity,
            data_source_uuid=self.data_source_uuid,
            external_id=problem.external_id,
            status=SyncStatus.FAILED,
            synced_at=datetime.now(UTC),
            run_id=self.run_id,
            chartmogul_uuid=uuid,
            payload=None if intended is None else intended.fields(),
        )
        return WriteResult(RowOutcome.FAILED, entry, problem)


@dataclass
class Tally:
    """Running counts of one entity's load, and the confirmed entries not yet checkpointed."""

    entity: Entity
    planned: int
    counts: Counter[RowOutcome] = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    pending: list[StateEntry] = field(default_factory=list)

    @classmethod
    def of_plan(cls, plan: SyncPlan) -> Tally:
        """A tally of the plan's rows that already count before any write: those left unchanged, and
        those an earlier step or attempt of this run wrote (created)."""
        tally = cls(plan.entity, plan.size)
        tally.counts[RowOutcome.UNCHANGED] += len(plan.unchanged)
        tally.counts[RowOutcome.CREATED] += len(plan.written_this_run)
        return tally

    def add(self, result: WriteResult) -> None:
        """Count one row's outcome and queue its entry for the next checkpoint."""
        self.counts[result.outcome] += 1
        self.pending.append(result.entry)
        if result.error is not None:
            self.errors.append(result.error)

    @property
    def done(self) -> int:
        """Rows with an outcome so far."""
        return sum(self.counts.values())

    def describe(self) -> str:
        """The outcomes so far, for a progress line: `created 120, failed 2`."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))

    def flush(self, checkpoint: Checkpoint) -> None:
        """Hand every pending entry to the checkpoint."""
        if self.pending:
            checkpoint(list(self.pending))
            self.pending.clear()

    def report(self, aborted: str | None) -> LoadReport:
        """The tally as the load's report."""
        return LoadReport(
            self.entity,
            created=self.counts[RowOutcome.CREATED],
            updated=self.counts[RowOutcome.UPDATED],
            unchanged=self.counts[RowOutcome.UNCHANGED],
            failed=self.counts[RowOutcome.FAILED],
            errors=tuple(self.errors[:ERRORS_KEPT]),
            aborted=aborted,
        )


def not_attempted(aborted: str) -> RuntimeError:
    """The error a row gets when the load stopped before reaching it."""
    return RuntimeError(f"not attempted, the load stopped early: {aborted}")


# One unit of work for the pool: the external ids it covers, and the call that writes them.
Write = tuple[Sequence[str], Callable[[], list[WriteResult]]]


def run_writes(
    tally: Tally,
    target: RowTarget,
    writes: Sequence[Write],
    *,
    checkpoint: Checkpoint,
    max_workers: int,
    checkpoint_rows: int,
) -> str | None:
    """Run writes on a thread pool, checkpoint confirmed ones, stop early if the API keeps refusing.

    Returns the abort reason, if any.
    """
    aborted: str | None = None
    queue = list(reversed(writes))
    in_flight: dict[Future[list[WriteResult]], Sequence[str]] = {}
    progress = ProgressReporter(str(tally.entity), tally.planned, log, baseline=tally.done)

    def flush(force: bool = False) -> None:
        if force or len(tally.pending) >= checkpoint_rows:
            tally.flush(checkpoint)
        (progress.finish if force else progress.update)(tally.done, tally.describe())

    with ThreadPoolExecutor(
        max_workers=max(1, max_workers), thread_name_prefix=f"load-{tally.entity}"
    ) as pool:
        while queue or in_flight:
            while queue and aborted is None and len(in_flight) < max_workers * 2:
                ids, call = queue.pop()
                in_flight[pool.submit(call)] = ids
            if not in_flight:
                break
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in finished:
                ids = in_flight.pop(future)
                try:
                    results = future.result()
                except LOAD_STOPPERS as error:
                    aborted = aborted or str(error)
                    results = [target.failed(external_id, error) for external_id in ids]
                except Exception as error:  # a row-level failure the client did not classify
                    results = [target.failed(external_id, error) for external_id in ids]
                for result in results:
                    tally.add(result)
            flush()
            if aborted is not None and queue:
                # The API keeps refusing: do not march through the rest, count it as failed now.
                while queue:
                    ids, _ = queue.pop()
                    for external_id in ids:
                        tally.add(target.failed(external_id, not_attempted(aborted)))
    flush(force=True)
    return aborted


# Errors after which nothing the load does can succeed: stop at once instead of row after row.
LOAD_STOPPERS = (CircuitOpenError, AuthenticationError)
