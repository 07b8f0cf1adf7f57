-- Trials for one run of chartmogul_leads_trials. Parameters as in extract_leads.sql.
-- 'waiting' trials were rejected earlier only because their lead or plan was not known yet (a
-- backfill may meet a trial before its lead): mogulflow keeps them out of the run until it is.
SELECT
    trial_id,
    lead_id,
    plan_id,
    subscription_id,
    started_at,
    ends_at,
    amount_in_cents,
    currency,
    quantity,
    updated_at
FROM trials
WHERE :full_refresh
   OR (updated_at >= :window_start AND updated_at < :window_end)
   OR trial_id IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'trial' AND status IN ('failed', 'waiting') AND data_source_uuid = :data_source_uuid
   )
