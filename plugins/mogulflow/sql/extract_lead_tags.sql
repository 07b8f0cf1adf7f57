-- Lead tags (optional table) for one run of chartmogul_leads_trials. Parameters as in
-- extract_leads.sql. One row adds `tag` to the lead's customer (`present` true) or removes it (false).
-- Keep the last two clauses: rows waiting for their lead, and rows whose previous write failed.
SELECT
    lead_id,
    tag,
    present,
    updated_at
FROM lead_tags
WHERE :full_refresh
   OR (updated_at >= :window_start AND updated_at < :window_end)
   OR lead_id IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'tag' AND status = 'waiting' AND data_source_uuid = :data_source_uuid
   )
   OR lead_id || '/' || tag IN (
        SELECT external_id FROM mogulflow_sync_state
        WHERE entity = 'tag' AND status = 'failed' AND data_source_uuid = :data_source_uuid
   )
