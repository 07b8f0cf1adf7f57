-- The source tables mogulflow reads (CONTRACT.md, "Source tables"), as the sample warehouse builds
-- them (neutral types: `python -m mogulflow.dialects bigquery --file schema.sql` shows them in a
-- warehouse's own). Timestamps hold UTC. No NOT NULL or keys on purpose: the sample
-- carries rows that break the validation rules (missing ids, duplicates), as real extracts do.
-- `python -m mogulflow.sample_data` drops these tables first and then runs this file.

CREATE TABLE leads (
    lead_id               TEXT,
    company_name          TEXT,
    email                 TEXT,
    country               TEXT,
    state                 TEXT,
    city                  TEXT,
    zip                   TEXT,
    lead_created_at       TIMESTAMP NULL,
    free_trial_started_at TIMESTAMP NULL,
    updated_at            TIMESTAMP
);

CREATE TABLE plans (
    plan_id        TEXT,
    name           TEXT,
    interval_count INTEGER,
    interval_unit  TEXT,
    updated_at     TIMESTAMP
);

CREATE TABLE trials (
    trial_id        TEXT,
    lead_id         TEXT,
    plan_id         TEXT,
    subscription_id TEXT NULL,
    started_at      TIMESTAMP,
    ends_at         TIMESTAMP,
    amount_in_cents BIGINT,
    currency        TEXT,
    quantity        INTEGER,
    updated_at      TIMESTAMP
);

CREATE TABLE conversions (
    lead_id                      TEXT,
    billing_data_source_uuid     TEXT,
    billing_customer_external_id TEXT,
    converted_at                 TIMESTAMP
);
