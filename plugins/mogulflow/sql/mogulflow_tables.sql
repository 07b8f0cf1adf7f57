-- mogulflow's own tables, created in the warehouse if missing. Written once, with neutral types
-- (TEXT, TIMESTAMP, BOOLEAN, BIGINT, INTEGER, DOUBLE, DATE, BLOB; NOT NULL, DEFAULT, a table-level
-- PRIMARY KEY): each CREATE TABLE runs in the warehouse's own types (mogulflow.dialects; see them
-- with `python -m mogulflow.dialects snowflake`).

CREATE TABLE IF NOT EXISTS mogulflow_rejects (
    run_id      TEXT NOT NULL,
    dag_id      TEXT NOT NULL,
    entity      TEXT NOT NULL,      -- lead, plan, trial, conversion, attribute, tag
    source_id   TEXT,               -- null when the row had no id
    reason      TEXT NOT NULL,      -- every broken rule: field, rule, what was found
    rejected_at TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS mogulflow_runs (
    run_id              TEXT NOT NULL,
    dag_id              TEXT NOT NULL,
    window_start        TIMESTAMP,
    window_end          TIMESTAMP,
    full_refresh        BOOLEAN NOT NULL,
    dry_run             BOOLEAN NOT NULL,
    data_source_name    TEXT,
    data_source_uuid    TEXT,
    started_at          TIMESTAMP NOT NULL,
    finished_at         TIMESTAMP NOT NULL,
    outcome             TEXT NOT NULL,  -- success, success_with_rejects, failed
    message             TEXT,
    leads_extracted     BIGINT NOT NULL DEFAULT 0,
    leads_rejected      BIGINT NOT NULL DEFAULT 0,
    leads_created       BIGINT NOT NULL DEFAULT 0,
    leads_updated       BIGINT NOT NULL DEFAULT 0,
    leads_unchanged     BIGINT NOT NULL DEFAULT 0,
    leads_failed        BIGINT NOT NULL DEFAULT 0,
    leads_deleted       BIGINT NOT NULL DEFAULT 0,  -- objects deleted from ChartMogul: outside extracted's sum
    plans_extracted     BIGINT NOT NULL DEFAULT 0,
    plans_rejected      BIGINT NOT NULL DEFAULT 0,
    plans_created       BIGINT NOT NULL DEFAULT 0,
    plans_updated       BIGINT NOT NULL DEFAULT 0,
    plans_unchanged     BIGINT NOT NULL DEFAULT 0,
    plans_failed        BIGINT NOT NULL DEFAULT 0,
    plans_deleted       BIGINT NOT NULL DEFAULT 0,
    trials_extracted    BIGINT NOT NULL DEFAULT 0,
    trials_rejected     BIGINT NOT NULL DEFAULT 0,
    trials_created      BIGINT NOT NULL DEFAULT 0,
    trials_updated      BIGINT NOT NULL DEFAULT 0,
    trials_unchanged    BIGINT NOT NULL DEFAULT 0,
    trials_failed       BIGINT NOT NULL DEFAULT 0,
    trials_deleted      BIGINT NOT NULL DEFAULT 0,
    -- conversions: created = merged, unchanged = already merged, failed = not found in time or API error
    conversions_extracted BIGINT NOT NULL DEFAULT 0,
    conversions_rejected  BIGINT NOT NULL DEFAULT 0,
    conversions_created   BIGINT NOT NULL DEFAULT 0,
    conversions_updated   BIGINT NOT NULL DEFAULT 0,
    conversions_unchanged BIGINT NOT NULL DEFAULT 0,
    conversions_failed    BIGINT NOT NULL DEFAULT 0,
    conversions_deleted   BIGINT NOT NULL DEFAULT 0,
    -- attributes and tags (optional tables lead_attributes, lead_tags): 0 when the feature is off
    attributes_extracted  BIGINT NOT NULL DEFAULT 0,
    attributes_rejected   BIGINT NOT NULL DEFAULT 0,
    attributes_created    BIGINT NOT NULL DEFAULT 0,
    attributes_updated    BIGINT NOT NULL DEFAULT 0,
    attributes_unchanged  BIGINT NOT NULL DEFAULT 0,
    attributes_failed     BIGINT NOT NULL DEFAULT 0,
    attributes_deleted    BIGINT NOT NULL DEFAULT 0,
    tags_extracted        BIGINT NOT NULL DEFAULT 0,
    tags_rejected         BIGINT NOT NULL DEFAULT 0,
    tags_created          BIGINT NOT NULL DEFAULT 0,
    tags_updated          BIGINT NOT NULL DEFAULT 0,
    tags_unchanged        BIGINT NOT NULL DEFAULT 0,
    tags_failed           BIGINT NOT NULL DEFAULT 0,
    tags_deleted          BIGINT NOT NULL DEFAULT 0,
    details             TEXT,           -- JSON: rejects by reason, API errors, warnings
    PRIMARY KEY (dag_id, run_id)
);

CREATE TABLE IF NOT EXISTS mogulflow_sync_state (
    entity           TEXT NOT NULL,     -- lead, plan, trial, conversion, attribute, tag
    data_source_uuid TEXT NOT NULL,
    external_id      TEXT NOT NULL,     -- attribute: lead_id/key, tag: lead_id/tag
    chartmogul_uuid  TEXT,              -- customer, plan or invoice uuid
    content_hash     TEXT,              -- of what was last sent (null when the last write failed)
    payload          TEXT,              -- JSON of the fields last sent (to PATCH only what changed)
    status           TEXT NOT NULL,     -- synced, failed, merged
    synced_at        TIMESTAMP NOT NULL,
    run_id           TEXT NOT NULL,
    source_updated_at TIMESTAMP,        -- the source row's updated_at: an older row never overwrites a newer one
    PRIMARY KEY (entity, data_source_uuid, external_id)
);

-- One row per difference a reconciliation found between the warehouse and ChartMogul
-- (DAG chartmogul_reconcile, or the nightly DAG's reconcile step): read by the monitoring page.
CREATE TABLE IF NOT EXISTS mogulflow_reconciliation (
    run_id           TEXT NOT NULL,     -- the Airflow run that reconciled
    dag_id           TEXT NOT NULL,     -- the DAG of that run
    data_source_uuid TEXT NOT NULL,
    entity           TEXT NOT NULL,     -- lead, plan, trial
    external_id      TEXT NOT NULL,
    kind             TEXT NOT NULL,     -- missing (in ChartMogul), extra (in ChartMogul), different
    field            TEXT,              -- for different: lead_created_at, free_trial_started_at, date, ...
    warehouse_value  TEXT,              -- timestamps as YYYY-MM-DDTHH:MM:SSZ, numbers as text
    chartmogul_value TEXT,
    checked_at       TIMESTAMP NOT NULL
);

-- What one task hands the next within a run (mogulflow.staging): Parquet parts of at most ~1 MB,
-- removed once the run is recorded. BLOB becomes each warehouse's binary type (mogulflow.dialects:
-- PostgreSQL BYTEA, Snowflake BINARY, BigQuery BYTES, Redshift VARBYTE).
CREATE TABLE IF NOT EXISTS mogulflow_staging (
    dag_id    TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    entity    TEXT NOT NULL,        -- lead, plan, trial, conversion
    kind      TEXT NOT NULL,        -- valid, rejects
    part      INTEGER NOT NULL,     -- parts are read in this order: the extract's row order
    data      BLOB NOT NULL,        -- one Parquet file
    staged_at TIMESTAMP NOT NULL,   -- parts of runs never recorded are swept a week later
    PRIMARY KEY (dag_id, run_id, entity, kind, part)
);

-- What mogulflow created itself, per data source: the only objects a mirror delete may remove.
-- Written when ChartMogul confirms a create; an object found there already (first contact, "already
-- exists") is never listed. A row goes when its object is deleted.
CREATE TABLE IF NOT EXISTS mogulflow_created (
    entity           TEXT NOT NULL,     -- lead (a customer), plan, trial (an invoice)
    data_source_uuid TEXT NOT NULL,
    external_id      TEXT NOT NULL,
    run_id           TEXT NOT NULL,     -- the run that created it
    created_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (entity, data_source_uuid, external_id)
);

-- One row per object mogulflow deleted from ChartMogul (the audit). An erased lead's id is kept
-- only hashed (sha256:...), without its uuid.
CREATE TABLE IF NOT EXISTS mogulflow_deletions (
    run_id           TEXT NOT NULL,
    dag_id           TEXT NOT NULL,
    data_source_uuid TEXT NOT NULL,
    entity           TEXT NOT NULL,     -- lead (a customer), trial (an invoice)
    external_id      TEXT NOT NULL,
    chartmogul_uuid  TEXT,
    reason           TEXT NOT NULL,     -- mirror, erasure
    deleted_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, data_source_uuid, entity, external_id)
);

-- The deletes a run planned, and the guard's verdict: the delete step deletes nothing outside
-- them (a retried or resumed task reads the same set). Removed with the run's other working rows.
CREATE TABLE IF NOT EXISTS mogulflow_delete_plan (
    run_id           TEXT NOT NULL,
    dag_id           TEXT NOT NULL,
    data_source_uuid TEXT NOT NULL,
    entity           TEXT NOT NULL,     -- lead, trial
    external_id      TEXT NOT NULL,
    chartmogul_uuid  TEXT,              -- a hint: every delete looks the object up first
    customer_external_id TEXT,          -- an invoice's lead
    reason           TEXT NOT NULL,     -- mirror, erasure
    planned_at       TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, data_source_uuid, entity, external_id)
);

