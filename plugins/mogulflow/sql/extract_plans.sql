-- Plans for one run of chartmogul_leads_trials. Parameters as in extract_leads.sql.
SELECT
    plan_id,
    name,
    interval_count,
    interval_unit,
    updated_at
FROM plans
WHERE :full_refresh
   OR (updated_at >= :window_start AND updated_at < :window_end)
   OR plan_id IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'plan' AND status = 'failed' AND data_source_uuid = :data_source_uuid
   )
