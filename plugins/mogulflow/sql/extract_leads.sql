-- Leads for one run of chartmogul_leads_trials.
-- Bind parameters (always bound, never formatted in):
--   :full_refresh      true → every row, whatever its updated_at
--   :window_start      inclusive, UTC
--   :window_end        exclusive, UTC
--   :data_source_uuid  the ChartMogul data source being synced
-- Rename columns here (AS ...) if your table has another shape; keep the output column names.
-- Keep the last clause: it re-reads rows whose previous sync failed, so they are retried even
-- when the source row did not change.
SELECT
    lead_id,
    company_name,
    email,
    country,
    state,
    city,
    zip,
    lead_created_at,
    free_trial_started_at,
    updated_at
FROM leads
WHERE :full_refresh
   OR (updated_at >= :window_start AND updated_at < :window_end)
   OR lead_id IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'lead' AND status = 'failed' AND data_source_uuid = :data_source_uuid
   )