-- The fact that a lead was erased, and nothing else about it: its id hashed (sha256:...).
CREATE TABLE IF NOT EXISTS mogulflow_erasures (
    lead_hash        TEXT NOT NULL,
    data_source_uuid TEXT NOT NULL,
    requested_at     TIMESTAMP,
    erased_at        TIMESTAMP NOT NULL,
    run_id           TEXT NOT NULL,
    outcome          TEXT NOT NULL,     -- erased; needs_person (merged into another customer)
    note             TEXT,              -- for needs_person: the merged customer's uuid
    PRIMARY KEY (lead_hash, data_source_uuid)
);

-- Each time the guard asked a person to approve a run's mirror deletes, and the answer (for the
-- monitoring page: a row without an answer is a pending approval).
CREATE TABLE IF NOT EXISTS mogulflow_approvals (
    run_id           TEXT NOT NULL,
    dag_id           TEXT NOT NULL,
    data_source_uuid TEXT NOT NULL,
    asked_at         TIMESTAMP NOT NULL,
    customers        BIGINT NOT NULL,   -- what the person was asked about
    invoices         BIGINT NOT NULL,
    reasons          TEXT NOT NULL,
    decision         TEXT,              -- approved, rejected, timed_out; null while pending
    answered_by      TEXT,
    answered_at      TIMESTAMP,
    PRIMARY KEY (dag_id, run_id)
);
