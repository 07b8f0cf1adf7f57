"""How strict the sandbox is where the real API's behaviour is [UNVERIFIED], and how slow its async work is.

Every [UNVERIFIED] choice the sandbox makes is a field here, so a test or an operator can switch it
(CLI flags in ``__main__``; ``docs/sandbox.md`` lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

InvoiceBatchMode = Literal["all_or_nothing", "partial"]
INVOICE_BATCH_MODES: tuple[InvoiceBatchMode, ...] = ("all_or_nothing", "partial")

DEFAULT_MERGE_DELAY_SECONDS = 0.5
DEFAULT_JSON_IMPORT_DELAY_SECONDS = 0.5
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Strictness:
    """Checks the real API may or may not make [UNVERIFIED]; all on by default (stricter is safer)."""

    #: customer ``country`` must be an ISO 3166-1 alpha-2 code (any case)
    check_country_code: bool = True
    #: customer ``lead_created_at`` may not lie after ``free_trial_started_at``
    check_lead_before_trial: bool = True
    #: no customer timestamp (nor invoice ``date``) later than now plus `clock_skew`
    check_future_timestamps: bool = True
    #: customer ``name`` is required (2016 recording); the 2025 docs list only data source and external id
    require_customer_name: bool = True
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW


@dataclass(frozen=True)
class SandboxSettings:
    """Behaviour switches of one sandbox: strictness, invoice batch semantics, async delays."""

    strictness: Strictness = field(default_factory=Strictness)
    #: ``all_or_nothing``: one bad invoice in a batch stops the whole batch; ``partial``: good ones import
    invoice_batch_mode: InvoiceBatchMode = "all_or_nothing"
    #: seconds between ``POST /v1/customers/merges`` (202) and the merge taking effect
    merge_delay_seconds: float = DEFAULT_MERGE_DELAY_SECONDS
    #: seconds a JSON import takes from ``queued`` to ``completed`` (``processing`` in the second half)
    json_import_delay_seconds: float = DEFAULT_JSON_IMPORT_DELAY_SECONDS
    #: merge a new customer into an existing one with the same external id (in another data source) or
    #: website domain, after the merge delay, as ChartMogul does for accounts created on or after
    #: 2024-05-21; off by default (older accounts, and every test that does not ask for it)
    auto_merge: bool = False

    def __post_init__(self) -> None:
        if self.invoice_batch_mode not in INVOICE_BATCH_MODES:
            raise ValueError(
                f"invoice_batch_mode must be one of {INVOICE_BATCH_MODES}, not {self.invoice_batch_mode!r}"
            )
        if self.merge_delay_seconds < 0 or self.json_import_delay_seconds < 0:
            raise ValueError("delays must be >= 0 seconds")
